package fleet

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func (a *agent) reportEvery(t *testing.T, seconds int, pinned bool) reply {
	t.Helper()
	return a.do(t, http.MethodPost, agentproto.PathReport, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "1.0.0",
		EMQX: healthy(), IntervalSeconds: seconds, IntervalPinned: pinned})
}

// TestJourneyAgentIntervalLiveness: under an ecp at 5 s, an agent whose
// operator pinned 15 s is not called silent after 3×5 s, only after 3×15 s;
// meanwhile its state says that ecp's alert rules cannot see it. An agent
// that follows ecp keeps ecp's 3×5 s.
func TestJourneyAgentIntervalLiveness(t *testing.T) {
	const ecpInterval = 5 * time.Second
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1", func(o *Options) { o.ReportInterval = ecpInterval })
	f.waitLeader(t)
	putSpec(t, cli, "pinned", 10)
	putSpec(t, cli, "follows", 10)
	pinned, follows := newAgent(f.url), newAgent(f.url)
	mustRegister(t, pinned, issue(t, f, "pinned", time.Hour))
	mustRegister(t, follows, issue(t, f, "follows", time.Hour))

	if got := decodeBody[agentproto.ReportResponse](t, pinned.reportEvery(t, 15, true)); got.ReportIntervalSeconds != 5 {
		t.Fatalf("report reply interval %d, want ecp's 5", got.ReportIntervalSeconds)
	}
	// An agent that follows ecp and still runs at ecp's old interval is
	// catching up, not flagged.
	decodeBody[agentproto.ReportResponse](t, follows.reportEvery(t, 15, false))
	if st := f.status(t, "follows"); st.State != StateRunning {
		t.Fatalf("agent following ecp, one reply behind: %+v", st)
	}
	decodeBody[agentproto.ReportResponse](t, follows.reportEvery(t, 5, false))
	st := f.waitState(t, "pinned", StateAbnormal, ReasonAgentIntervalTooLong)
	for _, want := range []string{"every 15s", "5s", "--collect.interval", "may never alert"} {
		if !strings.Contains(st.StateReason.Message, want) {
			t.Fatalf("reason message %q does not say %q", st.StateReason.Message, want)
		}
	}
	if st := f.status(t, "follows"); st.State != StateRunning {
		t.Fatalf("agent at ecp's interval: %+v", st)
	}

	clk.Add(3*ecpInterval + time.Second)
	f.sweep(t.Context())
	if st := f.status(t, "pinned"); reasonCode(st.StateReason) != ReasonAgentIntervalTooLong {
		t.Fatalf("agent at 15s called silent after 3×5s: %+v", st.StateReason)
	}
	if st := f.status(t, "follows"); reasonCode(st.StateReason) != ReasonAgentSilent {
		t.Fatalf("agent at ecp's 5s not silent after 3×5s: %+v", st)
	}

	clk.Add(3*15*time.Second - 3*ecpInterval - time.Second)
	f.sweep(t.Context())
	st = f.status(t, "pinned")
	if reasonCode(st.StateReason) != ReasonAgentSilent || !strings.Contains(st.StateReason.Message, "3 report intervals of 15s") {
		t.Fatalf("agent at 15s after 3×15s: %+v", st.StateReason)
	}

	// Unpinned again, it is running at ecp's interval.
	decodeBody[agentproto.ReportResponse](t, pinned.reportEvery(t, 5, false))
	if st := f.status(t, "pinned"); st.State != StateRunning || st.StateReason != nil {
		t.Fatalf("agent back at ecp's interval: %+v", st)
	}

	for _, bad := range []int{-1, 301} {
		wantCode(t, pinned.reportEvery(t, bad, true), http.StatusBadRequest, "Invalid")
	}
}
