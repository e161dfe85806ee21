package daemon

import (
	"sync"
	"time"
)

// On one HTTP/1.1 connection (transport.ECP in its default mode) a held
// long-poll holds the connection: the tick's report, remote write and log
// batches would wait behind it. So the poll is bounded to end a margin
// before the next tick (pollMargin, or a tenth of a shorter gap between
// ticks) and is not sent at all when less than the margin would be left,
// nor while a tick is due or running: the poll loop then waits for the
// tick's end and polls again right after its sends (the report's reply
// carries the desired state meanwhile). Cancelling the poll instead would
// close the connection (Go closes an HTTP/1.1 connection whose request is
// cancelled).
const pollMargin = time.Second

// sendSchedule is when the collection loop next sends to ecp, for the
// long-poll to keep clear of it. It owns the loop's wake-up channel, so a
// tick asked for (wake) counts as due at once.
type sendSchedule struct {
	kick chan struct{} // wakes the collection loop for a tick now

	mu     sync.Mutex
	next   time.Time     // when the next tick is due
	margin time.Duration // how long before next a poll must be answered
	busy   bool          // a tick is due or running
	woken  bool          // wake was called since the running tick began
	ticked chan struct{} // closed when busy ends
}

func newSendSchedule() *sendSchedule {
	// Busy until the first tick (due at once) ends.
	return &sendSchedule{kick: make(chan struct{}, 1), busy: true, ticked: make(chan struct{})}
}

// wake asks for a tick now.
func (w *sendSchedule) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.busy, w.woken = true, true
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// begin marks a tick started (its timer fired or it was woken). It also
// answers a wake that came before it: this tick starts after it.
func (w *sendSchedule) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.busy, w.woken = true, false
	select {
	case <-w.kick:
	default:
	}
}

// end marks the tick's sends done and the next tick due at now+gap. A
// wake during the tick keeps the schedule busy for the tick it asked for.
func (w *sendSchedule) end(now time.Time, gap time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next, w.margin = now.Add(gap), min(pollMargin, gap/10)
	if w.woken {
		return
	}
	w.busy = false
	close(w.ticked)
	w.ticked = make(chan struct{})
}

// pollHold is how long a poll sent at now may be held, at most limit:
// until the margin before the next tick. When a tick is due or running, or
// less than the margin would be left, it returns a channel closed when the
// next tick has ended instead: poll after it.
func (w *sendSchedule) pollHold(now time.Time, limit time.Duration) (time.Duration, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	left := w.next.Sub(now) - w.margin
	if w.busy || left < max(w.margin, time.Millisecond) {
		return 0, w.ticked
	}
	return min(limit, left), nil
}

// nextSendDone returns a channel closed when the next tick's sends (the
// running tick's, if one is due or running) have ended: a poll ecp asked
// to wait for them (agentproto.HeaderHold) waits for it.
func (w *sendSchedule) nextSendDone() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ticked
}
