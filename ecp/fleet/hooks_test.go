package fleet

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
)

func agentRequest(cred string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, agentproto.PathWrite, nil)
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	return r
}

func TestAuthenticateAgentFollowsTransfers(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	mustRegister(t, a, issue(t, f, "c1", time.Hour))

	id, project, err := f.AuthenticateAgent(agentRequest(a.cred))
	if err != nil || id != "c1" || project != "p1" {
		t.Fatalf("got %q %q %v, want c1 p1", id, project, err)
	}
	// Transfer: the spec's project changes; the next call says so.
	spec := registry.Spec{ID: "c1", Name: "cluster c1", Project: "p2", MaxConnections: 10}
	b, err := spec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), registry.Key("c1"), string(b)); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "the transfer", func() bool {
		_, project, err := f.AuthenticateAgent(agentRequest(a.cred))
		return err == nil && project == "p2"
	})
	for _, cred := range []string{"", "ecpagent_c1.forged", "not-a-credential"} {
		if _, _, err := f.AuthenticateAgent(agentRequest(cred)); err == nil {
			t.Fatalf("credential %q accepted", cred)
		}
	}
}

func TestRegisterObservedHandsOverAcceptedReports(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	var mu sync.Mutex
	seen := map[string][]agentproto.Resource{}
	r := mux.NewRouter()
	f.RegisterObserved(r, func(id string, req *agentproto.ReportRequest) {
		mu.Lock()
		defer mu.Unlock()
		seen[id] = req.EMQX.Abnormal
	})
	srv := httptest.NewServer(r)
	defer srv.Close()

	putSpec(t, cli, "c1", 10)
	a := newAgent(srv.URL)
	mustRegister(t, a, issue(t, f, "c1", time.Hour))
	em := healthy()
	em.Abnormal = []agentproto.Resource{{Kind: agentproto.KindConnector, ID: "http:x", Status: "disconnected"}}
	if rep := a.report(t, em); rep.status != http.StatusOK {
		t.Fatalf("report: %d %s", rep.status, rep.code)
	}
	// A refused report is not observed.
	stranger := newAgent(srv.URL)
	stranger.cred = "ecpagent_c9.nope"
	if rep := stranger.report(t, em); rep.status != http.StatusUnauthorized {
		t.Fatalf("stranger's report: %d", rep.status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || len(seen["c1"]) != 1 || seen["c1"][0].ID != "http:x" {
		t.Fatalf("observed %v, want c1's abnormal connector only", seen)
	}
}

func TestHooks(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	var mu sync.Mutex
	seen := map[string]int{}
	r := mux.NewRouter()
	f.RegisterObserved(r, func(id string, req *agentproto.ReportRequest) {
		mu.Lock()
		defer mu.Unlock()
		seen[id] += req.EMQX.Connections
	})
	hs := httptest.NewServer(r)
	defer hs.Close()

	putSpec(t, cli, "c1", 10)
	a := newAgent(hs.URL)
	mustRegister(t, a, issue(t, f, "c1", time.Hour))
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))

	authn := func(cred string) (string, string, error) {
		req := httptest.NewRequest(http.MethodPost, agentproto.PathWrite, nil)
		req.Header.Set("Authorization", "Bearer "+cred)
		return f.AuthenticateAgent(req)
	}
	id, project, err := authn(a.cred)
	if err != nil || id != "c1" || project != "p1" {
		t.Fatalf("AuthenticateAgent = %q, %q, %v", id, project, err)
	}

	if r := a.unregister(t); r.status != http.StatusNoContent {
		t.Fatalf("unregister: %d", r.status)
	}
	wantCode(t, a.report(t, healthy()), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)
	var apiErr *httpapi.Error
	if _, _, err := authn(a.cred); !errors.As(err, &apiErr) || apiErr.Code != agentproto.CodeCredentialRevoked {
		t.Fatalf("AuthenticateAgent after unregister: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen["c1"] != healthy().Connections {
		t.Fatalf("observer saw %v, want the one accepted report of c1", seen)
	}
}
