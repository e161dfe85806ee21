package daemon

import (
	"time"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
)

// reports is the agent's side of reporting: the reports waiting for ecp,
// when the next one is due, and the backoff after a failed send. It knows
// nothing of sessions, clients or collections; reporter drives it under
// its mutex.
type reports struct {
	limit   int // most reports kept while ecp is unreachable
	queue   []agentproto.ReportRequest
	backoff backoff.Backoff
	// next is when the next report is due.
	next time.Time
	// now asks for a report at the next tick whatever next says (a
	// desired state was just applied); a flush in progress cannot lose it.
	now bool
	// retryAt holds every report, now's too, until ecp's Retry-After (or
	// the backoff) has passed since a failed send.
	retryAt time.Time
	// appliedGen counts desired states applied outside a tick; a tick that
	// started before the latest one collected a stale snapshot and does
	// not satisfy now.
	appliedGen uint64
	// firstAt is set from registration until the first report ecp placed
	// in the interval is sent: the collect loop ticks then, and keeps
	// that phase.
	firstAt time.Time
	lastAt  time.Time
	lastErr string
}

// start forgets everything for a new session, whose first report ecp
// placed first after now (0: at once).
func (r *reports) start(now time.Time, first time.Duration) {
	r.queue = nil
	r.next, r.retryAt, r.firstAt = time.Time{}, time.Time{}, time.Time{}
	if first > 0 {
		r.next = now.Add(first)
		r.firstAt = r.next
	}
	r.lastErr = ""
	r.backoff.Reset()
}

// due says whether a tick at now reports.
func (r *reports) due(now time.Time) bool {
	return !now.Before(r.retryAt) && (!now.Before(r.next) || r.now)
}

// add queues req, built by a tick that started at applied generation gen,
// and returns how many of the oldest reports it dropped for room.
func (r *reports) add(req agentproto.ReportRequest, gen uint64) int {
	r.firstAt = time.Time{}
	if gen == r.appliedGen {
		r.now = false
	}
	r.queue = append(r.queue, req)
	over := len(r.queue) - r.limit
	if over <= 0 {
		return 0
	}
	r.queue = r.queue[over:]
	return over
}

// failed records a failed send at now and returns how long to wait.
func (r *reports) failed(now time.Time, err error) time.Duration {
	wait := r.backoff.Next(ecpclient.RetryAfter(err))
	r.next = now.Add(wait)
	r.retryAt = r.next
	r.lastErr = err.Error()
	return wait
}

// delivered records that ecp took the oldest report at now, and drops it
// from the queue when pop (the queue is still the one it came from).
func (r *reports) delivered(now time.Time, pop bool) {
	if pop && len(r.queue) > 0 {
		r.queue = r.queue[1:]
	}
	r.backoff.Reset()
	r.retryAt = time.Time{}
	r.lastAt = now
	r.lastErr = ""
}

// applied records a desired state applied outside a tick: ecp hears of it
// at the next tick, unless its first report is still to come.
func (r *reports) applied() {
	if r.firstAt.IsZero() {
		r.now = true
	}
	r.appliedGen++
}
