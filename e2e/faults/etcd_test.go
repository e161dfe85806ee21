package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEtcdMemberLoss takes etcd members away while the agents report:
// first a follower, then the leader (each brought back before the next
// fault), then two of three for the quorum outage. Throughout, no cluster
// may be marked abnormal; while quorum is lost every replica's /-/ready
// must say why, and ecp must answer agents without a 500; within one
// interval of quorum's return every replica is ready and every agent has
// reported again.
func TestEtcdMemberLoss(t *testing.T) {
	f, ctx, w := steadyFleet(t)
	before := f.agentReplies(ctx)

	for _, which := range []string{"follower", "leader"} {
		m := f.etcd.Follower(ctx)
		if which == "leader" {
			m = f.etcd.Leader(ctx)
		}
		if m == nil {
			t.Fatalf("no etcd %s", which)
		}
		lost := time.Now()
		f.etcd.Kill(m)
		sleep(ctx, 4*f.interval)
		f.intact(ctx, lost.Add(f.interval))
		if err := f.etcd.Start(m); err != nil {
			t.Fatal(err)
		}
		if err := f.etcd.WaitLeader(ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("etcd %s %s was down for %s", which, m.Name, time.Since(lost).Round(time.Second))
	}

	// Quorum: two of three members gone, the leader among them.
	leader := f.etcd.Leader(ctx)
	follower := f.etcd.Follower(ctx)
	if leader == nil || follower == nil {
		t.Fatal("etcd has no leader and follower to stop")
	}
	outage := time.Now()
	f.etcd.Kill(leader)
	f.etcd.Kill(follower)
	notReady := map[string]string{}
	for time.Since(outage) < *quorumFlag {
		for _, r := range f.replicas {
			if code, body := ready(ctx, r); code != http.StatusOK {
				notReady[r.name] = fmt.Sprintf("%d %s", code, body)
			}
		}
		sleep(ctx, 500*time.Millisecond)
	}
	during := f.agentReplies(ctx)
	if err := f.etcd.Start(leader); err != nil {
		t.Fatal(err)
	}
	if err := f.etcd.Start(follower); err != nil {
		t.Fatal(err)
	}
	if err := f.etcd.WaitLeader(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// Converged: every replica ready and every agent reported since.
	converged := time.Duration(0)
	for {
		allReady := true
		for _, r := range f.replicas {
			if code, _ := ready(ctx, r); code != http.StatusOK {
				allReady = false
			}
		}
		_, resumed := w.gaps(back)
		if allReady && resumed > 0 {
			converged = time.Since(back)
			break
		}
		if time.Since(back) > 6*f.interval {
			t.Fatalf("the fleet did not converge within %s of quorum's return", 6*f.interval)
		}
		sleep(ctx, 100*time.Millisecond)
	}
	// Past the silence window, so a sweep counting the outage against
	// the clusters would have shown.
	sleep(ctx, 4*f.interval)
	w.end()

	if len(notReady) != len(f.replicas) {
		t.Errorf("while etcd had no quorum only %d of %d replicas reported not ready: %v", len(notReady), len(f.replicas), notReady)
	}
	for name, got := range notReady {
		if !strings.HasPrefix(got, "503") || !strings.Contains(got, "etcd") {
			t.Errorf("%s's /-/ready during the outage answered %q; want 503 saying etcd is the cause", name, got)
		}
	}
	if got := w.abnormal(); len(got) > 0 {
		t.Errorf("clusters left running for etcd's outage: %v", got)
	}
	if converged > f.interval+time.Second {
		t.Errorf("fleet converged %s after quorum's return, more than one interval (%s)", converged, f.interval)
	}
	after := f.agentReplies(t.Context())
	if n := during["500"] - before["500"]; n > 0 {
		t.Errorf("ecp answered agents 500 %v times while etcd had no quorum; want 503 with Retry-After", n)
	}
	f.intact(t.Context(), back)
	longest, _ := w.gaps(outage)
	t.Logf("SUMMARY etcd follower, then leader, then quorum lost for %s, %d agents, 3 replicas, interval %s: lost nothing; every cluster stayed running; /-/ready during the outage: %v; agent API replies during the outage by code %v (before %v, after %v); fleet converged %s after quorum's return; longest gap between two reports of one agent %s; %v failed report attempts on the agents",
		quorumFlag.String(), len(f.agents), f.interval, notReady, diff(during, before), before, after, converged.Round(10*time.Millisecond), longest.Round(10*time.Millisecond), w.failed())
}

// ready reads a replica's /-/ready status and body.
func ready(ctx context.Context, r *replica) (int, string) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, r.url()+"/-/ready", nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func diff(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
