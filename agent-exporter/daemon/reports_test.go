package daemon

import (
	"log/slog"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
)

// TestReportsQueueAndRetry: the queue keeps the newest reports up to its
// limit; a failed send holds every report, an asked-for one too, until
// ecp's Retry-After has passed; a delivery clears the hold.
func TestReportsQueueAndRetry(t *testing.T) {
	t0 := time.Unix(1_764_000_000, 0)
	r := reports{limit: 2, backoff: backoff.Backoff{Base: time.Second, Max: time.Minute, Rand: func() float64 { return 0 }}}
	r.start(t0, 0)
	if !r.due(t0) {
		t.Fatal("first report of a session not due at once")
	}
	for i := range 3 {
		if dropped := r.add(agentproto.ReportRequest{IntervalSeconds: i}, 0); dropped != max(0, i-1) {
			t.Fatalf("report %d dropped %d", i, dropped)
		}
	}
	if len(r.queue) != 2 || r.queue[0].IntervalSeconds != 1 {
		t.Fatalf("queue %+v, want the two newest", r.queue)
	}
	wait := r.failed(t0, &ecpclient.APIError{Status: 429, RetryAfter: 30 * time.Second})
	if wait != 30*time.Second || r.lastErr == "" {
		t.Fatalf("waits %s (last error %q), want ecp's 30s", wait, r.lastErr)
	}
	r.applied()
	if r.due(t0.Add(29*time.Second)) || !r.due(t0.Add(30*time.Second)) {
		t.Fatal("a report asked for went out before ecp's Retry-After, or not after it")
	}
	r.delivered(t0.Add(30*time.Second), true)
	if len(r.queue) != 1 || r.lastErr != "" || !r.retryAt.IsZero() || !r.lastAt.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("after delivery: queue %d, last error %q, retry at %s", len(r.queue), r.lastErr, r.retryAt)
	}
}

// TestReportsFirstPlacedByECP: a first report ecp placed later in the
// interval is not due before then, and a desired state applied meanwhile
// does not pull it forward.
func TestReportsFirstPlacedByECP(t *testing.T) {
	t0 := time.Unix(1_764_000_000, 0)
	var r reports
	r.start(t0, 7*time.Second)
	r.applied()
	if r.now || r.due(t0.Add(6*time.Second)) || !r.due(t0.Add(7*time.Second)) {
		t.Fatal("first report not held to ecp's place in the interval")
	}
	r.add(agentproto.ReportRequest{}, r.appliedGen)
	if !r.firstAt.IsZero() {
		t.Fatal("first report placed still after it was queued")
	}
}

func TestIntervalsPrecedence(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	iv := intervals{flag: 15 * time.Second, follow: true, current: 15 * time.Second}
	iv.ecp = 30 * time.Second
	iv.pick(log)
	if iv.current != 30*time.Second || iv.pinned() {
		t.Fatalf("following ecp: %s pinned %v, want ecp's 30s", iv.current, iv.pinned())
	}
	iv.file = 5 * time.Second
	iv.pick(log)
	if iv.current != 5*time.Second || !iv.pinned() {
		t.Fatalf("with a file interval: %s pinned %v, want the file's 5s, pinned", iv.current, iv.pinned())
	}
	iv = intervals{flag: 15 * time.Second, ecp: 30 * time.Second}
	iv.pick(log)
	if iv.current != 15*time.Second || iv.reportEvery() != 30*time.Second {
		t.Fatalf("not following: %s, report every %s", iv.current, iv.reportEvery())
	}
}
