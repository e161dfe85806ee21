package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/bench/internal/agentsim"
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

// TestBenchAgentsReportOnceRegistered: a benchmark agent reports as soon
// as it is registered, as agent-exporter does, not once the whole fleet
// is. Registering 30,000 agents took 77 s, longer than the 3 intervals
// after which ecp marks a silent agent abnormal, so the first agents went
// abnormal and back to running: writes the window counted against ecp.
// Here the second agent's registration is answered only once the first
// agent has reported.
func TestBenchAgentsReportOnceRegistered(t *testing.T) {
	for _, conns := range []string{agentsim.ConnsOneConn, agentsim.ConnsHTTP1} {
		t.Run(conns, func(t *testing.T) {
			reported := make(chan struct{})
			var once sync.Once
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case agentproto.PathRegister:
					var req agentproto.RegisterRequest
					if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
						http.Error(w, err.Error(), http.StatusBadRequest)
						return
					}
					if req.Hostname != "broker-0" {
						select {
						case <-reported:
						case <-time.After(10 * time.Second):
							http.Error(w, "the first agent has not reported", http.StatusServiceUnavailable)
							return
						}
					}
					_ = json.NewEncoder(w).Encode(agentproto.RegisterResponse{Credential: "cred-" + req.Hostname})
				case agentproto.PathReport:
					once.Do(func() { close(reported) })
					_ = json.NewEncoder(w).Encode(agentproto.ReportResponse{})
				default: // the desired-state long-poll, answered with no change
					select {
					case <-r.Context().Done():
					case <-time.After(200 * time.Millisecond):
					}
					w.WriteHeader(http.StatusNoContent)
				}
			}))
			defer srv.Close()
			cfg := config{agents: 2, interval: 300 * time.Millisecond, workers: 2, pollWait: time.Second, conns: conns}
			bases := []string{srv.URL}
			g, err := startGen(t.Context(), cfg, []*agent{newAgent(cfg, 0, "c0", "t0", bases), newAgent(cfg, 1, "c1", "t1", bases)})
			if err != nil {
				t.Fatal(err)
			}
			g.close()
		})
	}
}
