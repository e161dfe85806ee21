package app

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func registerAgent(h *harness, token string) reply {
	h.t.Helper()
	return h.do("POST", agentproto.PathRegister, "", agentproto.RegisterRequest{
		Token: token, AgentVersion: "test", DashboardURL: "http://emqx.example:18083", APIURL: "http://emqx.example:18083",
	})
}

// registeredAgent creates the cluster name in project as admin, issues its
// registration token and registers an agent with it.
func registeredAgent(h *harness, admin, project, name string) (id string, agent agentproto.RegisterResponse) {
	h.t.Helper()
	id = h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": name}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(h.t, &reg)
	registerAgent(h, reg.Token).decode(h.t, &agent)
	return id, agent
}

// parkPoll starts a desired-state long-poll of agent asking for 60 s and
// returns once ecp holds it parked (the waiter gauge says so); the poll's
// reply comes on the channel.
func parkPoll(h *harness, agent agentproto.RegisterResponse) <-chan reply {
	h.t.Helper()
	polled := make(chan reply, 1)
	go func() {
		polled <- h.do("GET", agentproto.PathDesired+"?timeout=60s&after="+strconv.FormatInt(agent.Desired.Revision, 10), agent.Credential, nil)
	}()
	for !strings.Contains(string(h.must(200, "GET", "/metrics", "", nil).body), "ecp_agent_desired_waiters 1") {
		runtime.Gosched()
	}
	return polled
}

// TestRegistrationThroughFleet runs the seam for real: the cluster API
// issues the token through ecp/fleet, an agent registers with it once, the
// entry's state follows, and delete revokes the agent.
func TestRegistrationThroughFleet(t *testing.T) {
	srv := etcdtest.Start(t)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	var c clusterJSON
	h.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
	if c.State != "created" {
		t.Fatalf("new entry state %q, want created", c.State)
	}
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)

	// The token is stored only as a hash.
	resp, err := etcdtest.ClientOf(t, srv).Get(t.Context(), "/", clientWithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Key)+string(kv.Value), reg.Token) {
			t.Fatalf("registration token stored in clear at %s", kv.Key)
		}
	}

	var out agentproto.RegisterResponse
	registerAgent(h, reg.Token).decode(t, &out)
	if out.ClusterID != id || out.Credential == "" || out.Desired.MaxConnections != 10 {
		t.Fatalf("register reply %+v", out)
	}
	// Single use.
	if r := registerAgent(h, reg.Token); r.status != 401 {
		t.Fatalf("second use of the token = %d %s, want 401", r.status, r.body)
	}
	h.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
	if c.State != "registering" {
		t.Fatalf("after register state %q, want registering", c.State)
	}
	// The credential works until the entry is deleted.
	h.must(200, "POST", agentproto.PathReport, out.Credential, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "test"})
	h.must(204, "DELETE", "/api/v1/clusters/"+id, admin, nil)
	r := h.must(401, "POST", agentproto.PathReport, out.Credential, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "test"})
	var e apiError
	r.decode(t, &e)
	if e.Error.Code != agentproto.CodeCredentialRevoked {
		t.Fatalf("report after delete: code %q, want %s", e.Error.Code, agentproto.CodeCredentialRevoked)
	}
	if strings.Contains(h.logs.String(), reg.Token) || strings.Contains(h.logs.String(), out.Credential) {
		t.Fatal("token or credential reached the log")
	}
}

func TestExpiredRegistrationTokenRefused(t *testing.T) {
	opts := testOptions(t)
	// Expired by the time the agent uses it, without the test sleeping.
	opts.RegistrationTokenTTL = time.Nanosecond
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	r := registerAgent(h, reg.Token)
	var e apiError
	r.decode(t, &e)
	if r.status != 401 || e.Error.Code != agentproto.CodeTokenExpired {
		t.Fatalf("expired token = %d %s, want 401 TokenExpired", r.status, r.body)
	}
}

// TestReRegistrationRevokesTheOldAgent: a new token for the entry revokes
// the credential of the agent bound before.
func TestReRegistrationRevokesTheOldAgent(t *testing.T) {
	h := startReal(t, testOptions(t))
	admin, project := setupProject(t, h)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	var first agentproto.RegisterResponse
	registerAgent(h, reg.Token).decode(t, &first)
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	h.must(401, "POST", agentproto.PathReport, first.Credential, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "test"})
	var second agentproto.RegisterResponse
	registerAgent(h, reg.Token).decode(t, &second)
	h.must(200, "POST", agentproto.PathReport, second.Credential, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "test"})
}

// TestShutdownEndsLongPolls: an agent's desired-state long-poll does not
// hold a shutdown for its full wait; it is ended after the drain grace.
func TestShutdownEndsLongPolls(t *testing.T) {
	opts := testOptions(t)
	opts.ShutdownTimeout = 5 * time.Minute // a hang would fail the test run, not pass after a wait
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	_, agent := registeredAgent(h, admin, project, "c")
	polled := parkPoll(h, agent)
	stopped := time.Now()
	h.stop()
	r := <-polled
	// The poll asked for 60 s; ending it is fleet's job on shutdown (it
	// answers 204 then), so what tells a held shutdown apart is the time:
	// half the wait is a margin no scheduling delay reaches.
	if waited := time.Since(stopped); waited > 30*time.Second {
		t.Fatalf("shutdown waited %s for the long-poll (status %d) instead of ending it", waited, r.status)
	}
}
