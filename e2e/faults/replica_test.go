package faults

import (
	"strings"
	"testing"
	"time"
)

// TestKillReplicaUnderLoad kills -9 the replica that runs the liveness
// sweeper while the agents report: their connections to it break, they
// reconnect through the balancer to the others, another replica takes the
// sweeper over, and no cluster is marked abnormal.
func TestKillReplicaUnderLoad(t *testing.T) {
	f, ctx, w := steadyFleet(t)

	victim := f.leaderReplica(ctx)
	if victim == nil {
		t.Fatal("no replica says it leads the liveness sweeper")
	}
	served := 0.0
	_ = scrape(ctx, victim.url()+"/metrics", func(series string, v float64) {
		if strings.HasPrefix(series, "ecp_http_request_duration_seconds_count{") && strings.Contains(series, `route="/api/v1/agent/`) {
			served += v
		}
	})
	if served == 0 {
		t.Fatalf("%s served no agent call before the kill; the scenario would prove nothing", victim.name)
	}
	killed := time.Now()
	victim.proc.Kill()
	// Past the silence window (3 intervals) and the new leader's grace.
	sleep(ctx, 6*f.interval)
	w.end()

	if got := w.abnormal(); len(got) > 0 {
		t.Errorf("clusters left running while a replica died: %v", got)
	}
	longest, resumed := w.gaps(killed)
	if resumed > f.interval+time.Second {
		t.Errorf("the slowest agent reported %s after the kill, more than one interval (%s)", resumed, f.interval)
	}
	replies := f.agentReplies(t.Context())
	f.intact(t.Context(), killed.Add(2*f.interval))
	if replies["500"] > 0 {
		t.Errorf("surviving replicas answered agents 500 %v times", replies["500"])
	}
	t.Logf("SUMMARY kill -9 of the sweeper's replica (%s) of 3, %d agents, interval %s, the victim had served %v agent calls: lost nothing; every cluster stayed running (%d API polls, %d failed while the balancer still sent to the dead replica); slowest agent reported %s after the kill, longest gap between two reports %s; %v failed report attempts on the agents; agent API replies of the survivors by code %v",
		victim.name, len(f.agents), f.interval, served, w.polls, w.apiErrors, resumed.Round(10*time.Millisecond), longest.Round(10*time.Millisecond), w.failed(), replies)
}
