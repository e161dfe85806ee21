package emqx_test

import (
	"encoding/json"
	"testing"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

func TestMemoryBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{
		{"15.52G", 15.52 * (1 << 30), true},
		{"256.00M", 256 << 20, true},
		{"12.00K", 12 << 10, true},
		{"900", 900, true},
		{"0", 0, true},
		{"", 0, false},
		{"G", 0, false},
		{"-1.00G", 0, false},
		{"1e400G", 0, false},
		{"NaN", 0, false},
		{"3T", 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := emqx.MemoryBytes(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("MemoryBytes(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestLoadReadsNumbersAndStrings: a load average EMQX 5.0.x wrote as a
// string, or one that is no number at all, must not fail the nodes call,
// which says whether EMQX is up.
func TestLoadReadsNumbersAndStrings(t *testing.T) {
	var n emqx.Node
	if err := json.Unmarshal([]byte(`{"node":"a","load1":2.66,"load5":"1.5","load15":"high"}`), &n); err != nil {
		t.Fatal(err)
	}
	if n.Load1 != 2.66 || n.Load5 != 1.5 || n.Load15 != 0 {
		t.Fatalf("loads %v %v %v, want 2.66 1.5 0", n.Load1, n.Load5, n.Load15)
	}
}

// TestNodeHostAndAuthCountersFromSimulator reads the fields the node
// memory, load and auth failure rules need from emqx-sim as the agent does.
func TestNodeHostAndAuthCountersFromSimulator(t *testing.T) {
	c := simtest.Start(t, sim.DefaultOptions())
	c.Step()
	cl := newClient(t, c.URL(), sim.DefaultPassword)
	nodes, err := cl.Nodes(t.Context())
	if err != nil || len(nodes) == 0 {
		t.Fatalf("nodes: %v, %v", nodes, err)
	}
	for _, n := range nodes {
		if n.NodeStatus != "running" {
			continue
		}
		total, okT := emqx.MemoryBytes(n.MemoryTotal)
		used, okU := emqx.MemoryBytes(n.MemoryUsed)
		if !okT || !okU || total <= 0 || used <= 0 || used > total {
			t.Errorf("%s: memory_used %q of memory_total %q", n.Node, n.MemoryUsed, n.MemoryTotal)
		}
		if n.Load1 <= 0 || n.Load5 <= 0 || n.Load15 <= 0 {
			t.Errorf("%s: loads %v %v %v, want the simulator's non-zero ones", n.Node, n.Load1, n.Load5, n.Load15)
		}
	}
	f, err := cl.Metrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if f.Connect <= 0 || f.Publish <= 0 || f.Subscribe <= 0 {
		t.Fatalf("auth failures %+v, want the simulator's non-zero counters", f)
	}
}
