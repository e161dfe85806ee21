package fleet

import (
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestIdentityNotRewrittenOnRecovery: an agent's identity keys, written
// with its registration (as agent-exporter registers) or claimed by its
// first report (an agent that could not read its cluster then), are
// written never again while its binding lasts: not when it moves to
// another replica, not after it was marked silent and reports again, not
// after a report ecp refused.
func TestIdentityNotRewrittenOnRecovery(t *testing.T) {
	for _, withIdentity := range []bool{true, false} {
		t.Run(map[bool]string{true: "registered with its identity", false: "identity claimed by a report"}[withIdentity], func(t *testing.T) {
			identityNotRewritten(t, withIdentity)
		})
	}
}

func identityNotRewritten(t *testing.T, withIdentity bool) {
	cli := etcdtest.Client(t)
	clk := newClock()
	r1 := startFleet(t, cli, clk, "r1")
	r1.waitLeader(t)
	r2 := startFleet(t, cli, clk, "r2")
	putSpec(t, cli, "c1", 10)
	a := newAgent(r1.url)
	em := on("emqx-c1", "emqx@n1.c1", "emqx@n2.c1")
	claims := 1.0
	if withIdentity {
		decodeBody[agentproto.RegisterResponse](t, a.registerOn(t, issue(t, r1, "c1", time.Hour), &agentproto.ClusterIdentity{Name: em.ClusterName, Nodes: []string{em.Nodes[0].Name, em.Nodes[1].Name}}))
		claims = 0
	} else {
		mustRegister(t, a, issue(t, r1, "c1", time.Hour))
	}
	decodeBody[agentproto.ReportResponse](t, a.report(t, em))
	if w := r1.writes("identity") + r2.writes("identity"); w != claims {
		t.Fatalf("%v identity writes for the first report, want %v", w, claims)
	}
	rev := func() int64 {
		resp, err := cli.Get(t.Context(), identityPrefix, clientv3WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		var m int64
		for _, kv := range resp.Kvs {
			m = max(m, kv.ModRevision)
		}
		return m
	}
	claimed := rev()
	steps := []struct {
		what string
		do   func()
	}{
		{"the same replica again", func() {}},
		{"another replica", func() { a.base = r2.url }},
		{"a node stopped", func() { em.Nodes[1].Status = "stopped" }},
		{"back on the first replica after silence", func() {
			a.base = r1.url
			em.Nodes[1].Status = "running"
			clk.Add(4 * testInterval)
			// r2 says it heard nothing since: the silence is certain.
			r1.waitTold(t, r2, "r2", clk.Now())
			r1.sweep(t.Context())
			r1.waitState(t, "c1", StateAbnormal, ReasonAgentSilent)
		}},
		{"after a report ecp refused", func() {
			a.base = r2.url
			wantCode(t, a.report(t, agentproto.EMQXStatus{Reachable: true, ClusterName: string(make([]byte, 300))}), 400, "Invalid")
		}},
	}
	for _, s := range steps {
		s.do()
		decodeBody[agentproto.ReportResponse](t, a.report(t, em))
		if w := r1.writes("identity") + r2.writes("identity"); w != claims {
			t.Fatalf("%s: %v identity writes in all, want %v", s.what, w, claims)
		}
		if r := rev(); r != claimed {
			t.Fatalf("%s: identity keys rewritten at revision %d (claimed at %d)", s.what, r, claimed)
		}
	}
}
