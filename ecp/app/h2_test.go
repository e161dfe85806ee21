package app

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// TestAgentAndAPICallsAsH2Streams: with every call a stream of one h2c
// connection, as the agent now connects, a held long-poll beside them, the
// API, audit log and request metrics behave as over HTTP/1.1, and shutdown
// still ends the parked poll at once.
func TestAgentAndAPICallsAsH2Streams(t *testing.T) {
	opts := testOptions(t)
	opts.ShutdownTimeout = 5 * time.Minute // a hang would fail the test run, not pass after a wait
	h := startReal(t, opts)
	var dials atomic.Int64
	tr := &http.Transport{MaxConnsPerHost: 1, Protocols: new(http.Protocols),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	h.client = &http.Client{Transport: tr, CheckRedirect: h.client.CheckRedirect}

	admin, project := setupProject(t, h)
	_, agent := registeredAgent(h, admin, project, "c")
	polled := parkPoll(h, agent)
	h.must(200, "POST", agentproto.PathReport, agent.Credential, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "test"})
	h.must(401, "POST", "/api/v1/login", "", map[string]string{"username": "admin", "password": "wrong-password"})

	type rec struct {
		Actor, Route string
		Status       int
	}
	var all struct{ Items []rec }
	h.must(200, "GET", "/api/v1/audit?limit=1000", admin, nil).decode(t, &all)
	for _, want := range []rec{{"admin", "/api/v1/projects/{project}/clusters", 201}, {"admin", "/api/v1/login", 401}} {
		if !slices.Contains(all.Items, want) {
			t.Errorf("no audit record %+v over HTTP/2 in %+v", want, all.Items)
		}
	}
	m := string(h.must(200, "GET", "/metrics", "", nil).body)
	if !strings.Contains(m, `ecp_http_request_duration_seconds_count{code="200",method="POST",route="/api/v1/agent/report"} 1`) {
		t.Error("the report over HTTP/2 is not in ecp_http_request_duration_seconds by its route")
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections dialled, want every call on one", n)
	}

	stopped := time.Now()
	h.stop()
	if r := <-polled; r.status != http.StatusNoContent {
		t.Fatalf("parked poll answered %d on shutdown, want 204", r.status)
	}
	if waited := time.Since(stopped); waited > 30*time.Second {
		t.Fatalf("shutdown waited %s for the parked HTTP/2 poll instead of ending it", waited)
	}
}
