package daemon_test

import (
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agentproto"
)

// reportsAfter returns the reports collected after the first one that
// said interval, the run-up of a change excluded.
func reportsAfter(ecp *fakeecp.Server, interval int) []agentproto.ReportRequest {
	all := ecp.Reports()
	for i, r := range all {
		if r.IntervalSeconds == interval {
			return all[i:]
		}
	}
	return nil
}

// TestJourneyAgentFollowsECPInterval: an agent started without
// --collect.interval collects and reports at the interval ecp sends, and
// follows a change of it at runtime; one whose operator pinned the interval
// keeps it. Either way each report says the interval the agent really runs.
func TestJourneyAgentFollowsECPInterval(t *testing.T) {
	tests := []struct {
		name   string
		follow bool
		// want is the interval (s) the agent must run at with ecp at 1 s.
		want int
	}{
		{"not pinned follows ecp", true, 1},
		{"pinned keeps its own", false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emqx := startEMQX(t)
			ecp := fakeecp.Start(t)
			ecp.SetInterval(1)
			ecp.IssueToken("tok")
			h := startDaemon(t, t.TempDir(), func(o *daemon.Options) {
				o.CollectInterval = 2 * time.Second
				o.FollowECPInterval = tc.follow
			})
			if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
				t.Fatalf("register: %s", e)
			}
			eventually(t, 10*time.Second, "three reports at the interval in force", func() bool {
				return len(reportsAfter(ecp, tc.want)) >= 3
			})
			rs := reportsAfter(ecp, tc.want)
			last, prev := rs[len(rs)-1], rs[len(rs)-2]
			gap := last.CollectedAt.Sub(prev.CollectedAt)
			want := time.Duration(tc.want) * time.Second
			if gap < want-100*time.Millisecond || gap > want+900*time.Millisecond {
				t.Fatalf("reports %s apart, want about %s (ecp at 1s, agent at %s, follow %v)", gap, want, 2*time.Second, tc.follow)
			}
			if last.IntervalPinned == tc.follow {
				t.Fatalf("report says pinned %v, agent follows ecp %v", last.IntervalPinned, tc.follow)
			}
			if !tc.follow {
				return
			}
			// ecp changes its interval: the agent re-arms its collection
			// at the new one.
			ecp.SetInterval(3)
			eventually(t, 10*time.Second, "two reports at ecp's new interval of 3s", func() bool {
				return len(reportsAfter(ecp, 3)) >= 2
			})
			rs = reportsAfter(ecp, 3)
			if gap := rs[1].CollectedAt.Sub(rs[0].CollectedAt); gap < 2900*time.Millisecond || gap > 3900*time.Millisecond {
				t.Fatalf("reports %s apart after ecp moved to 3s", gap)
			}
		})
	}
}

// TestScaleAgentHonoursFirstReportDelay: in a burst of registrations ecp
// places each agent's first report in the interval; the agent reports
// then, not at once (nor when it applies the registration's desired
// state), and keeps that place in the interval afterwards.
func TestScaleAgentHonoursFirstReportDelay(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.SetInterval(3)
	ecp.SetFirstReportDelay(1500)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.FollowECPInterval = true })
	registered := time.Now()
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 10*time.Second, "two reports", func() bool { return len(ecp.Reports()) >= 2 })
	rs := ecp.Reports()
	if first := rs[0].CollectedAt.Sub(registered); first < 1400*time.Millisecond || first > 2900*time.Millisecond {
		t.Fatalf("first report collected %s after registering, want about 1.5s (ecp's place for it in the 3s interval)", first)
	}
	if gap := rs[1].CollectedAt.Sub(rs[0].CollectedAt); gap < 2900*time.Millisecond || gap > 3900*time.Millisecond {
		t.Fatalf("second report %s after the first, want one 3s interval", gap)
	}
}
