package sim

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestRouterEdges(t *testing.T) {
	f := start(t, Options{})
	tok := f.admin(t)
	cases := []struct {
		name, method, path, auth, body, accept string
		status                                 int
		ctype, bodyHas, allow                  string
	}{
		{"404 json", "GET", "/api/v5/nope", "", "", "application/json", 404, "application/json", `{"code":"NOT_FOUND","message":"Request Path Not Found"}`, ""},
		{"404 text", "GET", "/api/v5/nope", "", "", "text/plain", 404, "text/plain", "404 - NOT FOUND", ""},
		{"404 html", "GET", "/api/v5/nope", "", "", "text/html", 404, "text/html", "<html>", ""},
		{"404 before auth", "GET", "/api/v5/nodes/x/y/z", "", "", "application/json", 404, "application/json", "NOT_FOUND", ""},
		{"405 with allow", "DELETE", "/api/v5/license", tok, "", "", 405, "", "", "GET, POST"},
		{"405 before auth", "POST", "/api/v5/nodes", "", "", "", 405, "", "", "GET"},
		{"bad json", "PUT", "/api/v5/license/setting", tok, "{nope", "", 400, "application/json", `"message":"Invalid json message received"`, ""},
		{"status text", "GET", "/status", "", "", "", 200, "text/plain", "Node emqx@10.0.0.1 is started\nemqx is running", ""},
		{"status on api path", "GET", "/api/v5/status", "", "", "", 200, "text/plain", "emqx is running", ""},
		{"unknown node", "GET", "/api/v5/nodes/emqx@nowhere", tok, "", "", 404, "application/json", "Node not found: emqx@nowhere", ""},
		{"unknown rule", "GET", "/api/v5/rules/rule_zzzz", tok, "", "", 404, "application/json", `"Rule Id Not Found"`, ""},
		{"unknown connector", "GET", "/api/v5/connectors/http:gone", tok, "", "", 404, "application/json",
			"Connector lookup failed: connector named 'gone' of type http does not exist.", ""},
		{"bad connector id", "GET", "/api/v5/connectors/gone", tok, "", "", 404, "application/json", "Invalid connector ID", ""},
		{"unknown action", "GET", "/api/v5/actions/http:gone", tok, "", "", 404, "application/json",
			"Bridge lookup failed: bridge named 'gone' of type http does not exist.", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.accept != "" {
				hdr = []string{"Accept", c.accept}
			}
			r := f.req(t, c.method, c.path, c.auth, c.body, hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if c.ctype != "" && !strings.HasPrefix(r.header.Get("Content-Type"), c.ctype) {
				t.Fatalf("content-type %q, want %q", r.header.Get("Content-Type"), c.ctype)
			}
			if !strings.Contains(string(r.body), c.bodyHas) {
				t.Fatalf("body %q lacks %q", r.body, c.bodyHas)
			}
			if c.allow != "" && (r.header.Get("allow") != c.allow || len(r.body) != 0) {
				t.Fatalf("allow %q body %q, want %q and empty", r.header.Get("allow"), r.body, c.allow)
			}
		})
	}
}

func TestStatusByVersion(t *testing.T) {
	cases := []struct {
		version, ctype string
		keys           []string
	}{
		{"5.7.2", "applicatin/json", []string{"node_name", "rel_vsn", "broker_status", "app_status"}},
		{"5.8.9", "application/json", []string{"node_name", "rel_vsn", "broker_status", "app_status"}},
		{"5.9.3", "application/json", []string{"node_name", "rel_vsn", "broker_status", "app_status", "cluster"}},
		{"5.10.4", "application/json", []string{"node_name", "broker_status", "app_status", "cluster"}},
	}
	for _, c := range cases {
		t.Run(c.version, func(t *testing.T) {
			f := start(t, Options{Version: c.version})
			r := f.req(t, "GET", "/status?format=json", "", "")
			m := r.object(t)
			if r.header.Get("Content-Type") != c.ctype || r.header.Get("retry-after") != "15" || len(m) != len(c.keys) {
				t.Fatalf("%s %v %s", r.header.Get("Content-Type"), r.header, r.body)
			}
			for _, k := range c.keys {
				if _, ok := m[k]; !ok {
					t.Fatalf("missing %s in %s", k, r.body)
				}
			}
			if v, ok := m["rel_vsn"]; ok && v != "e"+c.version {
				t.Fatalf("rel_vsn %v", v)
			}
			_ = f.sim.StopNode("emqx@10.0.0.1")
			r = f.req(t, "GET", "/status", "", "")
			if r.status != 503 || string(r.body) != "Node emqx@10.0.0.1 is stopped\nemqx is not_running" {
				t.Fatalf("stopped: %d %q", r.status, r.body)
			}
		})
	}
}

func TestRulesPagination(t *testing.T) {
	f := start(t, Options{Rules: 250})
	tok := f.admin(t)
	page := func(q string) (data []any, meta map[string]any) {
		r := f.req(t, "GET", "/api/v5/rules"+q, tok, "")
		if r.status != 200 {
			t.Fatalf("GET rules%s: %d %s", q, r.status, r.body)
		}
		m := r.object(t)
		return m["data"].([]any), m["meta"].(map[string]any)
	}
	cases := []struct {
		q       string
		n       int
		hasnext bool
		count   any
	}{
		{"", 100, true, 250.0},
		{"?page=3", 50, false, 250.0},
		{"?limit=1000", 250, false, 250.0},
		{"?page=9", 0, false, 250.0},
		{"?enable=true&limit=10000", -1, false, nil},
	}
	for _, c := range cases {
		t.Run(c.q, func(t *testing.T) {
			data, meta := page(c.q)
			if (c.n >= 0 && len(data) != c.n) || meta["hasnext"] != c.hasnext || meta["count"] != c.count {
				t.Fatalf("len %d meta %v", len(data), meta)
			}
		})
	}
	seen := map[string]bool{}
	for p := 1; ; p++ {
		data, meta := page("?limit=64&page=" + itoa(p))
		for _, d := range data {
			seen[d.(map[string]any)["id"].(string)] = true
		}
		if meta["hasnext"] == false {
			break
		}
	}
	if len(seen) != 250 {
		t.Fatalf("paging to the end saw %d distinct rules, want 250", len(seen))
	}
	for _, q := range []string{"?limit=0", "?limit=10001", "?page=0", "?page=x", "?limit=-5"} {
		wantError(t, f.req(t, "GET", "/api/v5/rules"+q, tok, ""), 400, "BAD_REQUEST", "page_limit_invalid")
	}
	data, _ := page("?enable=false&limit=10000")
	for _, d := range data {
		if d.(map[string]any)["enable"] != false {
			t.Fatalf("enable=false returned %v", d)
		}
	}
	id := data[0].(map[string]any)["id"].(string)
	if d, _ := page("?like_id=" + id); len(d) != 1 {
		t.Fatalf("like_id=%s matched %d", id, len(d))
	}
}

func itoa(i int) string { return strings.TrimSpace(sprintf("%d", i)) }

func TestStoppedNodes(t *testing.T) {
	f := start(t, Options{Nodes: 5})
	tok := f.admin(t)
	_ = f.sim.StopNode("emqx@10.0.0.2") // core
	_ = f.sim.StopNode("emqx@10.0.0.5") // replicant: not listed
	nodes := f.req(t, "GET", "/api/v5/nodes", tok, "").json(t).([]any)
	if len(nodes) != 4 {
		t.Fatalf("nodes listed %d, want 4", len(nodes))
	}
	last := nodes[3].(map[string]any)
	if len(last) != 3 || last["node"] != "emqx@10.0.0.2" || last["node_status"] != "stopped" || last["role"] != "core" {
		t.Fatalf("stopped core = %v", last)
	}
	cl := f.req(t, "GET", "/api/v5/cluster", tok, "").object(t)
	if len(cl["nodes"].([]any)) != 3 {
		t.Fatalf("cluster nodes = %v, want running only", cl["nodes"])
	}
	wantError(t, f.req(t, "GET", "/api/v5/nodes/emqx@10.0.0.5", tok, ""), 404, "NOT_FOUND", "Node not found: emqx@10.0.0.5")
	conn := f.req(t, "GET", "/api/v5/connectors/http:conn_0001", tok, "").object(t)
	if len(conn["node_status"].([]any)) != 3 {
		t.Fatalf("node_status lists %d nodes, want the 3 running", len(conn["node_status"].([]any)))
	}
	f.clock.Advance(time.Minute)
	_ = f.sim.StartNode("emqx@10.0.0.2")
	n := f.req(t, "GET", "/api/v5/nodes/emqx@10.0.0.2", tok, "").object(t)
	if n["node_status"] != "running" || n["uptime"] != 0.0 {
		t.Fatalf("restarted node = %v", n)
	}
}

func TestDashboardLoginMeta(t *testing.T) {
	f := start(t, Options{})
	tok := strings.TrimPrefix(f.admin(t), "Bearer ")
	meta := base64.StdEncoding.EncodeToString([]byte(`{"username":"admin","token":"` + tok +
		`","role":"administrator","license":{"edition":"ee"},"version":"5.8.9"}`))
	bad := base64.StdEncoding.EncodeToString([]byte(`{"username":"admin","token":"forged","role":"administrator"}`))
	cases := []struct {
		name, path string
		has        []string
	}{
		{"plain", "/", []string{`data-source="none"`, "login page"}},
		{"query", "/?login_meta=" + meta, []string{`data-source="query"`, `data-username="admin"`, `data-token-valid="true"`}},
		{"query bad token", "/?login_meta=" + bad, []string{`data-source="query"`, `data-token-valid="false"`}},
		{"hash handled by script", "/#/dashboard/overview?login_meta=" + meta, []string{`data-source="none"`, "location.hash", "sim/dashboard/entries"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.req(t, "GET", c.path, "", "")
			for _, h := range c.has {
				if !strings.Contains(string(r.body), h) {
					t.Fatalf("page lacks %q:\n%s", h, r.body)
				}
			}
		})
	}
	// The hash form: what the page script posts back.
	r := f.req(t, "POST", "/sim/dashboard/entries", "", `{"source":"hash","login_meta":"`+meta+`"}`)
	if r.status != 200 || r.object(t)["tokenValid"] != true {
		t.Fatalf("hash entry: %d %s", r.status, r.body)
	}
	entries := f.sim.DashboardEntries()
	if len(entries) != 3 || entries[0].Source != "query" || !entries[0].TokenValid || entries[1].TokenValid ||
		entries[2].Source != "hash" || entries[2].Username != "admin" {
		t.Fatalf("entries = %+v", entries)
	}
}

func TestConfigsLog(t *testing.T) {
	dir := t.TempDir()
	f := start(t, Options{LogDir: dir, LogFormat: "json", LogRotationSize: 10 << 20, LogRotationCount: 5})
	tok := f.admin(t)
	m := f.req(t, "GET", "/api/v5/configs/log", tok, "").object(t)
	def := m["file"].(map[string]any)["default"].(map[string]any)
	if def["path"] != "${EMQX_LOG_DIR}/emqx.log" || def["formatter"] != "json" || def["rotation_size"] != "10MB" ||
		def["rotation_count"] != 5.0 || def["enable"] != true {
		t.Fatalf("configs/log = %v", m)
	}
	n := f.req(t, "GET", "/api/v5/nodes/emqx@10.0.0.1", tok, "").object(t)
	if n["log_path"] != dir {
		t.Fatalf("log_path = %v, want %s", n["log_path"], dir)
	}
	g := start(t, Options{})
	n = g.req(t, "GET", "/api/v5/nodes/emqx@10.0.0.1", g.admin(t), "").object(t)
	if n["log_path"] != "log.file.enable is false, not logging to file." {
		t.Fatalf("console-only log_path = %v", n["log_path"])
	}
}

func TestMemString(t *testing.T) {
	for _, c := range []struct {
		b    float64
		want string
	}{{15.52 * (1 << 30), "15.52G"}, {256 * (1 << 20), "256.00M"}, {12 * 1024, "12.00K"}, {1000, "1000"}} {
		if got := memString(c.b); got != c.want {
			t.Errorf("memString(%v) = %q, want %q", c.b, got, c.want)
		}
	}
}

func TestStatsAggregate(t *testing.T) {
	f := start(t, Options{Nodes: 3})
	tok := f.admin(t)
	per := f.req(t, "GET", "/api/v5/stats", tok, "").json(t).([]any)
	agg := f.req(t, "GET", "/api/v5/stats?aggregate=true", tok, "").object(t)
	var conns, topics float64
	for _, n := range per {
		conns += n.(map[string]any)["connections.count"].(float64)
		topics = n.(map[string]any)["topics.count"].(float64)
	}
	if agg["connections.count"] != conns || agg["topics.count"] != topics || agg["node"] != nil {
		t.Fatalf("aggregate %v: want summed connections %v and cluster-global topics %v", agg, conns, topics)
	}
	wantError(t, f.req(t, "GET", "/api/v5/stats?aggregate=maybe", tok, ""), 400, "BAD_REQUEST", "")
}
