package fleet

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestLifecycle walks one managed cluster through every state over HTTP,
// with a client speaking the agent protocol.
func TestLifecycle(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1")
	f.waitLeader(t)
	step := func(name string, want, code string) {
		t.Helper()
		st := f.status(t, "c1")
		if st.State != want || reasonCode(st.StateReason) != code {
			t.Fatalf("%s: state %s/%s, want %s/%s", name, st.State, reasonCode(st.StateReason), want, code)
		}
		if (st.State == StateRunning) != (st.StateReason == nil) {
			t.Fatalf("%s: reason %+v with state %s", name, st.StateReason, st.State)
		}
	}

	putSpec(t, cli, "c1", 10)
	f.waitFor(t, "spec", func() bool { return f.status(t, "c1").State == StateCreated })
	step("created", StateCreated, ReasonNotRegistered)

	token := issue(t, f, "c1", time.Hour)
	step("token issued", StateCreated, ReasonAwaitingRegistration)

	first := newAgent(f.url)
	mustRegister(t, first, token)
	step("registered", StateRegistering, ReasonAwaitingFirstReport)

	clk.Add(testInterval)
	decodeBody[agentproto.ReportResponse](t, first.report(t, healthy()))
	step("first report", StateRunning, "")
	managedSince := f.status(t, "c1").ManagedSince
	if !managedSince.Equal(clk.Now()) {
		t.Fatalf("managedSince %v, want the first report's time %v", managedSince, clk.Now())
	}

	clk.Add(4 * testInterval)
	f.sweep(t.Context())
	step("silent", StateAbnormal, ReasonAgentSilent)

	decodeBody[agentproto.ReportResponse](t, first.report(t, healthy()))
	step("reporting again", StateRunning, "")
	if got := f.status(t, "c1").ManagedSince; !got.Equal(managedSince) {
		t.Fatalf("managedSince moved from %v to %v", managedSince, got)
	}

	if r := first.unregister(t); r.status != http.StatusNoContent {
		t.Fatalf("unregister: %d %s", r.status, r.body)
	}
	step("unregistered", StateCreated, ReasonNotRegistered)
	wantCode(t, first.report(t, healthy()), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)

	// The operator re-registers: a new token binds whichever agent comes.
	second := newAgent(f.url)
	mustRegister(t, second, issue(t, f, "c1", time.Hour))
	step("registered again", StateRegistering, ReasonAwaitingFirstReport)
	decodeBody[agentproto.ReportResponse](t, second.report(t, healthy()))
	step("running again", StateRunning, "")

	if err := f.Forget(t.Context(), "c1"); err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]*agent{"first": first, "second": second} {
		t.Run(name+" agent refused after Forget", func(t *testing.T) {
			wantCode(t, a.report(t, healthy()), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)
			wantCode(t, a.desired(t, 0, "1ms"), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)
			wantCode(t, a.unregister(t), http.StatusUnauthorized, agentproto.CodeCredentialRevoked)
		})
	}
	for _, s := range []string{token.Reveal(), first.cred, second.cred} {
		if strings.Contains(f.logs.String(), s) {
			t.Fatal("a token or credential reached the log")
		}
	}
	resp, err := cli.Get(t.Context(), Prefix+"agents/c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Fatal("agent record survived Forget")
	}
}
