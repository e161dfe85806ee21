package sim

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parseProm(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("not Prometheus text: %v", err)
	}
	return fams
}

func labels(m *dto.Metric) string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName())
	}
	return strings.Join(out, ",")
}

func TestPrometheusStatsModes(t *testing.T) {
	f := start(t, Options{Nodes: 3, Version: "5.10.4"})
	f.sim.Step()
	cases := []struct {
		mode                     string
		connLabels, vmLabels     string
		connSeries, expirySeries int
	}{
		{"", "", "", 1, 1},
		{"?mode=bogus", "", "", 1, 1},
		{"?mode=all_nodes_aggregated", "", "node", 1, 1},
		{"?mode=all_nodes_unaggregated", "node", "node", 3, 1},
	}
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			r := f.req(t, "GET", "/api/v5/prometheus/stats"+c.mode, "", "")
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Fatalf("%d %s", r.status, r.header.Get("Content-Type"))
			}
			if !strings.Contains(string(r.body), "# TYPE emqx_connections_count gauge\n# HELP emqx_connections_count \nemqx_connections_count") &&
				c.connLabels == "" {
				t.Fatalf("family layout differs from EMQX's:\n%.400s", r.body)
			}
			fams := parseProm(t, r.body)
			conn := fams["emqx_connections_count"].GetMetric()
			if len(conn) != c.connSeries || labels(conn[0]) != c.connLabels {
				t.Fatalf("emqx_connections_count: %d series labels %q", len(conn), labels(conn[0]))
			}
			vm := fams["emqx_vm_total_memory"].GetMetric()
			if labels(vm[0]) != c.vmLabels {
				t.Fatalf("emqx_vm_total_memory labels %q, want %q", labels(vm[0]), c.vmLabels)
			}
			if n := len(fams["emqx_license_expiry_at"].GetMetric()); n != c.expirySeries {
				t.Fatalf("emqx_license_expiry_at series %d", n)
			}
			for _, name := range []string{"emqx_messages_received", "emqx_cluster_nodes_running", "emqx_license_max_sessions",
				"emqx_live_connections_count", "emqx_cluster_sessions_count", "emqx_packets_connack_auth_error"} {
				if fams[name] == nil {
					t.Fatalf("family %s missing", name)
				}
			}
			if fams["emqx_messages_received"].GetType() != dto.MetricType_COUNTER {
				t.Fatalf("emqx_messages_received is not a counter")
			}
		})
	}
	// Aggregated equals the sum of the per-node series.
	agg := parseProm(t, f.req(t, "GET", "/api/v5/prometheus/stats?mode=all_nodes_aggregated", "", "").body)
	un := parseProm(t, f.req(t, "GET", "/api/v5/prometheus/stats?mode=all_nodes_unaggregated", "", "").body)
	var sum float64
	for _, m := range un["emqx_connections_count"].GetMetric() {
		sum += m.GetGauge().GetValue()
	}
	if got := agg["emqx_connections_count"].GetMetric()[0].GetGauge().GetValue(); got != sum || sum == 0 {
		t.Fatalf("aggregated %v, sum of nodes %v", got, sum)
	}
}

func TestPrometheusDataIntegration(t *testing.T) {
	f := start(t, Options{Nodes: 2, Rules: 4, Connectors: 3, Version: "5.8.9"})
	f.sim.Step()
	if err := f.sim.FailConnector("http:conn_0001", "econnrefused", "emqx@10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	node := parseProm(t, f.req(t, "GET", "/api/v5/prometheus/data_integration", "", "").body)
	agg := parseProm(t, f.req(t, "GET", "/api/v5/prometheus/data_integration?mode=all_nodes_aggregated", "", "").body)
	un := parseProm(t, f.req(t, "GET", "/api/v5/prometheus/data_integration?mode=all_nodes_unaggregated", "", "").body)
	value := func(fams map[string]*dto.MetricFamily, name, id, node string) float64 {
		for _, m := range fams[name].GetMetric() {
			var gotID, gotNode string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "id":
					gotID = l.GetValue()
				case "node":
					gotNode = l.GetValue()
				}
			}
			if gotID == id && gotNode == node {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
		t.Fatalf("%s{id=%q,node=%q} missing", name, id, node)
		return 0
	}
	if value(node, "emqx_connector_status", "http:conn_0001", "") != 1 {
		t.Fatal("node mode reads the local (first) node, where the connector is up")
	}
	if value(agg, "emqx_connector_status", "http:conn_0001", "") != 0 {
		t.Fatal("aggregated status is a logical AND over nodes")
	}
	if value(un, "emqx_connector_status", "http:conn_0001", "emqx@10.0.0.2") != 0 ||
		value(un, "emqx_connector_status", "http:conn_0001", "emqx@10.0.0.1") != 1 {
		t.Fatal("unaggregated status per node")
	}
	if value(node, "emqx_rules_count", "", "") != 4 || value(node, "emqx_connectors_count", "", "") != 3 {
		t.Fatal("overview counts")
	}
	if fams := un["emqx_rule_actions_discarded"]; fams == nil {
		t.Fatal("5.8.9 has emqx_rule_actions_discarded")
	}
	ru := f.sim.rules[0].id
	if labels(un["emqx_rule_matched"].GetMetric()[0]) != "node,id" {
		t.Fatalf("unaggregated labels must put node first: %q", labels(un["emqx_rule_matched"].GetMetric()[0]))
	}
	sum := value(un, "emqx_rule_matched", ru, "emqx@10.0.0.1") + value(un, "emqx_rule_matched", ru, "emqx@10.0.0.2")
	if value(agg, "emqx_rule_matched", ru, "") != sum {
		t.Fatal("aggregated counter is the sum over nodes")
	}
	j := f.req(t, "GET", "/api/v5/prometheus/data_integration?mode=all_nodes_unaggregated", "", "", "Accept", "application/json").object(t)
	rules := j["rules"].([]any)
	if len(rules) != 8 || rules[0].(map[string]any)["node"] == nil {
		t.Fatalf("unaggregated JSON: %d rule items, first %v", len(rules), rules[0])
	}
}

// TestPrometheusAuthModes: /prometheus/auth labels authenticators by id and
// authorization sources by type, with a node label per node only in
// all_nodes_unaggregated (emqx-api.md §7.3).
func TestPrometheusAuthModes(t *testing.T) {
	f := start(t, Options{Nodes: 3})
	f.sim.Step()
	for _, c := range []struct {
		mode         string
		authn, authz string
		series       int
	}{
		{"?mode=all_nodes_aggregated", "id", "type", 1},
		{"", "id", "type", 1},
		{"?mode=all_nodes_unaggregated", "node,id", "node,type", 3},
	} {
		t.Run(c.mode, func(t *testing.T) {
			r := f.req(t, "GET", "/api/v5/prometheus/auth"+c.mode, "", "")
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
				t.Fatalf("%d %s", r.status, r.header.Get("Content-Type"))
			}
			fams := parseProm(t, r.body)
			for name, want := range map[string]string{"emqx_authn_enable": c.authn, "emqx_authn_status": c.authn,
				"emqx_authz_enable": c.authz, "emqx_authz_status": c.authz} {
				ms := fams[name].GetMetric()
				if len(ms) == 0 {
					t.Fatalf("no %s series", name)
				}
				if labels(ms[0]) != want {
					t.Fatalf("%s: labels %q, want %q", name, labels(ms[0]), want)
				}
			}
			if n := len(fams["emqx_authn_status"].GetMetric()); n != c.series {
				t.Fatalf("emqx_authn_status: %d series, want %d", n, c.series)
			}
		})
	}
}

// TestAuthBackendFault: an authenticator failed on one node through /sim/
// reads 0 in emqx_authn_status on that node only, 0 aggregated (connected
// nowhere but on every node is not connected) and stays enabled; an
// authorization source fails by type; healed, both read 1 again.
func TestAuthBackendFault(t *testing.T) {
	f := start(t, Options{Nodes: 3})
	f.sim.Step()
	if r := f.req(t, "POST", "/sim/authentication/password_based:built_in_database/fail", "", `{"nodes":["emqx@10.0.0.2"]}`); r.status != 204 {
		t.Fatalf("fail authenticator: %d %s", r.status, r.body)
	}
	if r := f.req(t, "POST", "/sim/authorization/sources/file/fail", "", ""); r.status != 204 {
		t.Fatalf("fail authorization source: %d %s", r.status, r.body)
	}
	wantError(t, f.req(t, "POST", "/sim/authentication/password_based:http/fail", "", ""), 404, "NOT_FOUND",
		`fail auth backend: "password_based:http": unknown authentication or authorization backend`)
	wantError(t, f.req(t, "POST", "/sim/authorization/sources/file/fail", "", `{"nodes":["emqx@9.9.9.9"]}`), 404, "NOT_FOUND",
		`fail auth backend "file" on "emqx@9.9.9.9": unknown node`)
	values := func(mode, name string) map[string]float64 {
		out := map[string]float64{}
		for _, m := range parseProm(t, f.req(t, "GET", "/api/v5/prometheus/auth"+mode, "", "").body)[name].GetMetric() {
			k := ""
			for _, l := range m.GetLabel() {
				k += l.GetValue() + " "
			}
			out[strings.TrimSpace(k)] = m.GetGauge().GetValue()
		}
		return out
	}
	un := values("?mode=all_nodes_unaggregated", "emqx_authn_status")
	if un["emqx@10.0.0.1 password_based:built_in_database"] != 1 || un["emqx@10.0.0.2 password_based:built_in_database"] != 0 {
		t.Fatalf("unaggregated authn status %v, want 0 on emqx@10.0.0.2 only", un)
	}
	if agg := values("?mode=all_nodes_aggregated", "emqx_authn_status"); agg["password_based:built_in_database"] != 0 {
		t.Fatalf("aggregated authn status %v, want 0", agg)
	}
	if en := values("?mode=all_nodes_aggregated", "emqx_authn_enable"); en["password_based:built_in_database"] != 1 {
		t.Fatalf("authn enable %v, want still 1", en)
	}
	if agg := values("?mode=all_nodes_aggregated", "emqx_authz_status"); agg["file"] != 0 || agg["built_in_database"] != 1 {
		t.Fatalf("aggregated authz status %v, want file 0, built_in_database 1", agg)
	}
	_ = f.req(t, "POST", "/sim/authentication/password_based:built_in_database/heal", "", "")
	_ = f.req(t, "POST", "/sim/authorization/sources/file/heal", "", "")
	if agg := values("?mode=all_nodes_aggregated", "emqx_authn_status"); agg["password_based:built_in_database"] != 1 {
		t.Fatalf("healed authn status %v", agg)
	}
	if agg := values("?mode=all_nodes_aggregated", "emqx_authz_status"); agg["file"] != 1 {
		t.Fatalf("healed authz status %v", agg)
	}
}
