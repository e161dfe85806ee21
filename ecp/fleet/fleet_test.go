package fleet

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func TestRegistrationTokens(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1")

	tests := []struct {
		name   string
		token  func(t *testing.T, id string) string
		before func(t *testing.T, id string, token string)
		status int
		code   string
	}{
		{name: "valid token registers", status: http.StatusOK},
		{name: "used token is invalid", status: http.StatusUnauthorized, code: agentproto.CodeTokenInvalid,
			before: func(t *testing.T, _ string, token string) {
				mustRegister(t, newAgent(f.url), secretOf(token))
			}},
		{name: "expired token", status: http.StatusUnauthorized, code: agentproto.CodeTokenExpired,
			before: func(*testing.T, string, string) { clk.Add(2 * time.Hour) }},
		{name: "unknown token", status: http.StatusUnauthorized, code: agentproto.CodeTokenInvalid,
			token: func(*testing.T, string) string { return "ecpreg_nosuchtoken" }},
		{name: "a reissue invalidates the earlier token", status: http.StatusUnauthorized, code: agentproto.CodeTokenInvalid,
			before: func(t *testing.T, id string, _ string) { issue(t, f, id, time.Hour) }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "tok" + string(rune('a'+i))
			putSpec(t, cli, id, 10)
			token := issue(t, f, id, time.Hour).Reveal()
			if tc.token != nil {
				token = tc.token(t, id)
			}
			if tc.before != nil {
				tc.before(t, id, token)
			}
			r := newAgent(f.url).register(t, secretOf(token))
			wantCode(t, r, tc.status, tc.code)
		})
	}

	t.Run("token stored only as a hash", func(t *testing.T) {
		putSpec(t, cli, "hashed", 10)
		token := issue(t, f, "hashed", time.Hour)
		resp, err := cli.Get(t.Context(), "/ecp/", clientv3WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Key)+string(kv.Value), token.Reveal()) {
				t.Fatalf("token stored in clear under %s", kv.Key)
			}
		}
	})

	t.Run("tokens leave no lease behind", func(t *testing.T) {
		leases := func() int {
			resp, err := cli.Leases(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return len(resp.Leases)
		}
		putSpec(t, cli, "leases", 10)
		before := leases()
		issue(t, f, "leases", time.Hour)
		token := issue(t, f, "leases", time.Hour) // replaces the first
		if got := leases(); got != before+1 {
			t.Fatalf("%d leases after two issues, want %d", got, before+1)
		}
		mustRegister(t, newAgent(f.url), token)
		if got := leases(); got != before {
			t.Fatalf("%d leases after registering, want %d", got, before)
		}
	})

	t.Run("unknown cluster", func(t *testing.T) {
		if _, _, err := f.IssueRegistration(t.Context(), "nosuch", time.Hour); err == nil {
			t.Fatal("issued a token for a cluster without a spec")
		}
	})
}

func TestRegistrationRace(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "race", 10)
	token := issue(t, f, "race", time.Hour)

	const n = 8
	results := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = newAgent(f.url).register(t, token) })
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.status == http.StatusOK:
			won++
		case r.status == http.StatusUnauthorized && r.code == agentproto.CodeTokenInvalid:
		default:
			t.Fatalf("unexpected reply %d %s: %s", r.status, r.code, r.body)
		}
	}
	if won != 1 {
		t.Fatalf("%d agents registered with one token, want exactly 1", won)
	}
}

func TestCredentialRevocation(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")

	tests := []struct {
		name   string
		revoke func(t *testing.T, id string, a *agent)
		state  string
	}{
		{name: "re-register", state: StateCreated, revoke: func(t *testing.T, id string, _ *agent) { issue(t, f, id, time.Hour) }},
		{name: "forget", state: StateCreated, revoke: func(t *testing.T, id string, _ *agent) {
			if err := f.Forget(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "unregister", state: StateCreated, revoke: func(t *testing.T, _ string, a *agent) {
			if r := a.unregister(t); r.status != http.StatusNoContent {
				t.Fatalf("unregister: %d %s", r.status, r.body)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "rev-" + strings.ReplaceAll(tc.name, " ", "")
			putSpec(t, cli, id, 10)
			a := newAgent(f.url)
			reg := mustRegister(t, a, issue(t, f, id, time.Hour))
			decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))

			// A long-poll held across the revocation is told to unregister.
			polled := make(chan reply, 1)
			go func() { polled <- a.desired(t, reg.Desired.Revision, "30s") }()
			f.waitFor(t, "long-poll waiting", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
			tc.revoke(t, id, a)
			d := decodeBody[agentproto.DesiredState](t, <-polled)
			if !d.Unregister || d.Revision <= reg.Desired.Revision {
				t.Fatalf("desired after revocation = %+v, want unregister at a newer revision", d)
			}

			wantCode(t, a.report(t, healthy()), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)
			wantCode(t, a.desired(t, 0, "1ms"), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)
			if st := f.status(t, id); st.State != tc.state {
				t.Fatalf("state %s, want %s", st.State, tc.state)
			}
		})
	}
}

func TestReportStates(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1")
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	reg := mustRegister(t, a, issue(t, f, "c1", time.Hour))
	if reg.ClusterID != "c1" || reg.Project != "p1" || reg.ReportIntervalSeconds != 15 ||
		reg.Desired.MaxConnections != 10 || !reg.Desired.LogCollection.Enabled {
		t.Fatalf("register reply %+v", reg)
	}
	if st := f.status(t, "c1"); st.State != StateRegistering || reasonCode(st.StateReason) != ReasonAwaitingFirstReport {
		t.Fatalf("after register: %+v", st)
	}

	unreachable := agentproto.EMQXStatus{Problem: &agentproto.Problem{Code: agentproto.ProblemEMQXAuthFailed, Message: "401 from /api/v5/nodes"}}
	quota := healthy()
	quota.Problem = &agentproto.Problem{Code: agentproto.ProblemQuotaApplyFailed, Message: "licence refused"}
	tests := []struct {
		name  string
		emqx  agentproto.EMQXStatus
		state string
		code  string
	}{
		{"reachable is running", healthy(), StateRunning, ""},
		{"unreachable is abnormal with the agent's code", unreachable, StateAbnormal, agentproto.ProblemEMQXAuthFailed},
		{"unreachable without a code", agentproto.EMQXStatus{}, StateAbnormal, agentproto.ProblemEMQXUnreachable},
		{"a problem while reachable is abnormal", quota, StateAbnormal, agentproto.ProblemQuotaApplyFailed},
		{"healthy again", healthy(), StateRunning, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk.Add(testInterval)
			rr := decodeBody[agentproto.ReportResponse](t, a.report(t, tc.emqx))
			if rr.ReportIntervalSeconds != 15 || rr.Desired.MaxConnections != 10 {
				t.Fatalf("report reply %+v", rr)
			}
			st := f.status(t, "c1")
			if st.State != tc.state || reasonCode(st.StateReason) != tc.code {
				t.Fatalf("got %s/%s, want %s/%s", st.State, reasonCode(st.StateReason), tc.state, tc.code)
			}
			if st.ManagedSince.IsZero() || st.LastReportAt != clk.Now() {
				t.Fatalf("managedSince %v lastReportAt %v", st.ManagedSince, st.LastReportAt)
			}
		})
	}

	t.Run("steady reports do not write", func(t *testing.T) {
		st := f.status(t, "c1")
		if st.Version != "5.8.1" || st.Nodes != 2 || st.NodesRunning != 1 || st.Connections != 7 || st.LiveConnections != 5 ||
			st.MaxConnectionsReported != 10 || st.Hostname != "broker-1" || st.AgentVersion != "1.0.0" || st.StateReason != nil {
			t.Fatalf("status %+v", st)
		}
		before := f.writes("report")
		for i := range 20 {
			clk.Add(testInterval)
			em := healthy()
			em.Connections = i
			// The agent derives startedAt from uptimes: it jitters.
			em.StartedAt = em.StartedAt.Add(time.Duration(i%3) * time.Second)
			decodeBody[agentproto.ReportResponse](t, a.report(t, em))
		}
		if got := f.writes("report") - before; got != 0 {
			t.Fatalf("%v etcd writes for 20 unchanged reports, want 0", got)
		}
		if st := f.status(t, "c1"); st.Connections != 19 {
			t.Fatalf("connections %d, want the latest report's 19", st.Connections)
		}
	})

	t.Run("invalid report", func(t *testing.T) {
		em := healthy()
		em.Problem = &agentproto.Problem{Code: "not a code!"}
		wantCode(t, a.report(t, em), http.StatusBadRequest, "Invalid")
	})

	t.Run("metrics lint", func(t *testing.T) {
		problems, err := testutil.GatherAndLint(f.reg)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) > 0 {
			t.Fatalf("metric lint: %+v", problems)
		}
		if n := testutil.CollectAndCount(f.reg, "ecp_cluster_state"); n != 1 {
			t.Fatalf("%d ecp_cluster_state series, want 1", n)
		}
	})
}

func TestSilenceAndRecovery(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1")
	f.waitLeader(t)
	putSpec(t, cli, "c1", 10)
	putSpec(t, cli, "quiet", 10)
	a := newAgent(f.url)
	mustRegister(t, a, issue(t, f, "c1", time.Hour))
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	mustRegister(t, newAgent(f.url), issue(t, f, "quiet", time.Hour)) // never reports

	clk.Add(3*testInterval - time.Second)
	f.sweep(t.Context())
	if st := f.status(t, "c1"); st.State != StateRunning {
		t.Fatalf("abnormal before 3 intervals: %+v", st)
	}
	clk.Add(2 * time.Second)
	f.sweep(t.Context())
	st := f.status(t, "c1")
	if st.State != StateAbnormal || reasonCode(st.StateReason) != ReasonAgentSilent || !strings.Contains(st.StateReason.Message, "3 report intervals") {
		t.Fatalf("after silence: %+v", st.StateReason)
	}
	if st := f.status(t, "quiet"); st.State != StateAbnormal || reasonCode(st.StateReason) != ReasonAgentSilent {
		t.Fatalf("agent that never reported: %+v", st)
	}
	writes := f.writes("silent")
	f.sweep(t.Context())
	if f.writes("silent") != writes {
		t.Fatal("sweeper wrote again for clusters already marked silent")
	}

	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	if st := f.status(t, "c1"); st.State != StateRunning || st.StateReason != nil {
		t.Fatalf("after a report: %+v", st)
	}
}

// TestSilenceCountsFromTheLastReport: an agent that kept reporting is
// silent three intervals after its last report, not its first, however
// often the sweeper looked in between (the deadline heap keeps an entry
// where its first deadline put it; the sweeper moves it on).
func TestSilenceCountsFromTheLastReport(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1")
	f.waitLeader(t)
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	mustRegister(t, a, issue(t, f, "c1", time.Hour))
	for range 3 {
		decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
		clk.Add(testInterval)
		f.sweep(t.Context())
	}
	// The first report's deadline comes now, the last one's in 30 s.
	for _, step := range []time.Duration{testInterval, testInterval - 2*time.Second} {
		clk.Add(step)
		f.sweep(t.Context())
		if st := f.status(t, "c1"); st.State != StateRunning {
			t.Fatalf("abnormal before 3 intervals after the last report: %+v", st.StateReason)
		}
	}
	clk.Add(2 * time.Second)
	f.sweep(t.Context())
	if st := f.status(t, "c1"); st.State != StateAbnormal || reasonCode(st.StateReason) != ReasonAgentSilent {
		t.Fatalf("3 intervals after the last report: %+v", st)
	}
}

// restartAfter runs ecp with a reporting agent on c1, stops it, and starts
// it again after outage; the agent then talks to the new ecp.
func restartAfter(t *testing.T, outage time.Duration) (*testFleet, *agent, *clock) {
	t.Helper()
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	clk := newClock()
	f1 := startFleet(t, cli, clk, "first")
	f1.waitLeader(t)
	putSpec(t, cli, "c1", 10)
	a := newAgent(f1.url)
	mustRegister(t, a, issue(t, f1, "c1", time.Hour))
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	f1.stop()
	clk.Add(outage)
	f2 := startFleet(t, etcdtest.ClientOf(t, srv), clk, "second")
	a.base = f2.url
	f2.waitLeader(t)
	return f2, a, clk
}

func TestRestartGrace(t *testing.T) {
	// ecp was down for longer than the silence threshold.
	f2, _, clk := restartAfter(t, 10*testInterval)
	clk.Add(3*testInterval - time.Second)
	f2.sweep(t.Context())
	if st := f2.status(t, "c1"); st.State != StateRunning {
		t.Fatalf("marked %s/%s within the restart grace", st.State, reasonCode(st.StateReason))
	}
	// The grace also covers the reconnect backoff the agent may be in
	// after the outage (TestOutageGraceCoversReconnectBackoff); past it,
	// a silent agent is marked.
	clk.Add(agentproto.ReconnectBackoffMax + 2*time.Second)
	f2.sweep(t.Context())
	f2.waitState(t, "c1", StateAbnormal, ReasonAgentSilent)
}

// TestOutageGraceCoversReconnectBackoff: while ecp was down its agents
// backed off (doubling, up to agentproto.ReconnectBackoffMax), so when it
// returns an agent may be that long from its next attempt. The restart
// grace waits for it instead of marking every cluster AgentSilent (and
// alerting on each) a few intervals after a long outage.
func TestOutageGraceCoversReconnectBackoff(t *testing.T) {
	// ecp down 10 minutes: the agent's backoff reached its maximum.
	f2, a, clk := restartAfter(t, 10*time.Minute)
	clk.Add(agentproto.SilentIntervals*testInterval + agentproto.ReconnectBackoffMax - time.Second)
	f2.sweep(t.Context())
	if st := f2.status(t, "c1"); st.State != StateRunning {
		t.Fatalf("marked %s/%s while the agent could still be in its reconnect backoff", st.State, reasonCode(st.StateReason))
	}
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	clk.Add(2 * time.Second)
	f2.sweep(t.Context())
	if st := f2.status(t, "c1"); st.State != StateRunning || f2.writes("silent") != 0 {
		t.Fatalf("after the agent came back: %+v, %v silent writes", st, f2.writes("silent"))
	}
}

// reportingThroughFollower starts a leading replica r1 and a follower r2,
// registers an agent for c1 through the leader and has it report through
// the follower, and ends the leader's grace.
func reportingThroughFollower(t *testing.T) (leader, follower *testFleet, a *agent, clk *clock) {
	t.Helper()
	srv := etcdtest.Start(t)
	clk = newClock()
	leader = startFleet(t, etcdtest.ClientOf(t, srv), clk, "r1")
	leader.waitLeader(t)
	follower = startFleet(t, etcdtest.ClientOf(t, srv), clk, "r2")
	putSpec(t, etcdtest.ClientOf(t, srv), "c1", 10)
	a = newAgent(leader.url)
	mustRegister(t, a, issue(t, leader, "c1", time.Hour))
	a.base = follower.url
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	leader.waitState(t, "c1", StateRunning, "")
	follower.waitFor(t, "peer presence", func() bool {
		follower.mu.Lock()
		defer follower.mu.Unlock()
		return len(follower.peers) == 1
	})
	clk.Add(3*testInterval + time.Second) // the leader's grace is over
	return leader, follower, a, clk
}

func TestTwoReplicas(t *testing.T) {
	// Reports land on the follower only; its digests keep the leader from
	// declaring the agent silent.
	leader, follower, a, clk := reportingThroughFollower(t)
	for range 4 {
		clk.Add(testInterval)
		decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
		follower.publishDigest(t.Context())
		want := clk.Now()
		leader.waitFor(t, "digest", func() bool { return leader.status(t, "c1").LastReportAt.Equal(want) })
		leader.sweep(t.Context())
		follower.sweep(t.Context())
	}
	if st := leader.status(t, "c1"); st.State != StateRunning || st.Connections != 7 {
		t.Fatalf("leader sees %+v", st)
	}

	clk.Add(3*testInterval + time.Second)
	// The follower heard nothing, and says so in its next digest (every
	// interval/2); only then is the agent's silence certain.
	leader.waitTold(t, follower, "r2", clk.Now())
	follower.sweep(t.Context())
	if follower.writes("silent") != 0 {
		t.Fatal("the follower's sweeper acted")
	}
	leader.sweep(t.Context())
	if leader.writes("silent") != 1 {
		t.Fatalf("leader wrote %v silent marks, want 1", leader.writes("silent"))
	}
	want := leader.waitState(t, "c1", StateAbnormal, ReasonAgentSilent)
	got := follower.waitState(t, "c1", StateAbnormal, ReasonAgentSilent)
	if *got.StateReason != *want.StateReason {
		t.Fatalf("replicas disagree: %+v vs %+v", got.StateReason, want.StateReason)
	}

	// Leadership moves when the leader stops; the new one grants grace.
	leader.stop()
	follower.waitLeader(t)
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	follower.waitState(t, "c1", StateRunning, "")
}

// TestSweepDoesNotCountStoreOutageAgainstClusters: the agent reports
// through the follower, whose digests cannot reach etcd for longer than
// the silence window (etcd lost its leader or quorum). The leader must not
// mark the agent silent before the follower has told what it heard; once
// it has, the agent is running all along.
func TestSweepDoesNotCountStoreOutageAgainstClusters(t *testing.T) {
	leader, follower, a, clk := reportingThroughFollower(t)
	decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	follower.publishDigest(t.Context())
	want := clk.Now()
	leader.waitFor(t, "digest", func() bool { return leader.status(t, "c1").LastReportAt.Equal(want) })

	// The store is out: the agent keeps reporting to the follower, which
	// cannot publish, past the leader's silence deadline.
	for range 4 {
		clk.Add(testInterval)
		decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	}
	clk.Add(time.Second)
	leader.sweep(t.Context())
	if n := leader.writes("silent"); n != 0 {
		t.Fatalf("the leader marked %v agents silent while a replica could not tell what it heard; status %+v", n, leader.status(t, "c1"))
	}
	// The store is back: the follower's digest tells of the reports.
	follower.publishDigest(t.Context())
	want = clk.Now().Add(-time.Second)
	leader.waitFor(t, "digest after the outage", func() bool { return leader.status(t, "c1").LastReportAt.Equal(want) })
	leader.sweep(t.Context())
	if st := leader.status(t, "c1"); st.State != StateRunning || leader.writes("silent") != 0 {
		t.Fatalf("after the outage the leader sees %+v and wrote %v silent marks", st, leader.writes("silent"))
	}
}

// TestSweepDoesNotWaitForAStuckReplica: a replica that keeps its session
// but publishes no digest while etcd takes this replica's digests for a
// whole silence window is stuck; the sweeper stops waiting for it, or no
// silent agent would ever be marked.
func TestSweepDoesNotWaitForAStuckReplica(t *testing.T) {
	leader, _, _, clk := reportingThroughFollower(t)
	// The follower publishes nothing from here on; the agent is silent.
	leader.publishDigest(t.Context())
	leader.sweep(t.Context())
	if n := leader.writes("silent"); n != 0 {
		t.Fatalf("the leader marked %v agents silent before the follower had a window to publish", n)
	}
	clk.Add(3*testInterval + time.Second)
	leader.publishDigest(t.Context())
	leader.sweep(t.Context())
	leader.waitState(t, "c1", StateAbnormal, ReasonAgentSilent)
}

func TestDesiredLongPoll(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	reg := mustRegister(t, a, issue(t, f, "c1", time.Hour))

	t.Run("older revision answers at once", func(t *testing.T) {
		d := decodeBody[agentproto.DesiredState](t, a.desired(t, 0, "30s"))
		if !reflect.DeepEqual(d, reg.Desired) {
			t.Fatalf("got %+v, want %+v", d, reg.Desired)
		}
	})
	t.Run("timeout is 204", func(t *testing.T) {
		if r := a.desired(t, reg.Desired.Revision, "20ms"); r.status != http.StatusNoContent {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("spec change wakes the poll within 2s", func(t *testing.T) {
		polled := make(chan reply, 1)
		fast := &agent{base: a.base, cred: a.cred, hc: &http.Client{Timeout: 2 * time.Second}}
		go func() { polled <- fast.desired(t, reg.Desired.Revision, "30s") }()
		f.waitFor(t, "long-poll waiting", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
		rev := putSpec(t, cli, "c1", 25)
		d := decodeBody[agentproto.DesiredState](t, <-polled)
		if d.MaxConnections != 25 || d.Revision != rev || d.Unregister {
			t.Fatalf("got %+v, want max 25 at revision %d", d, rev)
		}
	})
	t.Run("deleted spec says unregister", func(t *testing.T) {
		resp, err := cli.Delete(t.Context(), "/ecp/clusters/c1")
		if err != nil {
			t.Fatal(err)
		}
		f.waitFor(t, "spec deletion", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return !f.entries["c1"].hasSpec
		})
		d := decodeBody[agentproto.DesiredState](t, a.desired(t, resp.Header.Revision-1, "30s"))
		if !d.Unregister || d.Revision != resp.Header.Revision {
			t.Fatalf("got %+v", d)
		}
		rr := decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
		if !rr.Desired.Unregister {
			t.Fatalf("report reply %+v, want unregister", rr)
		}
	})
	t.Run("bad query", func(t *testing.T) {
		wantCode(t, a.desired(t, 0, "soon"), http.StatusBadRequest, "Invalid")
	})
}

func TestLoadShedding(t *testing.T) {
	cli := etcdtest.Client(t)
	reg := newClock()
	f, err := New(Options{Now: reg.Now, MaxWaiters: 1, MaxInFlight: 1}, cli, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.markReady()
	release := make(chan struct{})
	entered := make(chan struct{})
	h := f.limited(func(w http.ResponseWriter, _ *http.Request) error {
		close(entered)
		<-release
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h(httptestRecorder(), httptestRequest())
	}()
	<-entered
	rec := httptestRecorder()
	f.adapter.Handle(h).ServeHTTP(rec, httptestRequest())
	close(release)
	<-done
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get(agentproto.HeaderRetryAfter) != "5" ||
		!strings.Contains(rec.Body.String(), agentproto.CodeRateLimited) {
		t.Fatalf("got %d %q %s", rec.Code, rec.Header().Get(agentproto.HeaderRetryAfter), rec.Body)
	}
}

// TestBindingNotYetWatched: an agent registered through one replica calls
// another whose watch has not delivered the binding (here: no watch at
// all); it must be served, never refused or told to unregister.
func TestBindingNotYetWatched(t *testing.T) {
	srv := etcdtest.Start(t)
	clk := newClock()
	r1 := startFleet(t, etcdtest.ClientOf(t, srv), clk, "r1")
	cli := etcdtest.ClientOf(t, srv)

	stale, err := New(Options{ReplicaID: "stale", Now: clk.Now}, etcdtest.ClientOf(t, srv), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stale.load(t.Context()); err != nil {
		t.Fatal(err)
	}
	stale.markReady()
	putSpec(t, cli, "c1", 10) // after the stale replica's load: it has not seen the spec either
	r := mux.NewRouter()
	stale.Register(r)
	hs := httptest.NewServer(r)
	defer hs.Close()

	a := newAgent(r1.url)
	reg := mustRegister(t, a, issue(t, r1, "c1", time.Hour))
	a.base = hs.URL
	rr := decodeBody[agentproto.ReportResponse](t, a.report(t, healthy()))
	if rr.Desired.Unregister || rr.Desired.MaxConnections != 10 || rr.Desired.Revision != reg.Desired.Revision {
		t.Fatalf("desired from the stale replica %+v, want %+v", rr.Desired, reg.Desired)
	}
	if st, err := stale.Status(t.Context(), "c1"); err != nil || st.State != StateRunning {
		t.Fatalf("stale replica status %+v, %v", st, err)
	}
	r1.waitState(t, "c1", StateRunning, "")
}

func TestMadeUpCredentials(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	tests := []struct {
		name, cred string
		status     int
		code       string
	}{
		{"no credential", "", http.StatusUnauthorized, "Unauthorized"},
		{"not a credential", "hello", http.StatusUnauthorized, agentproto.CodeCredentialRevoked},
		{"unknown cluster", "ecpagent_nosuch.AAAA", http.StatusUnauthorized, agentproto.CodeCredentialRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(f.url)
			a.cred = tc.cred
			wantCode(t, a.report(t, healthy()), tc.status, tc.code)
			wantCode(t, a.desired(t, 0, "1ms"), tc.status, tc.code)
		})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.entries) != 0 {
		t.Fatalf("made-up credentials left %d entries in memory", len(f.entries))
	}
}

func TestLongPollEndsWithRun(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	reg := mustRegister(t, a, issue(t, f, "c1", time.Hour))
	polled := make(chan reply, 1)
	go func() { polled <- a.desired(t, reg.Desired.Revision, "60s") }()
	f.waitFor(t, "long-poll waiting", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
	f.stopRun()
	if r := <-polled; r.status != http.StatusNoContent {
		t.Fatalf("held long-poll answered %d when the fleet stopped, want 204", r.status)
	}
}
