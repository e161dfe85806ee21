package depfaults

import (
	"strings"
	"testing"
	"time"
)

// TestEMQXFaults makes EMQX slow (2 s per API call), then answer 500 to
// half of the calls, under a running agent: the agent never runs two
// collections at once (the simulator counts requests in flight on one
// path, and the agent asks for each path once per collection), ecp names
// EMQX's failure as the agent saw it, and the cluster is running again
// once EMQX heals.
//
// At this test's 1 s interval no 2 s call can finish: the agent's tick
// (enforcement and collection) runs under a deadline of half an interval,
// reports on time, and ecp shows EMQXTimeout naming the call, never
// AgentSilent.
func TestEMQXFaults(t *testing.T) {
	t.Parallel() // see TestMain
	s := newStack(t, deps{})
	a := s.manage()
	// phase installs fault for d and returns the seconds ecp showed the
	// cluster abnormal, each with a reason containing want, and the most
	// requests the simulator saw in flight on one path.
	phase := func(name, fault, want string, d time.Duration) (named, overlap int) {
		t.Helper()
		post(t, a.simURL+"/sim/api/fault", fault)
		reasons := map[string]int{}
		during(d, time.Second, func() {
			cl, err := s.api.Cluster(t.Context(), a.id)
			if err != nil {
				t.Fatal(err)
			}
			k := cl.State
			if cl.StateReason != nil {
				k += "/" + cl.StateReason.Code + ": " + cl.StateReason.Message
			}
			reasons[k]++
		})
		overlap = s.simState().APIPathConcurrencyMax
		t.Logf("%s for %s: ecp showed (state/reason: seconds) %v; most requests in flight on one EMQX path: %d", name, d, reasons, overlap)
		for k, n := range reasons {
			if strings.HasPrefix(k, "abnormal/") {
				if !strings.Contains(k, want) {
					t.Errorf("with %s, ecp showed %q", name, k)
				}
				named += n
			}
		}
		if named == 0 {
			t.Errorf("%s for %s and ecp never said so: %v", name, d, reasons)
		}
		return named, overlap
	}
	slowNamed, slowOverlap := phase("EMQX answering in 2 s", `{"latencyMs":2000}`, "abnormal/EMQXTimeout: EMQX timed out on GET /api/v5/", outage(30*time.Second, 2*time.Minute))
	// Healthy in between, so the next phase starts from running.
	post(t, a.simURL+"/sim/api/fault", `{}`)
	if _, err := s.api.WaitState(t.Context(), a.id, "running", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	named, flakyOverlap := phase("EMQX answering 500 to half the calls", `{"errorRate":0.5,"status":500}`, "500 INTERNAL_ERROR", outage(30*time.Second, 2*time.Minute))
	post(t, a.simURL+"/sim/api/fault", `{}`)
	healed := time.Now()
	if _, err := s.api.WaitState(t.Context(), a.id, "running", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if slowOverlap > 1 || flakyOverlap > 1 {
		t.Errorf("the agent overlapped collections: %d and %d requests in flight on one path", slowOverlap, flakyOverlap)
	}
	t.Logf("EMQX slow and failing: lost nothing; collections never overlapped (at most %d request in flight per path); ecp named the slow calls in %d and the 500s in %d of its abnormal seconds; running again %s after EMQX healed",
		max(slowOverlap, flakyOverlap), slowNamed, named, time.Since(healed).Round(time.Second))
}
