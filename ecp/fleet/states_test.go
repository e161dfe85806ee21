package fleet

import (
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestStatesAgreeWithStatus: States, which the cluster lists read for
// thousands of entries at once, gives each cluster the state Status gives
// it, across the lifecycle and for clusters fleet never heard of.
func TestStatesAgreeWithStatus(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1")
	for _, id := range []string{"created", "registering", "running", "abnormal"} {
		putSpec(t, cli, id, 10)
	}
	mustRegister(t, newAgent(f.url), issue(t, f, "registering", time.Hour))
	running := newAgent(f.url)
	mustRegister(t, running, issue(t, f, "running", time.Hour))
	running.report(t, healthy())
	abnormal := newAgent(f.url)
	mustRegister(t, abnormal, issue(t, f, "abnormal", time.Hour))
	abnormal.report(t, healthy())
	abnormal.report(t, agentproto.EMQXStatus{}) // EMQX unreachable

	ids := []string{"running", "unknown", "created", "abnormal", "registering"}
	want := []string{StateRunning, StateCreated, StateCreated, StateAbnormal, StateRegistering}
	got := make([]string, len(ids))
	if err := f.States(t.Context(), ids, got); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if st := f.status(t, id); got[i] != want[i] || st.State != want[i] {
			t.Errorf("%s: States says %q, Status %q, want %q", id, got[i], st.State, want[i])
		}
	}
}
