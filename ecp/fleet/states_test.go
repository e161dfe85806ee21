package fleet

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/registry"
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

// TestStateCountsFollowEveryChange: the per-project tally the cluster
// lists count with always agrees with counting each entry's state (States)
// and project, through a random run of spec puts (new projects, transfers),
// spec deletions, status changes and deletions, stale and out of order.
func TestStateCountsFollowEveryChange(t *testing.T) {
	ready := make(chan struct{})
	close(ready)
	f := &Fleet{memory: &memory{entries: map[string]*entry{}, tally: map[string]*stateTally{}}, gate: &gate{ready: ready},
		logger: slog.New(slog.DiscardHandler), opts: Options{Now: time.Now}}
	rnd := rand.New(rand.NewPCG(1, 2))
	projects := []string{"p0", "p1", "p2"}
	states := []string{StateCreated, StateRegistering, StateRunning, StateAbnormal, ""}
	var rev int64
	for step := range 3000 {
		id := fmt.Sprint("c", rnd.IntN(20))
		rev++
		k := kv{modRev: rev, createRev: rev}
		if rnd.IntN(10) == 0 {
			k.modRev = rev - int64(rnd.IntN(5)) // stale or repeated
		}
		switch rnd.IntN(4) {
		case 0, 1:
			k.key = registry.Key(id)
			b, err := registry.Spec{ID: id, Name: id, Project: projects[rnd.IntN(len(projects))], MaxConnections: 1}.Encode()
			if err != nil {
				t.Fatal(err)
			}
			k.value, k.deleted = b, rnd.IntN(4) == 0
		default:
			k.key = statusKey(id)
			b, _ := json.Marshal(statusRecord{State: states[rnd.IntN(len(states))]})
			k.value, k.deleted = b, rnd.IntN(4) == 0
		}
		f.mu.Lock()
		f.applyLocked(k)
		want := map[string]map[string]int{}
		for id, e := range f.entries {
			if !e.hasSpec {
				continue
			}
			out := []string{""}
			f.mu.Unlock()
			if err := f.States(t.Context(), []string{id}, out); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			if out[0] != StateCreated {
				if want[e.spec.Project] == nil {
					want[e.spec.Project] = map[string]int{}
				}
				want[e.spec.Project][out[0]]++
			}
		}
		f.mu.Unlock()
		for _, p := range append(projects, "") {
			got := map[string]int{}
			if err := f.StateCounts(t.Context(), p, func(p string) bool { return p != "p2" }, got); err != nil {
				t.Fatal(err)
			}
			exp := map[string]int{}
			for q, c := range want {
				if q == p || p == "" && q != "p2" {
					for st, n := range c {
						exp[st] += n
					}
				}
			}
			for _, st := range tallied {
				if got[st] != exp[st] {
					t.Fatalf("step %d (%+v): project %q counts %v, want %v", step, k, p, got, exp)
				}
			}
		}
	}
}
