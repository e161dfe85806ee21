package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/h2wire"
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

// TestHTTP2LimitsOnTheWire: ecp's HTTP/2 server announces the limits that
// bound what one agent connection can make it hold (serverHTTP2), not Go's
// defaults (250 streams, 1 MiB frames and windows), which let one frame of
// a remote-write or log batch leave its size in a read buffer on every
// agent's connection. Read as a client sees them: the server's first
// SETTINGS frame and its connection WINDOW_UPDATE.
func TestHTTP2LimitsOnTheWire(t *testing.T) {
	h := startWith(t, testOptions(t), false)
	h.must(200, "GET", "/-/healthy", "", nil) // serving
	c, err := net.DialTimeout("tcp", h.app.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	a, err := h2wire.Read(fr)
	if err != nil {
		t.Fatal(err)
	}
	want := map[http2.SettingID]uint32{
		http2.SettingMaxConcurrentStreams: h2MaxStreams,
		http2.SettingMaxFrameSize:         h2MaxFrame,
		http2.SettingInitialWindowSize:    h2RecvStream,
	}
	for id, v := range want {
		if a.Settings[id] != v {
			t.Errorf("server announces %s = %d, want %d", id, a.Settings[id], v)
		}
	}
	if a.ConnWindow != h2RecvConn {
		t.Errorf("server opens a connection window of %d bytes, want %d", a.ConnWindow, h2RecvConn)
	}
}
