package fleet

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

type sessionResult struct {
	login DashboardLogin
	err   error
}

// TestDashboardSessionAcrossReplicas: the user's request is made on r1, the
// agent long-polls and answers on r2; r1 gets the login, and etcd never
// holds the token in the clear.
func TestDashboardSessionAcrossReplicas(t *testing.T) {
	cli := etcdtest.Client(t)
	clk := newClock()
	r1 := startFleet(t, cli, clk, "r1")
	r2 := startFleet(t, cli, clk, "r2")
	putSpec(t, cli, "c1", 10)
	putSpec(t, cli, "c2", 10)
	a := newAgent(r2.url)
	reg := mustRegister(t, a, issue(t, r2, "c1", time.Hour))
	other := newAgent(r2.url)
	mustRegister(t, other, issue(t, r2, "c2", time.Hour))
	r1.waitFor(t, "the binding on r1", func() bool {
		r1.mu.Lock()
		defer r1.mu.Unlock()
		e := r1.entries["c1"]
		return e != nil && e.hasAgent
	})

	got := make(chan sessionResult, 1)
	go func() {
		l, err := r1.DashboardSession(t.Context(), "c1", agentproto.DashboardRoleAdministrator, 20*time.Second)
		got <- sessionResult{l, err}
	}()
	// The request wakes the long-poll held on r2.
	d := decodeBody[agentproto.DesiredState](t, a.desired(t, reg.Desired.Revision, "20s"))
	if len(d.DashboardSessions) != 1 || d.Revision <= reg.Desired.Revision {
		t.Fatalf("desired state after the request: %+v", d)
	}
	req := d.DashboardSessions[0]
	const token = "the-emqx-dashboard-jwt"
	sealed, err := agentproto.SealDashboardLogin(req.PublicKey, agentproto.DashboardLogin{Username: "admin", Token: token, Role: "administrator", Version: "5.8.9", Edition: "ee"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("another cluster's agent cannot answer", func(t *testing.T) {
		r := other.do(t, http.MethodPost, agentproto.PathDashboardSession, agentproto.DashboardSessionReply{RequestID: req.ID, Sealed: sealed})
		if r.status != http.StatusNotFound {
			t.Fatalf("answer by the agent of c2: %d, want 404", r.status)
		}
	})
	t.Run("the bound agent answers", func(t *testing.T) {
		r := a.do(t, http.MethodPost, agentproto.PathDashboardSession, agentproto.DashboardSessionReply{RequestID: req.ID, Sealed: sealed})
		if r.status != http.StatusNoContent {
			t.Fatalf("answer: %d %s", r.status, r.body)
		}
		res := <-got
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.login.Token.Reveal() != token || res.login.Username != "admin" || res.login.Version != "5.8.9" {
			t.Fatalf("login %+v", res.login)
		}
	})
	t.Run("the token never sat in etcd in the clear, and the request is gone", func(t *testing.T) {
		resp, err := cli.Get(t.Context(), Prefix, clientv3WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			if strings.Contains(string(kv.Key), "dashboard") {
				t.Fatalf("dashboard key %s left after the jump", kv.Key)
			}
			if strings.Contains(string(kv.Value), token) {
				t.Fatalf("token in etcd at %s", kv.Key)
			}
		}
	})
}

func TestDashboardSessionFailsFast(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "c1", 10)
	putSpec(t, cli, "c2", 10)
	a := newAgent(f.url)
	reg := mustRegister(t, a, issue(t, f, "c2", time.Hour))

	t.Run("no agent", func(t *testing.T) {
		f.waitFor(t, "the spec", func() bool {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.entries["c1"] != nil
		})
		if _, err := f.DashboardSession(t.Context(), "c1", agentproto.DashboardRoleAdministrator, time.Second); !errors.Is(err, ErrDashboardNoAgent) {
			t.Fatalf("err = %v, want ErrDashboardNoAgent", err)
		}
	})
	t.Run("silent agent", func(t *testing.T) {
		if _, err := f.DashboardSession(t.Context(), "c2", agentproto.DashboardRoleAdministrator, 200*time.Millisecond); !errors.Is(err, ErrDashboardTimeout) {
			t.Fatalf("err = %v, want ErrDashboardTimeout", err)
		}
	})
	t.Run("agent reports EMQX refused the login", func(t *testing.T) {
		got := make(chan sessionResult, 1)
		go func() {
			l, err := f.DashboardSession(t.Context(), "c2", agentproto.DashboardRoleAdministrator, 20*time.Second)
			got <- sessionResult{l, err}
		}()
		var req agentproto.DashboardSessionRequest
		after := reg.Desired.Revision
		for req.ID == "" {
			d := decodeBody[agentproto.DesiredState](t, a.desired(t, after, "20s"))
			after = d.Revision
			if n := len(d.DashboardSessions); n > 0 {
				req = d.DashboardSessions[n-1]
			}
		}
		r := a.do(t, http.MethodPost, agentproto.PathDashboardSession, agentproto.DashboardSessionReply{RequestID: req.ID,
			Problem: &agentproto.Problem{Code: agentproto.ProblemEMQXAuthFailed, Message: "Auth failed"}})
		if r.status != http.StatusNoContent {
			t.Fatalf("answer: %d %s", r.status, r.body)
		}
		res := <-got
		if res.err == nil || !strings.Contains(res.err.Error(), agentproto.ProblemEMQXAuthFailed) {
			t.Fatalf("err = %v, want the agent's problem", res.err)
		}
	})
	t.Run("malformed answers", func(t *testing.T) {
		for _, body := range []agentproto.DashboardSessionReply{{}, {RequestID: "x"}, {RequestID: "x", Sealed: "s", Problem: &agentproto.Problem{}}} {
			if r := a.do(t, http.MethodPost, agentproto.PathDashboardSession, body); r.status != http.StatusBadRequest {
				t.Fatalf("%+v: %d, want 400", body, r.status)
			}
		}
	})
}
