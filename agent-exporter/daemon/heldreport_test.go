package daemon_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agentproto"
)

// startHeldAgent runs an agent on its one HTTP/1.1 connection (the
// default) reporting every interval to ecp, registered and past its first
// report.
func startHeldAgent(t *testing.T, ecp *fakeecp.Server, interval time.Duration) *emqxSim {
	_, emqx := startHeldAgentHarness(t, ecp, interval)
	return emqx
}

// startHeldAgentHarness is startHeldAgent that also returns the daemon.
func startHeldAgentHarness(t *testing.T, ecp *fakeecp.Server, interval time.Duration) (*harness, *emqxSim) {
	t.Helper()
	emqx := startEMQX(t)
	ecp.StoreWrites()
	ecp.SetInterval(int(interval / time.Second))
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.CollectInterval, o.DesiredWait = interval, 30*time.Second })
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != cli.ExitOK {
		t.Fatalf("register: %s", e)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range ecp.Calls() {
				t.Logf("%s %s → %s status %d hold %s revision %d", c.Path, c.Start.Format("15:04:05.000"), c.End.Format("15:04:05.000"), c.Status, c.Hold, c.Revision)
			}
		}
	})
	// Held: the report, or against an ecp that does not hold it the poll.
	eventually(t, 5*time.Second, "a report held", func() bool { return len(ecp.Reports()) > 0 && ecp.HeldPolls() == 1 })
	return h, emqx
}

// TestHeldReportIsNotBuffered: a report ecp holds as the long-poll was
// received; agent_exporter_reports_buffered ("reports waiting to be
// sent") says 0 while its reply waits. It said 1 nine tenths of the time,
// so an agent that had caught up looked behind (e2e/depfaults TestECPDown
// saw "1 reports buffered" for 2.5 min).
func TestHeldReportIsNotBuffered(t *testing.T) {
	const interval = 3 * time.Second
	ecp := fakeecp.Start(t)
	h, _ := startHeldAgentHarness(t, ecp, interval)
	if m := scrape(t, h.app.Addr()); ecp.HeldPolls() != 1 || !strings.Contains(m, "agent_exporter_reports_buffered 0\n") {
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, "agent_exporter_reports_buffered ") {
				t.Fatalf("held polls %d; while the report is held the agent says %q, want agent_exporter_reports_buffered 0", ecp.HeldPolls(), l)
			}
		}
		t.Fatalf("held polls %d, no agent_exporter_reports_buffered in the scrape", ecp.HeldPolls())
	}
}

// TestOneRequestPerInterval: in steady state the agent makes one request
// to ecp per interval beside its push: the report, held as the long-poll
// until just before the next tick; no desired-state poll and no new
// connection. Steady state starts with the second report: the agent
// reports as it registers, and when its first tick comes before the next
// report is due it polls until the tick after (as in
// TestCrowdedECPNoPollBeforeNextReport).
func TestOneRequestPerInterval(t *testing.T) {
	const interval = time.Second
	ecp := fakeecp.Start(t)
	startHeldAgent(t, ecp, interval)
	eventually(t, 5*interval, "a second report", func() bool { return ecp.CallsTo(agentproto.PathReport) >= 2 })
	var steady time.Time // when the second report was sent
	reports := 0
	for _, c := range ecp.Calls() {
		if c.Path == agentproto.PathReport {
			if reports++; reports == 2 {
				steady = c.Start
			}
		}
	}
	conns := ecp.Connections()
	eventually(t, 10*interval, "four more reports", func() bool { return ecp.CallsTo(agentproto.PathReport) >= reports+4 })
	for _, c := range ecp.Calls() {
		if c.Start.Before(steady) {
			continue
		}
		switch c.Path {
		case agentproto.PathReport:
			if c.Hold == 0 || c.Hold > interval || c.Status != 200 {
				t.Errorf("report at %s held %s answered %d; want held at most the %s to the next tick", c.Start.Format("15:04:05.000"), c.Hold, c.Status, interval)
			}
		case agentproto.PathWrite:
		default:
			t.Errorf("%s at %s in steady state; want only the held report and the push", c.Path, c.Start.Format("15:04:05.000"))
		}
	}
	if n := ecp.Connections(); n != conns {
		t.Fatalf("%d connections opened, want none beyond the one", n-conns)
	}
}

// TestHeldReportWakesOnChange: a change made while the report is held
// reaches EMQX at once by the report's reply, as it did by the poll, and
// the agent tells ecp it applied it.
func TestHeldReportWakesOnChange(t *testing.T) {
	const interval = 3 * time.Second
	ecp := fakeecp.Start(t)
	emqx := startHeldAgent(t, ecp, interval)
	start := len(ecp.Calls())
	ecp.SetMaxConnections(42)
	rev := ecp.Desired().Revision
	// Well within the interval: the held report is answered on the change.
	eventually(t, interval/2, "the change applied", func() bool { return emqx.Dynamic() == 42 })
	eventually(t, interval/2, "a report saying it is applied", func() bool {
		reps := ecp.Reports()
		return reps[len(reps)-1].AppliedRevision == rev
	})
	woke := false
	for _, c := range ecp.Calls()[start:] {
		woke = woke || (c.Path == agentproto.PathReport && c.Hold > 0 && c.Revision == rev)
	}
	if !woke {
		t.Fatalf("revision %d did not come by the held report", rev)
	}
}

// TestHeldReportOldECP: against an ecp that answers reports at once
// without the hold header (one older than held reports), the agent
// long-polls as before, each poll held until just before its next tick,
// and a change still reaches EMQX at once.
func TestHeldReportOldECP(t *testing.T) {
	const interval = 3 * time.Second
	ecp := fakeecp.Start(t)
	ecp.IgnoreReportHold()
	emqx := startHeldAgent(t, ecp, interval)
	ecp.SetMaxConnections(43)
	eventually(t, interval/2, "the change applied", func() bool { return emqx.Dynamic() == 43 })
	for _, c := range ecp.Calls() {
		if c.Path == agentproto.PathDesired && c.Hold > interval {
			t.Errorf("a poll asked to be held %s, longer than the %s to the next tick", c.Hold, interval)
		}
	}
	if ecp.CallsTo(agentproto.PathDesired) == 0 {
		t.Fatal("no desired-state poll answered; want the agent to fall back to it")
	}
}
