package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// reportBody is an agent's report as bench/fleet sends it: two nodes and
// one failing rule.
func reportBody(tb testing.TB) []byte {
	tb.Helper()
	n := func(i int) agentproto.Node {
		return agentproto.Node{Name: fmt.Sprintf("emqx@n%d.c00042", i), Status: "running", Role: "core", Version: "5.8.1", Connections: 21, LiveConnections: 20}
	}
	b, err := json.Marshal(agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "v1.2.3", AppliedRevision: 7,
		EMQX: agentproto.EMQXStatus{Reachable: true, Version: "5.8.1", Edition: "Enterprise", StartedAt: time.Now().Add(-time.Hour),
			Nodes: []agentproto.Node{n(1), n(2)}, Connections: 42, LiveConnections: 40, MaxConnections: 1000, ClusterName: "emqx-00042",
			Rules:    agentproto.ResourceCounts{Total: 3, Healthy: 2, Unhealthy: 1},
			Abnormal: []agentproto.Resource{{Kind: agentproto.KindRule, ID: "rule_bench", Name: "bench", Status: "failing", Reason: "failed 12, actions failed 12"}}},
		IntervalSeconds: 15})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkDecodeReport is what decoding one agent report costs ecp, the
// largest share of a report's CPU after the syscalls (8-10 % of ecp's CPU
// in bench/fleet --ecp.profile at 2,000 agents). Profile it with
//
//	go test -run '^$' -bench DecodeReport -cpuprofile /tmp/decode.pprof ./ecp/httpapi/
func BenchmarkDecodeReport(b *testing.B) {
	body := reportBody(b)
	r := httptest.NewRequest(http.MethodPost, "/api/v1/agent/report", nil)
	br := bytes.NewReader(body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(body)
		r.Body = io.NopCloser(br)
		var req agentproto.ReportRequest
		if err := httpapi.Decode(r, &req); err != nil {
			b.Fatal(err)
		}
	}
}
