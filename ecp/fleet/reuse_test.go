package fleet

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
)

// TestReusedReportCarriesNothingOver: fleet reuses a report's request for
// the next report; a report that leaves out what the one before it (from
// another tenant's agent) carried is recorded and observed as sent, with
// nothing of the other: no nodes' fields, no problem, no identity.
func TestReusedReportCarriesNothingOver(t *testing.T) {
	cli, f, a1, _ := heldReportAgent(t, newClock())
	putSpec(t, cli, "c2", 10)
	a2 := newAgent(f.url)
	mustRegister(t, a2, issue(t, f, "c2", time.Hour))
	var (
		mu   sync.Mutex
		seen = map[string]agentproto.ReportRequest{}
	)
	f.RegisterObserved(mux.NewRouter(), func(id string, req *agentproto.ReportRequest) {
		mu.Lock()
		defer mu.Unlock()
		c := *req
		c.EMQX.Nodes = slices.Clone(req.EMQX.Nodes)
		seen[id] = c
	})
	full := `{"agentVersion":"1.0.0","intervalSeconds":15,"emqx":{"reachable":true,"version":"5.8.1","edition":"Enterprise",
		"problem":{"code":"QuotaApplyFailed","message":"m"},"clusterName":"emqx-one","startedAt":"2026-11-20T00:00:00Z",
		"nodes":[{"name":"emqx@a.one","status":"running","role":"core","version":"5.8.1","uptimeSeconds":60,"connections":7,"liveConnections":5},
		{"name":"emqx@b.one","status":"running","connections":1,"liveConnections":1}],"connections":8,"liveConnections":6,"maxConnections":10,
		"abnormal":[{"kind":"rule","id":"r1","status":"failing","reason":"failed 3"}]}}`
	bare := `{"emqx":{"reachable":true,"nodes":[{"name":"emqx@a.two"}]}}`
	// Reports one after the other on one goroutine reuse the same request.
	for range 3 {
		if r := serveReport(t, f.handler, a1.cred, "", []byte(full)); r.status != http.StatusOK {
			t.Fatalf("full report: %d %s", r.status, r.body.String())
		}
		if r := serveReport(t, f.handler, a2.cred, "", []byte(bare)); r.status != http.StatusOK {
			t.Fatalf("bare report: %d %s", r.status, r.body.String())
		}
	}
	var want agentproto.ReportRequest
	if err := json.Unmarshal([]byte(bare), &want); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := seen["c2"]
	mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("c2's report observed as\n%+v\nwant what it sent\n%+v", got, want)
	}
	st := f.status(t, "c2")
	if st.State != StateRunning || st.StateReason != nil || st.Version != "" || st.NodesRunning != 0 || st.Connections != 0 {
		t.Fatalf("c2 recorded as %+v; want running with nothing of c1's report", st)
	}
}
