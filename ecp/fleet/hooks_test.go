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
)

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
