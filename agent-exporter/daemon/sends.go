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
//
// A tick that reports sends its push first and then the report as the
// long-poll itself (a held report, agentproto.HeaderReportHeld), bounded
// the same way: one request per interval in steady state. The tick's
// sends end with the hold, so the poll loop has nothing left to hold
// unless the report came back early (a desired state to apply) or ecp
// did not hold it (an ecp older than held reports): then it polls for
// the rest of the interval as before.
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
	// begun and ended count the ticks begun and ended. ecp answered a
	// held report or a poll at once and wants no poll before the sends
	// of the next tick (agentproto.HeaderHold): until tick crowdedUntil
	// ended.
	begun, ended, crowdedUntil uint64
	ticked                     chan struct{} // closed when busy ends
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
	w.begun++
	select {
	case <-w.kick:
	default:
	}
}

// crowd says ecp answered a held report or a poll at once because it is
// crowded: the poll loop then waits for the end of the next tick to begin,
// so that the agent holds a connection only for its sends until ecp holds
// requests again.
func (w *sendSchedule) crowd() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.crowdedUntil = w.begun + 1
}

// end marks the tick's sends done and the next tick due at next, every
// after the tick that ended. A wake during the tick keeps the schedule
// busy for the tick it asked for.
func (w *sendSchedule) end(next time.Time, every time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next, w.margin = next, marginOf(every)
	w.ended = w.begun
	if w.woken {
		return
	}
	w.busy = false
	close(w.ticked)
	w.ticked = make(chan struct{})
}

// pollHold is how long a poll sent at now may be held, at most limit.
// While ecp is crowded (crowd) it returns a channel closed when the next
// tick has ended instead: poll after it. On one HTTP/1.1 connection
// (oneConn) the poll is held only until the margin before the next tick,
// and it waits for the tick likewise when one is due or running or less
// than the margin would be left; on HTTP/2 it runs beside the sends.
func (w *sendSchedule) pollHold(now time.Time, limit time.Duration, oneConn bool) (time.Duration, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended < w.crowdedUntil {
		return 0, w.ticked
	}
	if !oneConn {
		return limit, nil
	}
	hold := holdFor(now, w.next, w.margin, limit)
	if w.busy || hold == 0 {
		return 0, w.ticked
	}
	return hold, nil
}

// marginOf is how long before the next tick a hold must end, with ticks
// every apart: pollMargin, or a tenth of a shorter gap.
func marginOf(every time.Duration) time.Duration { return min(pollMargin, every/10) }

// holdFor is how long a call sent at now may be held so that it ends margin
// before next, at most limit; 0 when less than the margin would be left.
// The desired-state poll and the held report (App.report) are held alike.
func holdFor(now, next time.Time, margin, limit time.Duration) time.Duration {
	left := next.Sub(now) - margin
	if left < max(margin, time.Millisecond) {
		return 0
	}
	return min(limit, left)
}
