package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// tickBudget is how long one tick may talk to EMQX, enforcement and
// collection together: half the collection interval in force when the
// tick starts, as reported to ecp (whole seconds, at least one; see
// intervalSeconds). The next tick starts an interval after this one ends,
// so reports are at most 1.5 intervals apart however slow EMQX is, and
// ecp's silence threshold (agentproto.SilentIntervals of the longer of its
// interval and the reported one) leaves 1.5 intervals for the report to
// reach ecp. A slow EMQX is then reported as ProblemEMQXTimeout, on time,
// instead of showing as AgentSilent. An interval changed during the tick
// (a report reply, a reload) applies from the next tick on; the tick's
// report still says the interval it ran at, which ecp's threshold covers.
func tickBudget(interval time.Duration) time.Duration {
	return time.Duration(intervalSeconds(interval)) * time.Second / 2
}

// intervalSeconds is the interval as reports give it
// (agentproto.ReportRequest.IntervalSeconds): rounded up, so ecp never
// expects samples faster than they come.
func intervalSeconds(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// timeoutProblem names the EMQX call the tick's deadline cut: the first of
// errs, in the order the tick made its calls, that ended on a deadline.
// Calls made after the deadline fail the same way but come later.
func timeoutProblem(budget time.Duration, errs ...error) *agentproto.Problem {
	call := "a call"
	for _, err := range errs {
		var ue *url.Error
		if errors.Is(err, context.DeadlineExceeded) && errors.As(err, &ue) {
			call = strings.ToUpper(ue.Op)
			if u, perr := url.Parse(ue.URL); perr == nil {
				call += " " + u.Path
			}
			break
		}
	}
	return &agentproto.Problem{Code: agentproto.ProblemEMQXTimeout, Message: fmt.Sprintf(
		"EMQX timed out on %s: no answer within the agent's tick deadline of %s (half the collection interval, for "+
			"enforcement and collection together, so that the agent still reports on time); this report carries only "+
			"what EMQX answered before", call, budget)}
}
