package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

// TestBenchAgentsRegisterWithTheirIdentity: a benchmark agent registers
// with the identity of the cluster it then reports, as agent-exporter
// does, so ecp writes the identity keys with the binding. Registered
// without it, each agent's first report ecp accepted claimed the keys:
// 32,132 identity key puts in the window of the 30,000-agent run, where
// 429s pushed first reports past the warm-up.
func TestBenchAgentsRegisterWithTheirIdentity(t *testing.T) {
	var got atomic.Pointer[agentproto.RegisterRequest]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req agentproto.RegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got.Store(&req)
		_ = json.NewEncoder(w).Encode(agentproto.RegisterResponse{Credential: "cred", Desired: agentproto.DesiredState{Revision: 3}})
	}))
	defer srv.Close()
	a := &agent{index: 42, base: srv.URL, cred: "token"}
	var retries atomic.Int64
	if err := register(t.Context(), srv.Client(), a, &retries); err != nil {
		t.Fatal(err)
	}
	req, rep := got.Load(), a.report()
	if req == nil || req.Cluster == nil {
		t.Fatal("registered without the cluster's identity")
	}
	var nodes []string
	for _, n := range rep.EMQX.Nodes {
		nodes = append(nodes, n.Name)
	}
	if req.Cluster.Name != rep.EMQX.ClusterName || !slices.Equal(req.Cluster.Nodes, nodes) {
		t.Fatalf("registered as %+v, reports cluster %q nodes %v", *req.Cluster, rep.EMQX.ClusterName, nodes)
	}
	if a.cred != "cred" || a.revision != 3 {
		t.Fatalf("after registering: credential %q revision %d", a.cred, a.revision)
	}
}
