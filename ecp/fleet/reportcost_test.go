package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// BenchmarkReport is what ecp's own code spends on one agent report: the
// route as ecp serves it (Shortcut before the router Register mounts it
// on), the adapter, authentication, decoding, recording and the hold,
// without a network or net/http's server (whose per-connection buffers
// package longpoll is about). B/op and allocs/op are the garbage a report
// leaves, which is what drives ecp's GC at 10,000 agents (bench/fleet
// --ecp.profile). Run it with
//
//	go test -run '^$' -bench '^BenchmarkReport$' -benchmem ./ecp/fleet/
//
// and profile what it allocates with -memprofile /tmp/report.heap.
//
// The report is a healthy agent's as bench/fleet sends it; the cases are
// the ways the agent sends it each interval: asking to be held
// (?after=&timeout=) and answered by a change of the desired state, or at
// its timeout (the steady state: timeout=0s stands for the 15 s an agent
// asks); and a report sent without the hold, as agents before the held
// report did.
func BenchmarkReport(b *testing.B) {
	f, a, rev, body := steadyReporter(b)
	for _, bc := range []struct{ name, query string }{
		{"held-changed", holdQuery(rev-1, "15s")},
		{"held-timeout", holdQuery(rev, "0s")},
		{"unheld", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req, w := reportRequest(b, a.cred, bc.query, body)
			rb := req.Body.(*replayBody)
			b.ReportAllocs()
			for b.Loop() {
				// The adapter bounds the body in place (no router copies
				// the request first).
				rb.Reset(body)
				req.Body = rb
				w.reset()
				f.handler.ServeHTTP(w, req)
				if w.status != http.StatusOK {
					b.Fatalf("%d %s", w.status, w.body.String())
				}
			}
			if bc.query != "" && w.Header().Get(agentproto.HeaderReportHeld) == "" {
				b.Fatalf("the report was not held: %v", w.Header())
			}
		})
	}
}

// steadyReporter is a fleet with an agent that reported benchReportBody
// once: the same report again changes nothing (the steady state). rev is
// the agent's desired revision.
func steadyReporter(tb testing.TB) (f *testFleet, a *agent, rev int64, body []byte) {
	tb.Helper()
	_, f, a, rev = heldReportAgent(tb, newClock())
	body = benchReportBody(tb)
	// The first report writes the cluster's status.
	if r := serveReport(tb, f.handler, a.cred, "", body); r.status != http.StatusOK {
		tb.Fatalf("first report: %d %s", r.status, r.body.String())
	}
	return f, a, rev, body
}

// benchReportBody is the report of a healthy agent as bench/fleet sends
// it: the cluster's name and two running nodes (its identity), versions
// and counters.
func benchReportBody(tb testing.TB) []byte {
	tb.Helper()
	n := func(i int) agentproto.Node {
		return agentproto.Node{Name: fmt.Sprintf("emqx@n%d.c00042", i), Status: "running", Version: "5.8.1", Connections: 21, LiveConnections: 20}
	}
	b, err := json.Marshal(agentproto.ReportRequest{CollectedAt: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), AgentVersion: "bench", AppliedRevision: 7,
		EMQX: agentproto.EMQXStatus{Reachable: true, Version: "5.8.1", Edition: "Enterprise", StartedAt: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC),
			Nodes: []agentproto.Node{n(1), n(2)}, Connections: 42, LiveConnections: 40, MaxConnections: 1000, ClusterName: "emqx-00042",
			Rules: agentproto.ResourceCounts{Total: 3, Healthy: 3}, Connectors: agentproto.ResourceCounts{Total: 2, Healthy: 2}}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func serveReport(tb testing.TB, h http.Handler, cred, query string, body []byte) *reportWriter {
	req, w := reportRequest(tb, cred, query, body)
	h.ServeHTTP(w, req)
	return w
}

// reportRequest is an agent's report as net/http hands it to the router,
// and a writer for its reply, both reusable so that the benchmark counts
// only what ecp allocates.
func reportRequest(tb testing.TB, cred, query string, body []byte) (*http.Request, *reportWriter) {
	tb.Helper()
	url := agentproto.PathReport
	if query != "" {
		url += "?" + query
	}
	rb := &replayBody{}
	rb.Reset(body)
	req, err := http.NewRequestWithContext(tb.Context(), http.MethodPost, url, rb)
	if err != nil {
		tb.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return req, &reportWriter{header: http.Header{}}
}

// replayBody is a request body read again from its start after Reset.
type replayBody struct{ bytes.Reader }

func (*replayBody) Close() error { return nil }

// reportWriter is an http.ResponseWriter that keeps the reply.
type reportWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *reportWriter) reset() {
	clear(w.header)
	w.status = 0
	w.body.Reset()
}

func (w *reportWriter) Header() http.Header { return w.header }

func (w *reportWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *reportWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}
