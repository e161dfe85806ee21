package emqx_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// TestRepliesReadToTheEnd: the client decodes each reply as it arrives
// (a reply of 1,050 rules, and its rule counters in the Prometheus text
// format, are many times its read buffer) and still reads every reply to
// its end, so a collection's calls share one connection to EMQX.
func TestRepliesReadToTheEnd(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Rules, opts.Connectors = emqx.RulesPageLimit+50, 300
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cl := newClient(t, srv.URL, sim.DefaultPassword)
	ctx := t.Context()
	for range 2 {
		rules, err := cl.Rules(ctx)
		if err != nil || len(rules) != opts.Rules {
			t.Fatalf("rules: %d, %v", len(rules), err)
		}
		all, err := cl.AllRuleMetrics(ctx)
		if err != nil || len(all) != opts.Rules {
			t.Fatalf("all rule metrics: %d, %v", len(all), err)
		}
		conn, err := cl.Connectors(ctx)
		if err != nil || len(conn) != opts.Connectors {
			t.Fatalf("connectors: %d, %v", len(conn), err)
		}
		if _, err := cl.Actions(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.NodeCPU(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.License(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the calls opened %d connections to EMQX, want 1 (a reply left unread)", n)
	}
}
