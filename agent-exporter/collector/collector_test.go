package collector_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/agentproto/series"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeAPI struct {
	mu         sync.Mutex
	bulk       bool // serve AllRuleMetrics (EMQX 5.5+); else it fails
	nodesErr   error
	rulesErr   error
	failed     map[string]float64
	calls      map[string]int
	customerBC bool
	alarms     []emqx.Alarm
	alarmLimit int
}

var _ collector.API = (*fakeAPI)(nil)

func (f *fakeAPI) count(n string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[n]++
}

func (f *fakeAPI) Nodes(context.Context) ([]emqx.Node, error) {
	f.count("nodes")
	if f.nodesErr != nil {
		return nil, f.nodesErr
	}
	return []emqx.Node{
		{Node: "emqx@a", NodeStatus: "running", Version: "5.8.9", Edition: "Enterprise", Role: "core", Uptime: 7_200_000, Connections: 10, LiveConnections: 8,
			Load1: 1.5, Load5: 1.25, Load15: 1, MemoryTotal: "2.00G", MemoryUsed: "512.00M"},
		// A node on a host EMQX cannot read memory from (not Linux).
		{Node: "emqx@b", NodeStatus: "running", Version: "5.8.9", Edition: "Enterprise", Role: "core", Uptime: 3_600_000, Connections: 5, LiveConnections: 5,
			MemoryTotal: "0", MemoryUsed: "0"},
		{Node: "emqx@c", NodeStatus: "stopped", Role: "core"},
	}, nil
}

func (f *fakeAPI) ClusterName(context.Context) (string, error) {
	f.count("cluster")
	return "emqxcl", nil
}

func (f *fakeAPI) License(context.Context) (emqx.License, error) {
	f.count("license")
	ms := 100
	ct := 1
	if f.customerBC {
		ct = 3
	}
	return emqx.License{Type: "official", CustomerType: ct, ExpiryAt: "2029-04-17", MaxConnections: 100, MaxSessions: &ms}, nil
}

func (f *fakeAPI) LicenseSetting(context.Context) (emqx.LicenseSetting, error) {
	f.count("setting")
	n := 100
	return emqx.LicenseSetting{DynamicMaxConnections: &n}, nil
}

func (f *fakeAPI) Rules(context.Context) ([]emqx.Rule, error) {
	f.count("rules")
	if f.rulesErr != nil {
		return nil, f.rulesErr
	}
	return []emqx.Rule{{ID: "r_ok", Enable: true}, {ID: "r_bad", Name: "bad", Enable: true}, {ID: "r_off", Enable: false}}, nil
}

func (f *fakeAPI) RuleMetrics(_ context.Context, id string) (emqx.RuleMetrics, error) {
	f.count("rule_metrics")
	f.mu.Lock()
	defer f.mu.Unlock()
	return emqx.RuleMetrics{Matched: 10, Passed: 9, Failed: f.failed[id], ActionsTotal: 9, ActionsOK: 9}, nil
}

func (f *fakeAPI) AllRuleMetrics(ctx context.Context) (map[string]emqx.RuleMetrics, error) {
	f.count("all_rule_metrics")
	if !f.bulk {
		return nil, errors.New("http 404")
	}
	m := map[string]emqx.RuleMetrics{}
	for _, id := range []string{"r_ok", "r_bad", "r_off"} {
		f.mu.Lock()
		m[id] = emqx.RuleMetrics{Matched: 10, Passed: 9, Failed: f.failed[id], ActionsTotal: 9, ActionsOK: 9}
		f.mu.Unlock()
	}
	return m, nil
}

func (f *fakeAPI) Connectors(context.Context) ([]emqx.Resource, error) {
	f.count("connectors")
	return []emqx.Resource{
		{Type: "http", Name: "ok", Enable: true, Status: "connected"},
		{Type: "kafka_producer", Name: "k1", Enable: true, Status: "disconnected", StatusReason: "econnrefused"},
	}, nil
}

func (f *fakeAPI) Actions(context.Context) ([]emqx.Resource, error) {
	f.count("actions")
	return []emqx.Resource{{Type: "http", Name: "a1", Enable: true, Status: "connected"}}, nil
}

func (f *fakeAPI) Sources(context.Context) ([]emqx.Resource, error) {
	f.count("sources")
	return nil, nil
}

func (f *fakeAPI) ActiveAlarms(_ context.Context, limit int) ([]emqx.Alarm, bool, error) {
	f.count("alarms")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.alarmLimit = limit
	return slices.Clone(f.alarms), false, nil
}

func (f *fakeAPI) Metrics(context.Context) (emqx.AuthFailures, error) {
	f.count("metrics")
	return emqx.AuthFailures{Connect: 3, Publish: 2, Subscribe: 1}, nil
}

func (f *fakeAPI) AuthBackends(context.Context) ([]emqx.AuthBackend, error) {
	f.count("auth")
	return []emqx.AuthBackend{
		{ID: "password_based:http", Enabled: true, Connected: false},
		{Authorization: true, ID: "file", Enabled: true, Connected: true},
	}, nil
}

func (f *fakeAPI) NodeCPU(context.Context) (map[string]float64, error) {
	f.count("cpu")
	return map[string]float64{"emqx@a": 42.5}, nil
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func fixedNow() time.Time { return t0 }

func TestStatus(t *testing.T) {
	for _, bulk := range []bool{true, false} {
		t.Run(fmt.Sprintf("bulk rule metrics=%v", bulk), func(t *testing.T) { testStatus(t, bulk) })
	}
}

func testStatus(t *testing.T, bulk bool) {
	api := &fakeAPI{bulk: bulk, failed: map[string]float64{"r_bad": 1}}
	c := collector.New(fixedNow)
	c.SetAPI(api)
	first := c.Collect(t.Context()).Status()
	if first.Rules.Unhealthy != 1 {
		t.Fatalf("first collection: only the disabled rule is unhealthy, got %+v", first.Rules)
	}
	api.mu.Lock()
	api.failed["r_bad"] = 3 // failed grew: the rule is failing now
	api.mu.Unlock()
	st := c.Collect(t.Context()).Status()

	checks := []struct {
		name      string
		got, want any
	}{
		{"reachable", st.Reachable, true},
		{"version", st.Version, "5.8.9"},
		{"connections over running nodes", st.Connections, 15},
		{"live connections", st.LiveConnections, 13},
		{"max connections from max_sessions", st.MaxConnections, 100},
		{"started at = now - longest uptime", st.StartedAt, t0.Add(-2 * time.Hour)},
		{"nodes", len(st.Nodes), 3},
		{"rules", st.Rules, agentproto.ResourceCounts{Total: 3, Healthy: 1, Unhealthy: 2}},
		{"connectors", st.Connectors, agentproto.ResourceCounts{Total: 2, Healthy: 1, Unhealthy: 1}},
		{"actions", st.Actions, agentproto.ResourceCounts{Total: 1, Healthy: 1}},
		{"abnormal count", len(st.Abnormal), 3},
		{"failing rule", st.Abnormal[0].ID + "/" + st.Abnormal[0].Status, "r_bad/failing"},
		{"stopped rule", st.Abnormal[1].ID + "/" + st.Abnormal[1].Status, "r_off/stopped"},
		{"connector", fmt.Sprint(st.Abnormal[2]), fmt.Sprint(agentproto.Resource{Kind: "connector", ID: "kafka_producer:k1", Name: "k1", Status: "disconnected", Reason: "econnrefused"})},
		{"per-rule metric calls only without the bulk endpoint, for enabled rules", api.calls["rule_metrics"], map[bool]int{true: 0, false: 4}[bulk]},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode string
	}{
		{"auth", fmt.Errorf("logging in: %w", emqx.ErrAuthFailed), agentproto.ProblemEMQXAuthFailed},
		{"down", errors.New("connection refused"), agentproto.ProblemEMQXUnreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := &fakeAPI{nodesErr: tc.err}
			c := collector.New(fixedNow)
			c.SetAPI(api)
			s := c.Collect(t.Context())
			st := s.Status()
			if st.Reachable || st.Problem == nil || st.Problem.Code != tc.wantCode {
				t.Fatalf("status = %+v", st)
			}
			if api.calls["rules"] != 0 || api.calls["connectors"] != 0 {
				t.Fatalf("collection went on after nodes failed: %v", api.calls)
			}
			if len(s.Results) != len(collector.SubCollectors) {
				t.Fatalf("results = %d, want one per sub-collector", len(s.Results))
			}
		})
	}
}

func TestNotConfigured(t *testing.T) {
	c := collector.New(fixedNow)
	st := c.Collect(t.Context()).Status()
	if st.Reachable || st.Problem == nil {
		t.Fatalf("status = %+v", st)
	}
}

func TestMetricsLintAndValues(t *testing.T) {
	api := &fakeAPI{customerBC: true, rulesErr: nil}
	c := collector.New(fixedNow)
	c.SetAPI(api)
	c.Collect(t.Context())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(c))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// A scrape serves the snapshot; it never calls EMQX.
	before := api.calls["nodes"]
	for range 3 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if api.calls["nodes"] != before {
		t.Fatalf("scrapes called EMQX: nodes calls %d → %d", before, api.calls["nodes"])
	}
	want := `# HELP emqx_license_dynamic_max_connections dynamic_max_connections of a business-critical licence.
# TYPE emqx_license_dynamic_max_connections gauge
emqx_license_dynamic_max_connections 100
# HELP emqx_node_connections Sessions on the node, including disconnected persistent sessions.
# TYPE emqx_node_connections gauge
emqx_node_connections{node="emqx@a"} 10
emqx_node_connections{node="emqx@b"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "emqx_license_dynamic_max_connections", "emqx_node_connections"); err != nil {
		t.Fatal(err)
	}
}

func TestRulesFailureMarksSubCollector(t *testing.T) {
	api := &fakeAPI{rulesErr: errors.New("boom")}
	c := collector.New(fixedNow)
	c.SetAPI(api)
	s := c.Collect(t.Context())
	for _, r := range s.Results {
		if (r.Err != nil) != (r.Name == collector.SubRules) {
			t.Fatalf("result %s err %v", r.Name, r.Err)
		}
	}
	if !s.Up {
		t.Fatal("one failing sub-collector must not mark EMQX down")
	}
}

// TestActiveAlarmsExported: EMQX's active alarms become one emqx_alarm_active
// series per name and node, read in the same collection with a bounded
// limit; a repeat (which EMQX never sends) does not break /metrics, and a
// cleared alarm disappears. Before, nothing produced the series the "EMQX
// alert push" rule reads.
// TestNodeHostAndAuthFailuresExported: CPU usage (as a ratio, where EMQX
// gave one), load and memory per running node,
// memory left out where EMQX says "0" (a total of 0 would make the memory
// rule divide by zero), the cluster's auth refusal counters, and each
// authenticator's and authorization source's status.
func TestNodeHostAndAuthFailuresExported(t *testing.T) {
	c := collector.New(fixedNow)
	c.SetAPI(&fakeAPI{})
	c.Collect(t.Context())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(c))
	want := `# HELP emqx_node_cpu_usage_ratio CPU usage of the running node's host, 0 to 1 (emqx_vm_cpu_use of /prometheus/stats, a percentage, over 100).
# TYPE emqx_node_cpu_usage_ratio gauge
emqx_node_cpu_usage_ratio{node="emqx@a"} 0.425
# HELP emqx_node_load5 OS load average over 5 minutes of the running node's host.
# TYPE emqx_node_load5 gauge
emqx_node_load5{node="emqx@a"} 1.25
emqx_node_load5{node="emqx@b"} 0
# HELP emqx_node_memory_total_bytes Memory of the running node's host (memory_total), in bytes.
# TYPE emqx_node_memory_total_bytes gauge
emqx_node_memory_total_bytes{node="emqx@a"} 2.147483648e+09
# HELP emqx_node_memory_used_bytes Memory in use on the running node's host (memory_used), in bytes.
# TYPE emqx_node_memory_used_bytes gauge
emqx_node_memory_used_bytes{node="emqx@a"} 5.36870912e+08
# HELP emqx_packets_connack_auth_error_total CONNECTs the cluster refused for failed authentication or authorization (packets.connack.auth_error).
# TYPE emqx_packets_connack_auth_error_total counter
emqx_packets_connack_auth_error_total 3
# HELP emqx_packets_subscribe_auth_error_total SUBSCRIBEs the cluster's authorization denied (packets.subscribe.auth_error).
# TYPE emqx_packets_subscribe_auth_error_total counter
emqx_packets_subscribe_auth_error_total 1
# HELP emqx_authn_connected Whether the authenticator is connected on every node (1) or not (0).
# TYPE emqx_authn_connected gauge
emqx_authn_connected{id="password_based:http"} 0
# HELP emqx_authz_connected Whether the authorization source is connected on every node (1) or not (0); id is its type.
# TYPE emqx_authz_connected gauge
emqx_authz_connected{id="file"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), series.NodeCPUUsage, series.NodeLoad5, series.NodeMemoryTotal,
		series.NodeMemoryUsed, series.ConnectAuthFailures, series.SubscribeAuthFailures,
		series.AuthnConnected, series.AuthzConnected); err != nil {
		t.Fatal(err)
	}
}

func TestActiveAlarmsExported(t *testing.T) {
	api := &fakeAPI{alarms: []emqx.Alarm{
		{Node: "emqx@a", Name: "license_quota", Message: "License: sessions quota exceeds 80%"},
		{Node: "emqx@b", Name: "high_cpu_usage"},
		{Node: "emqx@b", Name: "high_cpu_usage"},
	}}
	c := collector.New(fixedNow)
	c.SetAPI(api)
	c.Collect(t.Context())
	if api.alarmLimit != series.MaxAlarms {
		t.Errorf("alarms read with limit %d, want %d", api.alarmLimit, series.MaxAlarms)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(c))
	want := `# HELP emqx_alarm_active An alarm EMQX holds active, by alarm name and node; always 1 (a cleared alarm disappears).
# TYPE emqx_alarm_active gauge
emqx_alarm_active{name="high_cpu_usage",node="emqx@b"} 1
emqx_alarm_active{name="license_quota",node="emqx@a"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), series.AlarmActive); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	api.alarms = api.alarms[1:2]
	api.mu.Unlock()
	c.Collect(t.Context())
	want = `# HELP emqx_alarm_active An alarm EMQX holds active, by alarm name and node; always 1 (a cleared alarm disappears).
# TYPE emqx_alarm_active gauge
emqx_alarm_active{name="high_cpu_usage",node="emqx@b"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), series.AlarmActive); err != nil {
		t.Fatal(err)
	}
}
