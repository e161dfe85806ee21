package daemon

import (
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// firstReportDelay reads the registration reply's place of the first
// report in the interval, bounded by the longest interval an agent runs.
func firstReportDelay(millis int64) time.Duration {
	return time.Duration(min(max(millis, 0), agentproto.MaxAgentInterval.Milliseconds())) * time.Millisecond
}

// nextTickIn is the collection interval, or less when the first report ecp
// placed in the interval is due sooner: that tick then reports, and the
// ticks after it keep its place.
func (a *App) nextTickIn() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.iv.current
	if !a.rep.firstAt.IsZero() {
		d = max(0, min(d, a.rep.firstAt.Sub(a.opts.Now())))
	}
	return d
}
