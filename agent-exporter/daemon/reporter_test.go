package daemon

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
)

func testReporter(now *time.Time) *reporter {
	return newReporter(Options{
		Now: func() time.Time { return *now }, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
		CollectInterval: 15 * time.Second, FollowECPInterval: true, ReportBuffer: 2,
		BackoffBase: time.Second, BackoffMax: time.Minute,
	})
}

// reportOf queues a report when due, marking it with n.
func reportOf(r *reporter, n int) bool {
	return r.queue(r.gen(), func(intervals) agentproto.ReportRequest {
		return agentproto.ReportRequest{AgentVersion: string(rune('a' + n))}
	})
}

// TestReporterKeepsToItsSession: a flush of a session no longer reported
// for stops and a late reply of it pops nothing of the next session's
// queue; ending another session's reports changes nothing.
func TestReporterKeepsToItsSession(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	r := testReporter(&now)
	s1, s2 := &session{}, &session{}
	r.start(s1)
	for i := range 3 {
		r.rep.now = true // a report at every call, as after applied desired states
		if !reportOf(r, i) {
			t.Fatalf("report %d not due", i)
		}
	}
	if req, ok := r.oldest(s1, now); !ok || req.AgentVersion != "b" || testutil.ToFloat64(r.dropped) != 1 || testutil.ToFloat64(r.buffered) != 2 {
		t.Fatalf("oldest %q %v, dropped %v, buffered %v: want b of the two newest, one dropped", req.AgentVersion, ok, testutil.ToFloat64(r.dropped), testutil.ToFloat64(r.buffered))
	}
	if _, ok := r.oldest(s2, now); ok {
		t.Fatal("another session's flush got s1's report")
	}
	r.stop(s2)
	if _, _, n := r.status(); n != 2 {
		t.Fatalf("ending another session's reports left %d of 2", n)
	}
	r.stop(s1)
	if _, _, n := r.status(); n != 0 || testutil.ToFloat64(r.buffered) != 0 {
		t.Fatalf("ended session's reports: %d kept, gauge %v", n, testutil.ToFloat64(r.buffered))
	}
	r.start(s2)
	reportOf(r, 0)
	r.delivered(s1, 0)
	if _, _, n := r.status(); n != 1 || testutil.ToFloat64(r.sent) != 1 {
		t.Fatalf("s1's late delivery: s2's queue holds %d (want 1), sent %v", n, testutil.ToFloat64(r.sent))
	}
	r.delivered(s2, 0)
	if lastAt, lastErr, n := r.status(); n != 0 || !lastAt.Equal(now) || lastErr != "" {
		t.Fatalf("after s2's delivery: %d queued, last at %s, error %q", n, lastAt, lastErr)
	}
}

// TestReporterSchedule: a failed send holds the reports for ecp's
// Retry-After; the first tick of a session comes where ecp placed its
// first report; ecp's interval, from the registration or a reply, sets
// the collection interval until the configuration file pins one.
func TestReporterSchedule(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	r := testReporter(&now)
	s := &session{reg: state.Registration{ReportInterval: 30 * time.Second}, firstReport: 7 * time.Second}
	r.start(s)
	if r.interval() != 30*time.Second || r.nextTickAt(now).Sub(now) != 7*time.Second {
		t.Fatalf("interval %s, next tick in %s: want ecp's 30s and its first report's 7s", r.interval(), r.nextTickAt(now).Sub(now))
	}
	if reportOf(r, 0) {
		t.Fatal("a report before the place ecp gave the first")
	}
	now = now.Add(7 * time.Second)
	if !reportOf(r, 0) || r.nextTickAt(now).Sub(now) != 30*time.Second {
		t.Fatalf("first report not queued at its place, or the ticks do not return to the interval (next in %s)", r.nextTickAt(now).Sub(now))
	}
	wait, n := r.failed(&ecpclient.APIError{Status: 429, RetryAfter: 40 * time.Second})
	if wait < 40*time.Second || n != 1 || testutil.ToFloat64(r.failures) != 1 {
		t.Fatalf("failed send: wait %s, %d buffered, failures %v", wait, n, testutil.ToFloat64(r.failures))
	}
	r.applied()
	now = now.Add(39 * time.Second)
	if reportOf(r, 1) {
		t.Fatal("a report asked for went out before ecp's Retry-After")
	}
	r.delivered(s, 20*time.Second)
	if r.interval() != 20*time.Second {
		t.Fatalf("interval %s after ecp's reply of 20s", r.interval())
	}
	if _, ok := r.oldest(s, now); ok {
		t.Fatal("a delivered report still queued")
	}
	r.setFileInterval(5 * time.Second)
	r.rep.now = true
	var stated agentproto.ReportRequest
	r.queue(r.gen(), func(iv intervals) agentproto.ReportRequest {
		stated = agentproto.ReportRequest{IntervalSeconds: intervalSeconds(iv.current), IntervalPinned: iv.pinned()}
		return stated
	})
	if r.interval() != 5*time.Second || stated.IntervalSeconds != 5 || !stated.IntervalPinned {
		t.Fatalf("with the file's 5s: interval %s, report says %d s pinned %v", r.interval(), stated.IntervalSeconds, stated.IntervalPinned)
	}
}
