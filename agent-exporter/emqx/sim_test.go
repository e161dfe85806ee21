package emqx_test

import (
	"testing"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

// TestAgainstSimulator runs the client's calls against emqx-sim: paging
// rules past one page, renewing a timed-out token, a refused login, and
// the licence setting that only a business-critical licence keeps.
func TestAgainstSimulator(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Rules = emqx.RulesPageLimit + 50
	c := simtest.Start(t, opts)
	c.Step()
	cl := newClient(t, c.URL(), sim.DefaultPassword)

	rules, err := cl.Rules(t.Context())
	if err != nil || len(rules) != opts.Rules {
		t.Fatalf("rules: %d, %v", len(rules), err)
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.ID] {
			t.Fatalf("rule %s listed twice", r.ID)
		}
		seen[r.ID] = true
	}

	all, err := cl.AllRuleMetrics(t.Context())
	if err != nil || len(all) != opts.Rules {
		t.Fatalf("all rule metrics: %d, %v", len(all), err)
	}
	one, err := cl.RuleMetrics(t.Context(), rules[0].ID)
	if err != nil || one != all[rules[0].ID] || one.Matched == 0 {
		t.Fatalf("rule %s: per-rule %+v, bulk %+v, err %v", rules[0].ID, one, all[rules[0].ID], err)
	}

	c.ExpireTokens()
	nodes, err := cl.Nodes(t.Context())
	if err != nil || len(nodes) != opts.Nodes {
		t.Fatalf("nodes after token expiry: %d, %v", len(nodes), err)
	}

	set, err := cl.SetDynamicMaxConnections(t.Context(), 1234)
	if err != nil || set.DynamicMaxConnections == nil || *set.DynamicMaxConnections != 1234 {
		t.Fatalf("set dynamic: %+v %v", set, err)
	}
	lic, err := cl.License(t.Context())
	if err != nil || lic.Limit() != 1234 || lic.CustomerType != emqx.CustomerTypeBusinessCritical {
		t.Fatalf("licence: %+v %v", lic, err)
	}

	if err := c.RefuseLogin("BAD_USERNAME_OR_PWD"); err != nil {
		t.Fatal(err)
	}
	c.ExpireTokens()
	if _, err := cl.Nodes(t.Context()); err == nil {
		t.Fatal("nodes succeeded with login refused")
	}
}

// TestLicenceLimitByVersion: the limit comes from max_sessions where the
// version has it (5.8.5+) and from max_connections before.
func TestLicenceLimitByVersion(t *testing.T) {
	tests := []struct {
		version      string
		wantSessions bool
	}{
		{"5.7.2", false},
		{"5.8.9", true},
		{"5.9.3", true},
	}
	for _, tc := range tests {
		t.Run(tc.version, func(t *testing.T) {
			opts := sim.DefaultOptions()
			opts.Version = tc.version
			c := simtest.Start(t, opts)
			cl := newClient(t, c.URL(), sim.DefaultPassword)
			if _, err := cl.SetDynamicMaxConnections(t.Context(), 321); err != nil {
				t.Fatal(err)
			}
			lic, err := cl.License(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if (lic.MaxSessions != nil) != tc.wantSessions || lic.Limit() != 321 || lic.Limit() != c.State().EffectiveMax {
				t.Fatalf("licence %+v (max_sessions present %v), sim effective max %d", lic, lic.MaxSessions != nil, c.State().EffectiveMax)
			}
		})
	}
}

// TestLocalNodeNamesTheNodeThatAnswers: /status?format=json names the node
// serving the API, on the first version with the JSON form and on the
// latest, whatever else the reply carries.
func TestLocalNodeNamesTheNodeThatAnswers(t *testing.T) {
	for _, v := range []string{"5.7.2", "5.8.9", "5.10.4"} {
		t.Run(v, func(t *testing.T) {
			opts := sim.DefaultOptions()
			opts.Nodes, opts.Version = 3, v
			c := simtest.Start(t, opts)
			cl := newClient(t, c.URL(), sim.DefaultPassword)
			if got, err := cl.LocalNode(t.Context()); err != nil || got != "emqx@10.0.0.1" {
				t.Fatalf("LocalNode = %q, %v; want emqx@10.0.0.1", got, err)
			}
		})
	}
}

// TestActiveAlarmsAgainstSimulator reads EMQX's active alarms from emqx-sim,
// bounded by the limit (more says some were left out), and sees a cleared
// one go.
func TestActiveAlarmsAgainstSimulator(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Nodes = 2
	c := simtest.Start(t, opts)
	cl := newClient(t, c.URL(), sim.DefaultPassword)
	for _, a := range []struct{ node, name string }{{"emqx@10.0.0.1", "high_cpu_usage"}, {"emqx@10.0.0.2", "high_cpu_usage"}, {"emqx@10.0.0.2", "high_system_memory_usage"}} {
		if err := c.RaiseAlarm(a.node, a.name, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	got, more, err := cl.ActiveAlarms(t.Context(), 2)
	if err != nil || !more || len(got) != 2 || got[0] != (emqx.Alarm{Node: "emqx@10.0.0.1", Name: "high_cpu_usage", Message: "high_cpu_usage"}) {
		t.Fatalf("first 2 alarms: %+v more %v err %v", got, more, err)
	}
	if err := c.ClearAlarm("emqx@10.0.0.1", "high_cpu_usage"); err != nil {
		t.Fatal(err)
	}
	got, more, err = cl.ActiveAlarms(t.Context(), 100)
	if err != nil || more || len(got) != 2 || got[0].Node != "emqx@10.0.0.2" {
		t.Fatalf("alarms after clearing one: %+v more %v err %v", got, more, err)
	}
}

// TestAllRuleMetricsFromPrometheusText: a node that answers
// /prometheus/data_integration in the Prometheus text format (no JSON
// variant) gives every rule's counters in the one call, equal to what
// /rules/{id}/metrics says; the client used to fail to decode it, so the
// collector fell back to one /rules/{id}/metrics call per rule.
func TestAllRuleMetricsFromPrometheusText(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Rules = 120
	opts.PrometheusTextOnly = true
	c := simtest.Start(t, opts)
	c.Step()
	cl := newClient(t, c.URL(), sim.DefaultPassword)
	got, err := cl.AllRuleMetrics(t.Context())
	if err != nil {
		t.Fatalf("rule metrics from the text exposition: %v", err)
	}
	rules, err := cl.Rules(t.Context())
	if err != nil || len(rules) != 120 || len(got) != 120 {
		t.Fatalf("%d rules listed (%v), %d with counters; want 120", len(rules), err, len(got))
	}
	matched := 0.0
	for _, r := range rules[:10] {
		one, err := cl.RuleMetrics(t.Context(), r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got[r.ID] != one {
			t.Errorf("rule %s: from the text %+v, per rule %+v", r.ID, got[r.ID], one)
		}
		matched += one.Matched
	}
	if matched == 0 {
		t.Fatal("no rule matched anything: the comparison proves nothing")
	}
}

// TestNodeCPUAgainstSimulator: one call gives the CPU usage of every
// running node, as the simulator's /prometheus/stats has it; a stopped
// node has none.
func TestNodeCPUAgainstSimulator(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Nodes = 3
	c := simtest.Start(t, opts)
	if err := c.StopNode("emqx@10.0.0.3"); err != nil {
		t.Fatal(err)
	}
	c.Step()
	cl := newClient(t, c.URL(), sim.DefaultPassword)
	got, err := cl.NodeCPU(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["emqx@10.0.0.1"] <= 0 || got["emqx@10.0.0.2"] <= 0 {
		t.Fatalf("CPU usage %v, want a value for each of the two running nodes", got)
	}
}
