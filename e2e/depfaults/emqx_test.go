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
// At this test's 1 s interval a 2 s call makes ecp show AgentSilent rather
// than a reason naming EMQX: an agent tick (enforcement with no deadline of
// its own, then a collection cut at max(interval, 10 s)) outlasts ecp's
// three intervals.
// The test logs what ecp showed; it asserts the reason only for the 500s.
func TestEMQXFaults(t *testing.T) {
	s := newStack(t, deps{})
	a := s.manage()
	phase := func(name, fault string, d time.Duration) (reasons map[string]int, overlap int) {
		t.Helper()
		post(t, a.simURL+"/sim/api/fault", fault)
		reasons = map[string]int{}
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
		return reasons, overlap
	}
	_, slowOverlap := phase("EMQX answering in 2 s", `{"latencyMs":2000}`, outage(30*time.Second, 2*time.Minute))
	// Healthy in between, so the next phase starts from running.
	post(t, a.simURL+"/sim/api/fault", `{}`)
	if _, err := s.api.WaitState(t.Context(), a.id, "running", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	flaky, flakyOverlap := phase("EMQX answering 500 to half the calls", `{"errorRate":0.5,"status":500}`, outage(30*time.Second, 2*time.Minute))
	post(t, a.simURL+"/sim/api/fault", `{}`)
	healed := time.Now()
	if _, err := s.api.WaitState(t.Context(), a.id, "running", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if slowOverlap > 1 || flakyOverlap > 1 {
		t.Errorf("the agent overlapped collections: %d and %d requests in flight on one path", slowOverlap, flakyOverlap)
	}
	named := 0
	for k, n := range flaky {
		if strings.HasPrefix(k, "abnormal/") {
			if !strings.Contains(k, "500 INTERNAL_ERROR") {
				t.Errorf("with EMQX answering 500, ecp showed %q", k)
			}
			named += n
		}
	}
	if named == 0 {
		t.Errorf("EMQX answered 500 to half the calls for 30s and ecp never said so: %v", flaky)
	}
	t.Logf("EMQX slow and failing: lost nothing; collections never overlapped (at most %d request in flight per path); ecp named the 500s in %d of its abnormal seconds; running again %s after EMQX healed",
		max(slowOverlap, flakyOverlap), named, time.Since(healed).Round(time.Second))
}
