package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// TestTickBudgetUnderSilence: whatever the interval, a tick that uses all
// of its budget still reports well before ecp's silence threshold.
func TestTickBudgetUnderSilence(t *testing.T) {
	for _, iv := range []time.Duration{100 * time.Millisecond, time.Second, 1500 * time.Millisecond, 15 * time.Second, agentproto.MaxAgentInterval} {
		reported := time.Duration(intervalSeconds(iv)) * time.Second
		// Between two reports: the wait before the next tick, then its budget.
		worst := iv + tickBudget(iv)
		if silence := agentproto.SilentIntervals * reported; worst > silence-reported {
			t.Errorf("interval %s: reports up to %s apart, ecp calls the agent silent after %s", iv, worst, silence)
		}
	}
}

// TestTimeoutProblemNamesTheCutCall: the first call that ended on the
// deadline is named, not the calls made after it, which failed at once.
func TestTimeoutProblemNamesTheCutCall(t *testing.T) {
	cut := func(method, u string) error {
		return fmt.Errorf("emqx %s: %w", method, &url.Error{Op: method, URL: u, Err: context.DeadlineExceeded})
	}
	tests := []struct {
		name string
		errs []error
		want string
	}{
		{"enforcement cut", []error{nil, cut("Get", "http://e:18083/api/v5/license"), cut("Get", "http://e:18083/api/v5/nodes")}, "EMQX timed out on GET /api/v5/license:"},
		{"query left out", []error{errors.New("500"), cut("Get", "http://e:18083/api/v5/alarms?activated=true&limit=100")}, "EMQX timed out on GET /api/v5/alarms:"},
		{"no call named", []error{nil, errors.New("reading emqx GET /rules: context deadline exceeded")}, "EMQX timed out on a call:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := timeoutProblem(500*time.Millisecond, tc.errs...)
			if p.Code != agentproto.ProblemEMQXTimeout || !strings.HasPrefix(p.Message, tc.want) || !strings.Contains(p.Message, "500ms") {
				t.Fatalf("got %s %q, want %s starting %q", p.Code, p.Message, agentproto.ProblemEMQXTimeout, tc.want)
			}
		})
	}
}
