package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// heldReply is what an agent sees of a report's reply.
type heldReply struct {
	status int
	header http.Header
	out    agentproto.ReportResponse
	reused bool // it came on a kept-alive connection
	err    error
}

// sendReport sends a report on hc with query ("after=..&timeout=.." asks
// for the hold; "" is a report as agents sent before). Safe from any
// goroutine: it reports failures in err rather than failing the test.
func sendReport(ctx context.Context, hc *http.Client, base, cred, query string, em agentproto.EMQXStatus) heldReply {
	b, err := json.Marshal(agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "1.0.0", EMQX: em})
	if err != nil {
		return heldReply{err: err}
	}
	var reused bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	url := base + agentproto.PathReport
	if query != "" {
		url += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return heldReply{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := hc.Do(req)
	if err != nil {
		return heldReply{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := heldReply{status: resp.StatusCode, header: resp.Header, reused: reused, err: err}
	if err == nil && resp.StatusCode == http.StatusOK {
		r.err = json.Unmarshal(body, &r.out)
	}
	return r
}

func holdQuery(after int64, timeout string) string {
	return fmt.Sprintf("%s=%d&%s=%s", agentproto.QueryAfter, after, agentproto.QueryTimeout, timeout)
}

// TestHeldReportRecordedOnArrival: a report that asks to be held is
// recorded at once (state, last report, connections) while its reply waits
// for the desired state to change, and the change wakes it with the new
// state, marked as held, on a connection the agent then reuses.
func TestHeldReportRecordedOnArrival(t *testing.T) {
	clk := newClock()
	cli, f, a, rev := heldReportAgent(t, clk)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()

	done := make(chan heldReply, 1)
	go func() { done <- sendReport(t.Context(), hc, f.url, a.cred, holdQuery(rev, "30s"), healthy()) }()
	f.waitFor(t, "the report held", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
	st := f.status(t, "c1")
	if st.State != StateRunning || !st.LastReportAt.Equal(clk.Now()) || st.Connections != 7 {
		t.Fatalf("while the report is held: state %s, last report %s, connections %d; want it recorded on arrival (running, %s, 7)",
			st.State, st.LastReportAt, st.Connections, clk.Now())
	}
	select {
	case r := <-done:
		t.Fatalf("held report answered %d before any change", r.status)
	default:
	}
	newRev := putSpec(t, cli, "c1", 25)
	r := <-done
	if r.err != nil || r.status != http.StatusOK || r.header.Get(agentproto.HeaderReportHeld) != agentproto.ReportHeld {
		t.Fatalf("held report: %d %v %v; want 200 with %s", r.status, r.header, r.err, agentproto.HeaderReportHeld)
	}
	if r.out.Desired.Revision != newRev || r.out.Desired.MaxConnections != 25 || r.out.ReportIntervalSeconds != 15 {
		t.Fatalf("held report answered %+v; want max 25 at revision %d, interval 15", r.out, newRev)
	}
	if testutil.ToFloat64(f.metrics.waiters) != 0 {
		t.Fatal("answered report still counted as a held poll")
	}
	// The taken-over connection serves the next request.
	if r := sendReport(t.Context(), hc, f.url, a.cred, "", healthy()); r.status != http.StatusOK || !r.reused {
		t.Fatalf("next report: %d, reused %v; want 200 on the kept-alive connection", r.status, r.reused)
	}
}

// TestHeldReportTimeout: at its timeout a held report is answered 200 with
// the desired state in force (never 204), and one whose agent is behind is
// answered at once; both carry the hold header, with the recording time.
func TestHeldReportTimeout(t *testing.T) {
	_, f, a, rev := heldReportAgent(t, newClock())
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()

	for _, tc := range []struct {
		name  string
		after int64
	}{{"timeout", rev}, {"behind", 0}} {
		r := sendReport(t.Context(), hc, f.url, a.cred, holdQuery(tc.after, "20ms"), healthy())
		if r.err != nil || r.status != http.StatusOK || r.header.Get(agentproto.HeaderReportHeld) != agentproto.ReportHeld ||
			r.out.Desired.Revision != rev || r.out.Desired.MaxConnections != 10 || r.header.Get(agentproto.HeaderServerTiming) == "" {
			t.Fatalf("%s: %d %v %+v %v; want 200 with the hold header, Server-Timing and revision %d", tc.name, r.status, r.header, r.out, r.err, rev)
		}
	}
}

// TestReportWithoutHoldAnswersAtOnce: an agent that asks for no hold (one
// older than held reports) gets today's immediate reply, without the hold
// header, even when nothing changed.
func TestReportWithoutHoldAnswersAtOnce(t *testing.T) {
	_, _, a, rev := heldReportAgent(t, newClock())
	r := a.report(t, healthy())
	if got := decodeBody[agentproto.ReportResponse](t, r); got.Desired.Revision != rev || r.header.Get(agentproto.HeaderReportHeld) != "" {
		t.Fatalf("report answered %+v with hold header %q; want revision %d and no header", got, r.header.Get(agentproto.HeaderReportHeld), rev)
	}
}

// TestHeldReportRefusalsNotHeld: a report that cannot be taken is refused
// at once, hold or not; one that finds every long-poll place taken is
// recorded and answered at once without the hold header, so the agent
// falls back to a desired-state poll (which meets the 429).
func TestHeldReportRefusalsNotHeld(t *testing.T) {
	clk := newClock()
	cli, f, a, rev := heldReportAgent(t, clk, func(o *Options) { o.MaxWaiters = 1 })
	hc := &http.Client{Timeout: 10 * time.Second}

	if r := sendReport(t.Context(), hc, f.url, a.cred, agentproto.QueryTimeout+"=soon", healthy()); r.status != http.StatusBadRequest {
		t.Fatalf("bad timeout: %d, want 400 at once", r.status)
	}
	if r := sendReport(t.Context(), hc, f.url, "not-a-credential", holdQuery(rev, "30s"), healthy()); r.status != http.StatusUnauthorized {
		t.Fatalf("unknown credential: %d, want 401 at once", r.status)
	}
	bad := healthy()
	bad.Problem = &agentproto.Problem{Code: "no spaces allowed"}
	if r := sendReport(t.Context(), hc, f.url, a.cred, holdQuery(rev, "30s"), bad); r.status != http.StatusBadRequest {
		t.Fatalf("invalid report: %d, want 400 at once", r.status)
	}

	poll := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.url+agentproto.PathDesired+"?"+holdQuery(rev, "30s"), nil)
		req.Header.Set("Authorization", "Bearer "+a.cred)
		resp, err := hc.Do(req)
		if err != nil {
			poll <- reply{}
			return
		}
		resp.Body.Close()
		poll <- reply{status: resp.StatusCode}
	}()
	f.waitFor(t, "the one long-poll place taken", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
	clk.Add(time.Second)
	r := sendReport(t.Context(), hc, f.url, a.cred, holdQuery(rev, "30s"), healthy())
	if r.status != http.StatusOK || r.header.Get(agentproto.HeaderReportHeld) != "" || r.out.Desired.Revision != rev {
		t.Fatalf("report with every place taken: %d %v %+v; want 200 at once without the hold header", r.status, r.header, r.out)
	}
	if st := f.status(t, "c1"); !st.LastReportAt.Equal(clk.Now()) {
		t.Fatalf("last report %s, want the report recorded at %s", st.LastReportAt, clk.Now())
	}
	putSpec(t, cli, "c1", 11)
	if p := <-poll; p.status != http.StatusOK {
		t.Fatalf("held poll answered %d", p.status)
	}
}

// heldReportAgent starts a fleet on a fresh etcd with cluster c1 (10
// connections) and registers its agent; it returns the etcd client, the
// fleet, the agent and the desired revision the agent holds.
func heldReportAgent(t testing.TB, clk *clock, mods ...func(*Options)) (*clientv3.Client, *testFleet, *agent, int64) {
	t.Helper()
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, clk, "r1", mods...)
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	return cli, f, a, mustRegister(t, a, issue(t, f, "c1", time.Hour)).Desired.Revision
}
