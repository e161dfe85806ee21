package sim

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConnectorFaults(t *testing.T) {
	f := start(t, Options{Nodes: 3, LogDir: t.TempDir()})
	tok := f.admin(t)
	get := func(path string) map[string]any { return f.req(t, "GET", path, tok, "").object(t) }
	cases := []struct {
		name, body        string
		status, reason    string
		disconnectedNodes int
	}{
		{"all nodes", `{"reason":"econnrefused"}`, "disconnected", "econnrefused", 3},
		{"one node", `{"reason":"timeout","nodes":["emqx@10.0.0.2"]}`, "inconsistent", "timeout", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if r := f.req(t, "POST", "/sim/connectors/http:conn_0001/fail", "", c.body); r.status != 204 {
				t.Fatalf("fail: %d %s", r.status, r.body)
			}
			for _, path := range []string{"/api/v5/connectors/http:conn_0001", "/api/v5/actions/http:action_0001"} {
				m := get(path)
				if m["status"] != c.status || m["status_reason"] != c.reason {
					t.Fatalf("%s: status %v reason %v", path, m["status"], m["status_reason"])
				}
				down := 0
				for _, ns := range m["node_status"].([]any) {
					if ns.(map[string]any)["status"] == "disconnected" {
						down++
					}
				}
				if down != c.disconnectedNodes {
					t.Fatalf("%s: %d nodes disconnected, want %d", path, down, c.disconnectedNodes)
				}
			}
			if r := f.req(t, "POST", "/sim/connectors/http:conn_0001/heal", "", ""); r.status != 204 {
				t.Fatalf("heal: %d", r.status)
			}
			if m := get("/api/v5/connectors/http:conn_0001"); m["status"] != "connected" || m["status_reason"] != nil {
				t.Fatalf("healed connector %v", m)
			}
		})
	}
	wantError(t, f.req(t, "POST", "/sim/connectors/http:nope/fail", "", `{}`), 404, "NOT_FOUND", "")
	if b, _ := os.ReadFile(filepath.Join(f.sim.opts.LogDir, "emqx.log.1")); !strings.Contains(string(b),
		"[warning] msg: health_check_failed, resource_id: connector:http:conn_0001, status: disconnected") {
		t.Fatalf("log lacks the health check line:\n%s", b)
	}
}

func TestRuleFaultGrowsFailedCounters(t *testing.T) {
	f := start(t, Options{Rules: 3, Connectors: 3, LogDir: t.TempDir()})
	tok := f.admin(t)
	var ru *rule
	for _, r := range f.sim.rules {
		if r.enable && r.rate > 0 {
			ru = r
			break
		}
	}
	if ru == nil {
		t.Fatal("no enabled rule with traffic")
	}
	metrics := func() map[string]any {
		return f.req(t, "GET", "/api/v5/rules/"+ru.id+"/metrics", tok, "").object(t)["metrics"].(map[string]any)
	}
	before := metrics()
	if r := f.req(t, "POST", "/sim/rules/"+ru.id+"/fail", "", `{"reason":"bad sql"}`); r.status != 204 {
		t.Fatalf("fail: %d %s", r.status, r.body)
	}
	for range 10 {
		f.clock.Advance(time.Second)
		f.sim.Step()
	}
	mid := metrics()
	if mid["failed"].(float64) <= before["failed"].(float64) || mid["failed.exception"] != mid["failed"] ||
		mid["passed"] != before["passed"] {
		t.Fatalf("while failing: before %v after %v", before, mid)
	}
	_ = f.req(t, "POST", "/sim/rules/"+ru.id+"/heal", "", "")
	for range 10 {
		f.clock.Advance(time.Second)
		f.sim.Step()
	}
	after := metrics()
	if after["failed"] != mid["failed"] || after["passed"].(float64) <= mid["passed"].(float64) {
		t.Fatalf("after heal: %v then %v", mid, after)
	}
	if b, _ := os.ReadFile(filepath.Join(f.sim.opts.LogDir, "emqx.log.1")); !strings.Contains(string(b),
		"msg: SELECT_clause_exception, rule_id: "+ru.id+", reason: bad sql") {
		t.Fatalf("log lacks the rule failure:\n%s", b)
	}
}

func TestActionsFailWhileConnectorDown(t *testing.T) {
	f := start(t, Options{Rules: 3, Connectors: 3})
	tok := f.admin(t)
	a := f.sim.actions[0]
	if err := f.sim.FailConnector(a.conn.id(), "econnrefused"); err != nil {
		t.Fatal(err)
	}
	before := f.req(t, "GET", "/api/v5/actions/"+a.id()+"/metrics", tok, "").object(t)["metrics"].(map[string]any)
	for range 20 {
		f.clock.Advance(time.Second)
		f.sim.Step()
	}
	after := f.req(t, "GET", "/api/v5/actions/"+a.id()+"/metrics", tok, "").object(t)["metrics"].(map[string]any)
	if after["success"] != before["success"] || after["failed"].(float64) <= before["failed"].(float64) {
		t.Fatalf("action metrics before %v after %v", before, after)
	}
}

func TestAPIFault(t *testing.T) {
	f := start(t, Options{})
	tok := f.admin(t)
	if r := f.req(t, "POST", "/sim/api/fault", "", `{"errorRate":1}`); r.status != 204 {
		t.Fatalf("set fault: %d %s", r.status, r.body)
	}
	wantError(t, f.req(t, "GET", "/api/v5/nodes", tok, ""), 503, "SERVICE_UNAVAILABLE", "request timeout")
	_ = f.req(t, "POST", "/sim/api/fault", "", `{"errorRate":1,"status":500}`)
	wantError(t, f.req(t, "GET", "/api/v5/nodes", tok, ""), 500, "INTERNAL_ERROR", "")
	if r := f.req(t, "GET", "/sim/state", "", ""); r.status != 200 {
		t.Fatalf("/sim/ must not be faulted: %d", r.status)
	}
	_ = f.req(t, "POST", "/sim/api/fault", "", `{"errorRate":0.5}`)
	fails := 0
	for range 200 {
		if f.req(t, "GET", "/api/v5/cluster", tok, "").status == 503 {
			fails++
		}
	}
	if fails < 60 || fails > 140 {
		t.Fatalf("errorRate 0.5 failed %d of 200", fails)
	}
	wantError(t, f.req(t, "POST", "/sim/api/fault", "", `{"errorRate":2}`), 400, "BAD_REQUEST", "")
	_ = f.req(t, "POST", "/sim/api/fault", "", `{"latencyMs":30}`)
	t0 := time.Now()
	if r := f.req(t, "GET", "/api/v5/cluster", tok, ""); r.status != 200 || time.Since(t0) < 30*time.Millisecond {
		t.Fatalf("latency fault: %d after %v", r.status, time.Since(t0))
	}
	_ = f.req(t, "POST", "/sim/api/fault", "", `{}`)
	if r := f.req(t, "GET", "/api/v5/cluster", tok, ""); r.status != http.StatusOK {
		t.Fatalf("healed API: %d", r.status)
	}
}

func TestLoginRefusalAndTokenExpiry(t *testing.T) {
	f := start(t, Options{})
	tok := f.admin(t)
	for _, c := range []struct{ body, code, msg string }{
		{`{}`, "BAD_USERNAME_OR_PWD", "Auth failed"},
		{`{"code":"LOGIN_LOCKED"}`, "LOGIN_LOCKED", "Login locked"},
	} {
		_ = f.req(t, "POST", "/sim/login/refuse", "", c.body)
		wantError(t, f.req(t, "POST", "/api/v5/login", "", `{"username":"admin","password":"public"}`), 401, c.code, c.msg)
	}
	wantError(t, f.req(t, "POST", "/sim/login/refuse", "", `{"code":"NOPE"}`), 400, "BAD_REQUEST", "")
	_ = f.req(t, "POST", "/sim/login/accept", "", "")
	_ = f.admin(t)
	_ = f.req(t, "POST", "/sim/tokens/expire", "", "")
	wantError(t, f.req(t, "GET", "/api/v5/nodes", tok, ""), 401, "TOKEN_TIME_OUT", msgTokenTimeout)
}

func TestLicenseResetAndAlarm(t *testing.T) {
	f := start(t, Options{ClientsPerNode: 200, LogDir: t.TempDir()})
	tok := f.admin(t)
	_ = f.req(t, "PUT", "/api/v5/license/setting", tok, `{"dynamic_max_connections": 1000}`)
	f.clock.Advance(time.Second)
	f.sim.Step()
	if a := f.req(t, "GET", "/api/v5/alarms", tok, "").object(t); len(a["data"].([]any)) != 0 {
		t.Fatalf("alarm below the watermark: %v", a)
	}
	if r := f.req(t, "POST", "/sim/license/reset", "", ""); r.status != 204 {
		t.Fatalf("reset: %d", r.status)
	}
	if m := f.req(t, "GET", "/api/v5/license", tok, "").object(t); m["max_connections"] != 25.0 {
		t.Fatalf("after reset max_connections = %v, want 25", m["max_connections"])
	}
	f.clock.Advance(time.Second)
	f.sim.Step()
	al := f.req(t, "GET", "/api/v5/alarms", tok, "").object(t)["data"].([]any)
	if len(al) != 1 || al[0].(map[string]any)["name"] != "license_quota" ||
		al[0].(map[string]any)["message"] != "License: sessions quota exceeds 80%" {
		t.Fatalf("alarms = %v", al)
	}
	_ = f.req(t, "PUT", "/api/v5/license/setting", tok, `{"dynamic_max_connections": 100000}`)
	f.clock.Advance(time.Second)
	f.sim.Step()
	hist := f.req(t, "GET", "/api/v5/alarms?activated=false", tok, "").object(t)["data"].([]any)
	if len(hist) != 1 || hist[0].(map[string]any)["deactivate_at"] == nil {
		t.Fatalf("history = %v", hist)
	}
	b, _ := os.ReadFile(filepath.Join(f.sim.opts.LogDir, "emqx.log.1"))
	for _, want := range []string{"msg: alarm_is_activated, name: license_quota",
		"[error] tag: LICENSE, msg: connection_rejected_due_to_license_limit_reached"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("log lacks %q:\n%s", want, b)
		}
	}
}

func TestFaultLinesRepeatWhileFaulty(t *testing.T) {
	f := start(t, Options{Nodes: 2, LogDir: t.TempDir()})
	count := func(sub string) int {
		b, _ := os.ReadFile(filepath.Join(f.sim.opts.LogDir, "emqx.log.1"))
		return strings.Count(string(b), sub)
	}
	// A failure on another node is not in this node's log.
	_ = f.sim.FailConnector("http:conn_0001", "econnrefused", "emqx@10.0.0.2")
	if n := count("health_check_failed"); n != 0 {
		t.Fatalf("other node's failure logged here %d times", n)
	}
	_ = f.sim.FailConnector("http:conn_0001", "econnrefused")
	for range 30 {
		f.clock.Advance(time.Second)
		f.sim.Step()
	}
	if n := count("health_check_failed, resource_id: connector:http:conn_0001"); n != 3 {
		t.Fatalf("health checks logged %d times in 30 s, want 3 (every 15 s)", n)
	}
	_ = f.sim.HealConnector("http:conn_0001")
	for range 30 {
		f.clock.Advance(time.Second)
		f.sim.Step()
	}
	if n := count("health_check_failed"); n != 3 {
		t.Fatalf("healed connector still logged: %d", n)
	}
}

func TestStoppedNodeRPC(t *testing.T) {
	f := start(t, Options{})
	tok := f.admin(t)
	_ = f.sim.StopNode("emqx@10.0.0.2")
	for _, p := range []string{"/api/v5/nodes/emqx@10.0.0.2/metrics", "/api/v5/nodes/emqx@10.0.0.2/stats"} {
		wantError(t, f.req(t, "GET", p, tok, ""), 500, "NODE_DOWN", "")
	}
	wantError(t, f.req(t, "GET", "/api/v5/monitor_current/nodes/emqx@10.0.0.2", tok, ""), 404, "NOT_FOUND", "")
	if r := f.req(t, "GET", "/api/v5/metrics?node=emqx@10.0.0.9", tok, ""); string(r.body) != "[]" {
		t.Fatalf("unknown node filter: %s", r.body)
	}
}

// TestRaiseAndClearAlarm: a test raises and clears one of EMQX's own alarms
// through /sim/, and GET /api/v5/alarms lists it as EMQX does (one item per
// alarm and node, duration in ms; cleared ones in the history).
func TestRaiseAndClearAlarm(t *testing.T) {
	f := start(t, Options{Nodes: 2})
	tok := f.admin(t)
	if r := f.req(t, "POST", "/sim/alarms/high_cpu_usage/raise", "", `{"node":"emqx@10.0.0.2","message":"CPU is high","details":{"usage":"91%"}}`); r.status != 204 {
		t.Fatalf("raise: %d %s", r.status, r.body)
	}
	// Raising it again changes nothing; another node has its own.
	_ = f.req(t, "POST", "/sim/alarms/high_cpu_usage/raise", "", `{"node":"emqx@10.0.0.2"}`)
	_ = f.req(t, "POST", "/sim/alarms/high_cpu_usage/raise", "", `{}`)
	f.clock.Advance(1500 * time.Millisecond)
	al := f.req(t, "GET", "/api/v5/alarms", tok, "").object(t)["data"].([]any)
	if len(al) != 2 {
		t.Fatalf("alarms = %v, want two", al)
	}
	a := al[0].(map[string]any)
	if a["node"] != "emqx@10.0.0.2" || a["name"] != "high_cpu_usage" || a["message"] != "CPU is high" ||
		a["duration"] != 1500.0 || a["details"].(map[string]any)["usage"] != "91%" {
		t.Fatalf("alarm = %v", a)
	}
	if b := al[1].(map[string]any); b["node"] != "emqx@10.0.0.1" || b["message"] != "high_cpu_usage" {
		t.Fatalf("alarm on the first node = %v", b)
	}
	if r := f.req(t, "POST", "/sim/alarms/high_cpu_usage/clear", "", `{"node":"emqx@10.0.0.2"}`); r.status != 204 {
		t.Fatalf("clear: %d %s", r.status, r.body)
	}
	wantError(t, f.req(t, "POST", "/sim/alarms/high_cpu_usage/clear", "", `{"node":"emqx@10.0.0.2"}`), 404, "NOT_FOUND",
		`clear alarm "high_cpu_usage" on emqx@10.0.0.2: unknown alarm`)
	wantError(t, f.req(t, "POST", "/sim/alarms/x/raise", "", `{"node":"emqx@9.9.9.9"}`), 404, "NOT_FOUND",
		`raise alarm "x": node "emqx@9.9.9.9": unknown node`)
	al = f.req(t, "GET", "/api/v5/alarms", tok, "").object(t)["data"].([]any)
	hist := f.req(t, "GET", "/api/v5/alarms?activated=false", tok, "").object(t)["data"].([]any)
	if len(al) != 1 || len(hist) != 1 || hist[0].(map[string]any)["node"] != "emqx@10.0.0.2" {
		t.Fatalf("active %v, history %v", al, hist)
	}
}

// TestAPIPathConcurrency: /sim/state counts the most requests in flight at
// once on one path since the last fault change, so a test of a slow EMQX
// can prove its client never asked for the same thing twice at once.
func TestAPIPathConcurrency(t *testing.T) {
	f := start(t, Options{})
	tok := f.admin(t)
	pathMax := func() int {
		var st State
		r := f.req(t, "GET", "/sim/state", "", "")
		if err := json.Unmarshal(r.body, &st); err != nil {
			t.Fatalf("/sim/state: %v: %s", err, r.body)
		}
		return st.APIPathConcurrencyMax
	}
	_ = f.req(t, "POST", "/sim/api/fault", "", `{"latencyMs":300}`)
	var wg sync.WaitGroup
	for _, p := range []string{"/api/v5/nodes", "/api/v5/cluster", "/api/v5/license"} {
		wg.Go(func() { f.req(t, "GET", p, tok, "") })
	}
	wg.Wait()
	if got := pathMax(); got != 1 {
		t.Fatalf("three paths at once: apiPathConcurrencyMax = %d, want 1", got)
	}
	for range 2 {
		wg.Go(func() { f.req(t, "GET", "/api/v5/nodes", tok, "") })
	}
	wg.Wait()
	if got := pathMax(); got != 2 {
		t.Fatalf("one path twice at once: apiPathConcurrencyMax = %d, want 2", got)
	}
	_ = f.req(t, "POST", "/sim/api/fault", "", `{}`)
	if got := pathMax(); got != 0 {
		t.Fatalf("after a fault change: apiPathConcurrencyMax = %d, want 0", got)
	}
}

// TestClientsPerNode: POST /sim/clients sets every node's client demand;
// the connections follow it within the licence's cap over the next ticks,
// down as well as up.
func TestClientsPerNode(t *testing.T) {
	f := start(t, Options{Nodes: 2, ClientsPerNode: 10, LicenseCustomerType: 3, LicenseType: 1, LicenseMaxSessions: 1000})
	settle := func() State {
		for range 40 {
			f.clock.Advance(time.Second)
			f.sim.Step()
		}
		return f.sim.State()
	}
	if st := settle(); st.Connections > 30 {
		t.Fatalf("%d connections at 10 clients a node", st.Connections)
	}
	if r := f.req(t, "POST", "/sim/clients", "", `{"perNode":100}`); r.status != 204 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// dynamic_max_connections is 25 (at most 25: refused at the limit).
	if st := settle(); st.Connections != st.ConnectionCap || st.ConnectionCap != 25 {
		t.Fatalf("%d connections, cap %d: want the cap reached", st.Connections, st.ConnectionCap)
	}
	// Demand 0 still jitters by a client or so a tick on each node.
	_ = f.req(t, "POST", "/sim/clients", "", `{"perNode":0}`)
	if st := settle(); st.Connections > 10 {
		t.Fatalf("%d connections with no client left", st.Connections)
	}
	wantError(t, f.req(t, "POST", "/sim/clients", "", `{"perNode":-1}`), 400, "BAD_REQUEST", "bad fault: perNode must be 0..10000000")
	wantError(t, f.req(t, "POST", "/sim/clients", "", `{}`), 400, "BAD_REQUEST", "perNode is required")
}

// TestNodeCPU: POST /sim/nodes/{node}/cpu pins the node's emqx_vm_cpu_use
// (and idle its complement) in /prometheus/stats; {} lets it follow the
// load again.
func TestNodeCPU(t *testing.T) {
	f := start(t, Options{Nodes: 2})
	cpu := func() map[string]float64 {
		out := map[string]float64{}
		fams := parseProm(t, f.req(t, "GET", "/api/v5/prometheus/stats?mode=all_nodes_unaggregated", "", "").body)
		for _, m := range fams["emqx_vm_cpu_use"].GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
		for _, m := range fams["emqx_vm_cpu_idle"].GetMetric() {
			if use := out[m.GetLabel()[0].GetValue()]; use+m.GetGauge().GetValue() != 100 {
				t.Errorf("use %v + idle %v != 100", use, m.GetGauge().GetValue())
			}
		}
		return out
	}
	before := cpu()
	if r := f.req(t, "POST", "/sim/nodes/emqx@10.0.0.2/cpu", "", `{"use":95.5}`); r.status != 204 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got := cpu(); got["emqx@10.0.0.2"] != 95.5 || got["emqx@10.0.0.1"] != before["emqx@10.0.0.1"] {
		t.Fatalf("cpu %v, want 95.5 on emqx@10.0.0.2 only (before %v)", got, before)
	}
	_ = f.req(t, "POST", "/sim/nodes/emqx@10.0.0.2/cpu", "", `{}`)
	if got := cpu(); got["emqx@10.0.0.2"] != before["emqx@10.0.0.2"] {
		t.Fatalf("cpu %v after unpinning, want %v", got, before)
	}
	wantError(t, f.req(t, "POST", "/sim/nodes/emqx@10.0.0.2/cpu", "", `{"use":101}`), 400, "BAD_REQUEST", "bad fault: use must be 0..100")
	wantError(t, f.req(t, "POST", "/sim/nodes/emqx@9.9.9.9/cpu", "", `{"use":1}`), 404, "NOT_FOUND", `set cpu of node "emqx@9.9.9.9": unknown node`)
}
