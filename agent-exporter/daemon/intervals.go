package daemon

import (
	"log/slog"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// intervals picks the collection interval from its three sources: the
// configuration file's collectInterval, else ecp's report interval when
// the agent follows ecp and ecp sent one, else --collect.interval. It is
// guarded by reporter.mu.
type intervals struct {
	flag   time.Duration // --collect.interval
	follow bool          // the agent follows ecp's interval
	// current is the interval in force; file is the configuration
	// file's (zero when unset) and ecp ecp's (zero until ecp sent one).
	current, file, ecp time.Duration
}

// pick sets current from the sources. The collect loop re-arms its timer
// with it after every tick, and a change made outside a tick
// (registration, reload) wakes the loop, so it takes effect at once.
func (iv *intervals) pick(log *slog.Logger) {
	next := iv.flag
	switch {
	case iv.file > 0:
		next = iv.file
	case iv.follow && iv.ecp > 0:
		next = iv.ecp
	}
	if next != iv.current {
		log.Info("collection interval changed", "from", iv.current, "to", next)
		iv.current = next
	}
}

// reportEvery is ecp's report interval, or the protocol's default until
// ecp sent one.
func (iv *intervals) reportEvery() time.Duration {
	if iv.ecp > 0 {
		return iv.ecp
	}
	return agentproto.DefaultReportInterval
}

// pinned says whether ecp may not move the interval.
func (iv *intervals) pinned() bool { return iv.file > 0 || !iv.follow }
