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
