package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenPaths are the replies frozen per version; {rule} is the first rule.
var goldenPaths = []struct{ name, path, accept string }{
	{"login", "POST /api/v5/login", ""},
	{"nodes", "/api/v5/nodes", ""},
	{"cluster", "/api/v5/cluster", ""},
	{"stats_aggregate", "/api/v5/stats?aggregate=true", ""},
	{"metrics_node1", "/api/v5/metrics?node=emqx@10.0.0.1", ""},
	{"monitor_current", "/api/v5/monitor_current", ""},
	{"monitor_current_node", "/api/v5/monitor_current/nodes/emqx@10.0.0.2", ""},
	{"alarms", "/api/v5/alarms", ""},
	{"rules", "/api/v5/rules?limit=4", ""},
	{"rule_metrics", "/api/v5/rules/{rule}/metrics", ""},
	{"connectors", "/api/v5/connectors", ""},
	{"actions", "/api/v5/actions", ""},
	{"sources", "/api/v5/sources", ""},
	{"actions_summary", "/api/v5/actions_summary", "application/json"},
	{"license", "/api/v5/license", ""},
	{"license_setting", "/api/v5/license/setting", ""},
	{"configs_log", "/api/v5/configs/log", ""},
	{"status_json", "/status?format=json", ""},
	{"status_text", "/status", ""},
	{"prometheus_stats", "/api/v5/prometheus/stats?mode=all_nodes_unaggregated", ""},
	{"prometheus_data_integration", "/api/v5/prometheus/data_integration", ""},
	{"prometheus_data_integration_json", "/api/v5/prometheus/data_integration?mode=all_nodes_aggregated", "application/json"},
}

// goldenSim is a small cluster after a few ticks with a connector down on
// one node, a failing rule and the quota alarm raised, on a frozen clock.
func goldenSim(t *testing.T, version, logDir string) (*Sim, *clock) {
	t.Helper()
	c := newClock()
	s, err := New(Options{
		Version: version, Nodes: 3, Rules: 6, Connectors: 3, Seed: 42, Now: c.Now, ClientsPerNode: 40,
		APIKeys: []APIKey{{Key: "golden", Secret: "golden-secret", Role: RoleViewer}},
		LogDir:  logDir, LogRate: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	for i := range 5 {
		c.Advance(time.Second)
		s.Step()
		if i == 1 {
			if err := s.FailConnector("kafka_producer:conn_0002", "econnrefused", "emqx@10.0.0.3"); err != nil {
				t.Fatal(err)
			}
			if err := s.FailRule(s.rules[1].id, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s, c
}

func TestGolden(t *testing.T) {
	for _, version := range []string{"5.7.2", "5.8.9", "5.9.3"} {
		t.Run(version, func(t *testing.T) {
			logDir := t.TempDir()
			s, _ := goldenSim(t, version, logDir)
			rel, _ := parseRelease(version)
			h := s.Handler()
			for _, g := range goldenPaths {
				if g.name == "actions_summary" && !rel.countsSessions() {
					continue
				}
				method, path := http.MethodGet, g.path
				body := ""
				if m, p, ok := strings.Cut(g.path, " "); ok {
					method, path = m, p
					body = `{"username":"admin","password":"public"}`
				}
				path = strings.ReplaceAll(path, "{rule}", s.rules[0].id)
				req := httptest.NewRequestWithContext(t.Context(), method, path, strings.NewReader(body))
				req.Header.Set("Authorization", basic("golden", "golden-secret"))
				if g.accept != "" {
					req.Header.Set("Accept", g.accept)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					t.Fatalf("%s: %d %s", g.path, rec.Code, rec.Body)
				}
				// The temp dir varies per run; show where EMQX's image logs.
				out := bytes.ReplaceAll(rec.Body.Bytes(), []byte(logDir), []byte("/opt/emqx/log"))
				ext := ".txt"
				if strings.Contains(rec.Header().Get("Content-Type"), "json") {
					out, ext = indentJSON(t, out), ".json"
				}
				compareGolden(t, filepath.Join("testdata", version, g.name+ext), out)
			}
			// The head of the log file: background lines and fault lines.
			b, err := os.ReadFile(filepath.Join(logDir, "emqx.log.1"))
			if err != nil {
				t.Fatal(err)
			}
			compareGolden(t, filepath.Join("testdata", version, "emqx.log.1.txt"), b)
		})
	}
}

func indentJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -run TestGolden -update rewrites it)\n--- got (head) ---\n%.600s", path, got)
	}
}
