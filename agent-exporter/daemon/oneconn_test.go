package daemon_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// TestOneConnectionBetweenTicks: on its one HTTP/1.1 connection (the
// default) the agent holds each long-poll only until just before its next
// tick, never the 30 s it may, sends its pushes and log batches between
// polls (ecp sees no call while a poll is held) on that one connection,
// and re-polls right after the tick's sends (its push first), so a change
// made while it was sending reaches EMQX at once by the poll, not at the
// next report.
func TestOneConnectionBetweenTicks(t *testing.T) {
	const interval = time.Second
	logDir := t.TempDir()
	emqx := startEMQX(t, func(o *sim.Options) { o.LogDir, o.LogLevel, o.LogRate = logDir, "info", 0 })
	ecp := fakeecp.Start(t)
	ecp.StoreWrites()
	ecp.SetInterval(30) // one report, then pushes and logs only: the poll brings changes
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.CollectInterval, o.DesiredWait = interval, 30*time.Second })
	args := append(registerArgs(ecp.URL, "tok", emqx.URL, "public"), "--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir)
	if code, _, e := h.cli(args...); code != cli.ExitOK {
		t.Fatalf("register: %s", e)
	}
	defer func() {
		if t.Failed() {
			for _, c := range ecp.Calls() {
				t.Logf("%s %s → %s status %d hold %s revision %d", c.Path, c.Start.Format("15:04:05.000"), c.End.Format("15:04:05.000"), c.Status, c.Hold, c.Revision)
			}
		}
	}()
	count := func(path string) int {
		n := 0
		for _, c := range ecp.Calls() {
			if c.Path == path {
				n++
			}
		}
		return n
	}
	eventually(t, 5*time.Second, "a report, a push and a poll answered", func() bool {
		return count(agentproto.PathReport) > 0 && count(agentproto.PathWrite) > 0 && count(agentproto.PathDesired) > 0
	})
	conns, start := ecp.Connections(), len(ecp.Calls())

	if err := emqx.WriteLogs(50); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the log lines shipped", func() bool { return len(ecp.LogLines()) >= 50 })
	changed := make(chan time.Time, 1)
	ecp.OnNextWrite(func() {
		ecp.SetMaxConnections(77)
		changed <- time.Now()
	})
	eventually(t, 3*interval, "the change applied", func() bool { return emqx.Dynamic() == 77 })
	at := <-changed
	pushes := count(agentproto.PathWrite)
	eventually(t, 3*interval, "two more ticks", func() bool { return count(agentproto.PathWrite) >= pushes+2 })

	calls := ecp.Calls()[start:]
	if n := ecp.Connections(); n != conns {
		t.Fatalf("%d connections opened for the pushes, logs and polls, want none beyond the one held", n-conns)
	}
	rev := ecp.Desired().Revision
	delivered := false
	for _, p := range calls {
		if p.Path != agentproto.PathDesired {
			continue
		}
		if p.Hold > interval {
			t.Errorf("a poll asked ecp to hold it %s, longer than the %s to the next tick", p.Hold, interval)
		}
		if p.Revision == rev && p.Start.After(at) {
			delivered = true
		}
		// A poll held its whole term ends a tenth of the interval before
		// the next tick; a push reaching ecp right after it waited behind
		// it, queued by the tick before.
		heldOut := p.Hold > 0 && p.End.Sub(p.Start) >= p.Hold-10*time.Millisecond
		for _, c := range calls {
			if c.Path != agentproto.PathDesired && c.Start.After(p.Start) && c.Start.Before(p.End) {
				t.Errorf("%s reached ecp at %s while a poll was held (%s to %s)", c.Path, c.Start.Format("15:04:05.000"), p.Start.Format("15:04:05.000"), p.End.Format("15:04:05.000"))
			}
			if c.Path == agentproto.PathWrite && heldOut && !c.Start.Before(p.End) && c.Start.Sub(p.End) < interval/20 {
				t.Errorf("push at %s reached ecp %s after a poll held to its end (%s to %s): it waited behind the poll", c.Start.Format("15:04:05.000"), c.Start.Sub(p.End), p.Start.Format("15:04:05.000"), p.End.Format("15:04:05.000"))
			}
		}
	}
	if !delivered {
		t.Errorf("revision %d, made while the agent pushed, did not come by the poll after the push", rev)
	}
}

// TestHTTP2OneConnection: with --ecp.http2 the agent's calls run beside its
// held long-poll, which it asks ecp to hold the whole DesiredWait, all on
// one HTTP/2 connection.
func TestHTTP2OneConnection(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.StoreWrites()
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) {
		o.CollectInterval, o.DesiredWait, o.ECPHTTP2 = 500*time.Millisecond, 30*time.Second, true
	})
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != cli.ExitOK {
		t.Fatalf("register: %s", e)
	}
	polls := func() (n int) {
		for _, c := range ecp.Calls() {
			if c.Path == agentproto.PathDesired {
				if c.Hold != 30*time.Second {
					t.Errorf("a poll asked ecp to hold it %s, want DesiredWait (30s)", c.Hold)
				}
				n++
			}
		}
		return n
	}
	// A poll is held (ecp got a request it has not answered).
	eventually(t, 5*time.Second, "a report answered and a poll held", func() bool {
		return len(ecp.Reports()) > 0 && ecp.Requests() > len(ecp.Calls())
	})
	conns, answered, writes := ecp.Connections(), polls(), ecp.Writes()
	eventually(t, 5*time.Second, "three pushes", func() bool { return ecp.Writes() >= writes+3 })
	if n := ecp.Connections(); n != conns {
		t.Fatalf("%d connections opened, want the calls on the one held", n-conns)
	}
	if n := polls(); n != answered {
		t.Fatalf("%d polls answered while the agent pushed, want the poll held beside the pushes", n-answered)
	}
	for _, c := range ecp.Calls() {
		if c.Path != agentproto.PathRegister && c.Proto != "HTTP/2.0" {
			t.Fatalf("%s came over %s, want HTTP/2", c.Path, c.Proto)
		}
	}
}

// TestCrowdedECPNoPollBeforeNextReport: when ecp answers at once because
// it holds too many connections (agentproto.HeaderHold), the agent waits
// for its next tick's sends instead of polling in a loop. Its held report
// answered so is the interval's only call; against an ecp that does not
// hold reports, it polls once after each report.
func TestCrowdedECPNoPollBeforeNextReport(t *testing.T) {
	t.Run("held report", func(t *testing.T) {
		ecp, calls, reports := crowdedAgent(t, false)
		// Until its first report after the crowding, the agent follows the
		// schedule it had: a tick with no report due (the first interval
		// after registering) leaves a poll to send, answered at once, which
		// tells the agent ecp is crowded. From its first crowded report on,
		// that report's answer covers each interval.
		polls, reported := 0, false
		for _, c := range calls {
			switch {
			case c.Path == agentproto.PathReport:
				reported = true
			case c.Path != agentproto.PathDesired:
			case reported:
				t.Fatalf("poll at %s after a crowded held report, want none: the held report's answer covers the interval; calls:\n%s",
					c.Start.Format("15:04:05.000"), describeCalls(calls))
			default:
				if polls++; polls > 1 {
					t.Fatalf("%d polls before the first crowded report, want at most one: the first is answered at once; calls:\n%s",
						polls, describeCalls(calls))
				}
			}
		}
		if n := len(calls); n > reports+2 {
			t.Errorf("%d calls for %d reports, want one a tick", n, reports)
		}
		if ecp.CallsTo(agentproto.PathReport) == 0 {
			t.Fatal("no report answered")
		}
	})
	for name, mods := range map[string][]func(*daemon.Options){
		"ecp without held reports": nil,
		// Polls beside the sends, each held 2 s, so that one starts
		// after the crowding.
		"HTTP/2": {func(o *daemon.Options) { o.ECPHTTP2, o.DesiredWait = true, 2*time.Second }},
	} {
		t.Run(name, func(t *testing.T) { crowdedPollsFollowReports(t, mods...) })
	}
}

// crowdedPollsFollowReports: an agent that long-polls beside unheld
// reports (an ecp older than held reports, or HTTP/2) polls once after each
// report while ecp is crowded.
func crowdedPollsFollowReports(t *testing.T, mods ...func(*daemon.Options)) {
	_, calls, _ := crowdedAgent(t, true, mods...)
	var polls []fakeecp.Call
	for _, c := range calls {
		if c.Path == agentproto.PathDesired {
			polls = append(polls, c)
		}
	}
	if len(polls) < 2 {
		t.Fatalf("%d polls over four reports, want one after each report", len(polls))
	}
	if len(polls) > len(calls)/2+1 {
		t.Errorf("%d polls among %d calls: the agent re-polls without waiting for its report", len(polls), len(calls))
	}
	for i := 1; i < len(polls); i++ {
		if prev := polls[i-1]; prev.End.Sub(prev.Start) > prev.Hold/2 {
			continue // held, not answered at once: sent before the crowding
		}
		reported := false
		for _, c := range calls {
			if c.Path == agentproto.PathReport && c.Start.After(polls[i-1].End) && c.End.Before(polls[i].Start) {
				reported = true
			}
		}
		if !reported {
			t.Errorf("poll at %s followed the crowded answer at %s with no report between", polls[i].Start.Format("15:04:05.000"), polls[i-1].End.Format("15:04:05.000"))
		}
	}
}

// crowdedAgent runs a registered agent reporting every second until ecp
// turns crowded, then returns the calls of the next four reports and how
// many reports they hold; oldECP makes the fake answer reports unheld.
func crowdedAgent(t *testing.T, oldECP bool, mods ...func(*daemon.Options)) (*fakeecp.Server, []fakeecp.Call, int) {
	const interval = time.Second // the fake's report interval: a report each tick
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	if oldECP {
		ecp.IgnoreReportHold()
	}
	ecp.IssueToken("tok")
	mods = append([]func(*daemon.Options){func(o *daemon.Options) { o.CollectInterval, o.DesiredWait = interval, 30*time.Second }}, mods...)
	h := startDaemon(t, t.TempDir(), mods...)
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != cli.ExitOK {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 5*time.Second, "a report and a poll", func() bool { return len(ecp.Reports()) > 0 && ecp.Requests() > 1 })
	crowdedAt := time.Now()
	ecp.SetCrowded(true)
	reports := len(ecp.Reports())
	eventually(t, 20*interval, "four more reports", func() bool { return len(ecp.Reports()) >= reports+4 })
	// The fake records a call when it ends, so a poll sent before the
	// crowding may end after it: only calls sent after it count.
	var calls []fakeecp.Call
	n := 0
	for _, c := range ecp.Calls() {
		if c.Start.Before(crowdedAt) {
			continue
		}
		calls = append(calls, c)
		if c.Path == agentproto.PathReport {
			n++
		}
	}
	return ecp, calls, n
}

// describeCalls lists calls a line each, for a failure to show the order.
func describeCalls(calls []fakeecp.Call) string {
	var b strings.Builder
	for _, c := range calls {
		fmt.Fprintf(&b, "  %s %s–%s held %s: %d\n", c.Path, c.Start.Format("15:04:05.000"), c.End.Format("15:04:05.000"), c.Hold, c.Status)
	}
	return b.String()
}
