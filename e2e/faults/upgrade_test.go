package faults

import (
	"testing"
	"time"
)

// TestRollingUpgrade replaces the replicas one by one with a second build
// of the same commit while the agents report, as a Deployment's rolling
// update does: stop one (SIGTERM: it reports not ready, drains and ends its
// long-polls), start the new build on its address, wait until it is ready,
// go on with the next. Nothing may go abnormal, and no report may be
// refused other than with a Retry-After the agent honours.
func TestRollingUpgrade(t *testing.T) {
	second := buildSecond(t)
	f, ctx, w := steadyFleet(t)
	before := f.agentReplies(ctx)

	started := time.Now()
	for _, r := range f.replicas {
		if err := r.proc.Stop(); err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
		f.startReplica(r, second)
		sleep(ctx, f.interval)
	}
	took := time.Since(started)
	sleep(ctx, 4*f.interval)
	w.end()

	if got := w.abnormal(); len(got) > 0 {
		t.Errorf("clusters left running during the rolling upgrade: %v", got)
	}
	after := f.agentReplies(t.Context())
	for code, n := range after {
		if code != "200" && code != "204" && code != "429" && code != "503" {
			t.Errorf("the new replicas answered agents %s %v times", code, n)
		}
	}
	longest, _ := w.gaps(started)
	if longest > 2*f.interval+time.Second {
		t.Errorf("an agent went %s without a successful report during the upgrade, more than two intervals (%s)", longest, f.interval)
	}
	f.intact(t.Context(), started.Add(took))
	t.Logf("SUMMARY rolling upgrade of 3 replicas to a second build of the same commit in %s, %d agents, interval %s: lost nothing; every cluster stayed running; longest gap between two reports of one agent %s; %v failed report attempts on the agents; agent API replies before by code %v, of the new replicas %v",
		took.Round(100*time.Millisecond), len(f.agents), f.interval, longest.Round(10*time.Millisecond), w.failed(), before, after)
}
