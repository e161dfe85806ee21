package sim

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// field is one expected field: a "/"-separated path into the JSON reply
// (numbers index arrays; keys may contain dots), its JSON type, and the
// versions that serve it (since inclusive, until exclusive; "" = always).
type field struct {
	path, typ, since, until string
}

func fl(path, typ string) field       { return field{path: path, typ: typ} }
func since(path, typ, v string) field { return field{path: path, typ: typ, since: v} }
func until(path, typ, v string) field { return field{path: path, typ: typ, until: v} }
func fieldsOf(typ string, paths ...string) []field {
	out := make([]field, 0, len(paths))
	for _, p := range paths {
		out = append(out, fl(p, typ))
	}
	return out
}

func concat(xs ...[]field) []field {
	var out []field
	for _, x := range xs {
		out = append(out, x...)
	}
	return out
}

func dig(v any, path string) (any, bool) {
	for _, seg := range strings.Split(path, "/") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[seg]; !ok {
				return nil, false
			}
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i >= len(x) {
				return nil, false
			}
			v = x[i]
		default:
			return nil, false
		}
	}
	return v, true
}

func typeMatches(want, got string) bool {
	return want == got || (want == "number" && got == "int")
}

var nodeFields = concat(
	fieldsOf("string", "node", "node_status", "version", "edition", "role", "memory_total", "memory_used",
		"otp_release", "sys_path", "log_path"),
	fieldsOf("int", "uptime", "connections", "live_connections", "cluster_sessions", "max_fds",
		"process_available", "process_used"),
	fieldsOf("number", "load1", "load5", "load15"),
)

func prefixed(prefix string, fs []field) []field {
	out := make([]field, 0, len(fs))
	for _, f := range fs {
		f.path = prefix + f.path
		out = append(out, f)
	}
	return out
}

var statFields = fieldsOf("int", "connections.count", "connections.max", "live_connections.count",
	"live_connections.max", "channels.count", "channels.max", "sessions.count", "sessions.max",
	"cluster_sessions.count", "cluster_sessions.max", "topics.count", "topics.max", "subscriptions.count",
	"subscriptions.max", "subscriptions.shared.count", "subscriptions.shared.max", "subscribers.count",
	"subscribers.max", "suboptions.count", "suboptions.max", "retained.count", "retained.max",
	"delayed.count", "delayed.max", "durable_subscriptions.count")

var metricFields = fieldsOf("int", metricKeys...)

var monitorFields = concat(
	fieldsOf("int", "connections", "live_connections", "subscriptions", "topics", "retained_msg_count",
		"shared_subscriptions", "received_msg_rate", "sent_msg_rate", "dropped_msg_rate", "persisted_rate",
		"validation_succeeded_rate", "validation_failed_rate", "transformation_succeeded_rate",
		"transformation_failed_rate", "license_quota"),
	[]field{since("cluster_sessions", "int", "5.9.0"), since("rules_matched_rate", "int", "5.10.3"),
		since("actions_executed_rate", "int", "5.10.3")},
)

var ruleFields = []field{
	fl("id", "string"), fl("name", "string"), fl("sql", "string"), fl("from", "array"), fl("from/0", "string"),
	fl("actions", "array"), fl("actions/0", "string"), fl("enable", "bool"), fl("description", "string"),
	fl("created_at", "string"), since("last_modified_at", "string", "5.8.5"),
	since("action_details", "array", "5.9.0"), since("action_details/0/type", "string", "5.9.0"),
	since("action_details/0/name", "string", "5.9.0"), since("action_details/0/status", "string", "5.9.0"),
}

var ruleMetricFields = concat(
	fieldsOf("int", "matched", "passed", "failed", "failed.exception", "failed.no_result", "actions.total",
		"actions.success", "actions.failed", "actions.failed.out_of_service", "actions.failed.unknown"),
	fieldsOf("number", "matched.rate", "matched.rate.max", "matched.rate.last5m"),
	[]field{since("actions.discarded", "int", "5.8.1")},
)

var statusFields = []field{
	fl("status", "string"), fl("node_status", "array"), fl("node_status/0/node", "string"),
	fl("node_status/0/status", "string"),
}

var connectorFields = concat(
	[]field{fl("type", "string"), fl("name", "string"), fl("enable", "bool"), fl("description", "string"),
		fl("tags", "array"), fl("actions", "array"), fl("actions/0", "string"), fl("resource_opts", "object"),
		fl("ssl", "object"), fl("url", "string"), since("sources", "array", "5.8.0")},
	statusFields,
)

var actionFields = concat(
	[]field{fl("type", "string"), fl("name", "string"), fl("enable", "bool"), fl("connector", "string"),
		fl("description", "string"), fl("tags", "array"), fl("parameters", "object"),
		fl("resource_opts", "object"), fl("rules", "array"), fl("rules/0", "string"), fl("error", "string"),
		since("created_at", "int", "5.8.5"), since("last_modified_at", "int", "5.8.5")},
	statusFields,
)

var summaryFields = concat(
	[]field{fl("type", "string"), fl("name", "string"), fl("enable", "bool"), fl("description", "string"),
		fl("created_at", "int"), fl("last_modified_at", "int"), fl("rules", "array")},
	statusFields,
)

var actionMetricFields = concat(
	fieldsOf("int", "matched", "success", "failed", "dropped", "dropped.other", "dropped.expired",
		"dropped.queue_full", "dropped.resource_not_found", "dropped.resource_stopped", "retried",
		"late_reply", "received", "inflight", "queuing"),
	fieldsOf("number", "rate", "rate_last5m", "rate_max"),
	[]field{since("queuing_bytes", "int", "5.8.2")},
)

var licenseFields = concat(
	fieldsOf("string", "customer", "email", "deployment", "type", "start_at", "expiry_at"),
	fieldsOf("int", "customer_type", "max_connections"),
	[]field{fl("expiry", "bool"), since("max_sessions", "int", "5.8.5")},
)

type endpointCase struct {
	path   string
	since  string // route exists from this version
	fields []field
}

func endpointTable() []endpointCase {
	const n1 = "emqx@10.0.0.1"
	return []endpointCase{
		{path: "/api/v5/nodes", fields: prefixed("0/", nodeFields)},
		{path: "/api/v5/nodes/" + n1, fields: nodeFields},
		{path: "/api/v5/nodes/" + n1 + "/metrics", fields: append(metricFields, fl("node", "string"))},
		{path: "/api/v5/nodes/" + n1 + "/stats", fields: append(statFields, fl("node", "string"))},
		{path: "/api/v5/cluster", fields: []field{fl("name", "string"), fl("nodes", "array"), fl("nodes/0", "string"), fl("self", "string")}},
		{path: "/api/v5/stats", fields: append(prefixed("0/", statFields), fl("0/node", "string"))},
		{path: "/api/v5/stats?aggregate=true", fields: statFields},
		{path: "/api/v5/metrics", fields: append(prefixed("0/", metricFields), fl("0/node", "string"))},
		{path: "/api/v5/metrics?aggregate=true", fields: metricFields},
		{path: "/api/v5/monitor_current", fields: concat(monitorFields, fieldsOf("int", "subscriptions_ram",
			"subscriptions_durable", "disconnected_durable_sessions"))},
		{path: "/api/v5/monitor_current/nodes/" + n1, fields: append(monitorFields, fl("node_uptime", "int"))},
		{path: "/api/v5/alarms", fields: []field{fl("data", "array"), fl("meta/page", "int"), fl("meta/limit", "int"),
			fl("meta/hasnext", "bool"), fl("meta/count", "int"), fl("data/0/node", "string"), fl("data/0/name", "string"),
			fl("data/0/message", "string"), fl("data/0/details", "object"), fl("data/0/duration", "int"),
			fl("data/0/activate_at", "string")}},
		{path: "/api/v5/api_key", fields: concat(prefixed("0/", fieldsOf("string", "name", "api_key", "expired_at",
			"created_at", "desc", "role")), []field{fl("0/enable", "bool"), fl("0/expired", "bool")})},
		{path: "/api/v5/rules", fields: concat(prefixed("data/0/", ruleFields), []field{fl("meta/page", "int"),
			fl("meta/limit", "int"), fl("meta/hasnext", "bool"), fl("meta/count", "int")})},
		{path: "/api/v5/rules/{rule}", fields: ruleFields},
		{path: "/api/v5/rules/{rule}/metrics", fields: concat([]field{fl("id", "string"), fl("node_metrics", "array"),
			fl("node_metrics/0/node", "string")}, prefixed("metrics/", ruleMetricFields),
			prefixed("node_metrics/0/metrics/", ruleMetricFields))},
		{path: "/api/v5/connectors", fields: prefixed("0/", connectorFields)},
		{path: "/api/v5/connectors/http:conn_0001", fields: connectorFields},
		{path: "/api/v5/actions", fields: prefixed("0/", actionFields)},
		{path: "/api/v5/actions/http:action_0001", fields: actionFields},
		{path: "/api/v5/actions/http:action_0001/metrics", fields: concat(prefixed("metrics/", actionMetricFields),
			[]field{fl("node_metrics/0/node", "string")}, prefixed("node_metrics/0/metrics/", actionMetricFields))},
		{path: "/api/v5/sources", fields: prefixed("0/", actionFields)},
		{path: "/api/v5/sources/mqtt:source_0003/metrics", fields: prefixed("metrics/", actionMetricFields)},
		{path: "/api/v5/actions_summary", since: "5.8.5", fields: prefixed("0/", summaryFields)},
		{path: "/api/v5/sources_summary", since: "5.8.5", fields: prefixed("0/", summaryFields)},
		{path: "/api/v5/license", fields: licenseFields},
		{path: "/api/v5/license/setting", fields: []field{fl("connection_low_watermark", "string"),
			fl("connection_high_watermark", "string"), fl("dynamic_max_connections", "int")}},
		{path: "/api/v5/configs/log", fields: []field{fl("console", "object"), fl("file/default/path", "string"),
			fl("file/default/formatter", "string"), fl("file/default/rotation_count", "int"),
			fl("file/default/enable", "bool"), fl("throttling/time_window", "string")}},
		{path: "/api/v5/status?format=json", fields: []field{fl("node_name", "string"), fl("broker_status", "string"),
			fl("app_status", "string"), until("rel_vsn", "string", "5.10.4"), since("cluster", "string", "5.9.0")}},
		{path: "/api/v5/prometheus/stats", fields: []field{fl("stats/emqx_connections_count", "int"),
			fl("stats/emqx_live_connections_count", "int"), fl("cluster/emqx_cluster_nodes_running", "int"),
			fl("metrics/emqx_vm_total_memory", "int"), fl("messages/emqx_messages_received", "int"),
			fl("license/emqx_license_expiry_at", "int"), fl("packets", "object"), fl("delivery", "object"),
			fl("client", "object"), fl("session", "object"), fl("olp", "object"), fl("acl", "object"),
			fl("authn", "object"), fl("certs", "object"), fl("cluster_rpc", "object"),
			since("license/emqx_license_max_sessions", "int", "5.10.4")}},
		{path: "/api/v5/prometheus/data_integration", fields: []field{
			fl("data_integration_overview/emqx_rules_count", "int"), fl("data_integration_overview/emqx_actions_count", "int"),
			fl("data_integration_overview/emqx_connectors_count", "int"),
			fl("data_integration_overview/emqx_schema_registrys_count", "int"),
			fl("rules/0/id", "string"), fl("rules/0/emqx_rule_enable", "int"), fl("rules/0/emqx_rule_matched", "int"),
			since("rules/0/emqx_rule_actions_discarded", "int", "5.8.1"),
			fl("actions/0/id", "string"), fl("actions/0/emqx_action_status", "int"), fl("actions/0/emqx_action_inflight", "int"),
			fl("connectors/0/id", "string"), fl("connectors/0/emqx_connector_status", "int")}},
	}
}

// TestEndpointFieldsAndTypes serves every endpoint of emqx-api.md and checks
// each listed field's name and JSON type, per version.
func TestEndpointFieldsAndTypes(t *testing.T) {
	for _, version := range []string{"5.7.2", "5.8.0", "5.8.9", "5.9.3", "5.10.4"} {
		t.Run(version, func(t *testing.T) {
			rel, _ := parseRelease(version)
			f := start(t, Options{Version: version, Rules: 12, Connectors: 6,
				APIKeys: []APIKey{{Key: "k1", Secret: "s1", Role: RoleViewer}}})
			f.sim.Step()
			tok := f.admin(t)
			ruleID := f.sim.rules[0].id
			for _, c := range endpointTable() {
				path := strings.ReplaceAll(c.path, "{rule}", ruleID)
				t.Run(path, func(t *testing.T) {
					r := f.req(t, http.MethodGet, path, tok, "", "Accept", "application/json")
					if c.since != "" && !atLeastStr(rel, c.since) {
						wantError(t, r, http.StatusNotFound, "NOT_FOUND", "Request Path Not Found")
						return
					}
					if r.status != http.StatusOK {
						t.Fatalf("status %d: %s", r.status, r.body)
					}
					body := r.json(t)
					for _, fd := range c.fields {
						served := (fd.since == "" || atLeastStr(rel, fd.since)) && (fd.until == "" || !atLeastStr(rel, fd.until))
						v, ok := dig(body, fd.path)
						switch {
						case served && !ok:
							t.Errorf("field %s missing", fd.path)
						case served && !typeMatches(fd.typ, jsonType(v)):
							t.Errorf("field %s is %s (%v), want %s", fd.path, jsonType(v), v, fd.typ)
						case !served && ok:
							t.Errorf("field %s served by %s, want absent", fd.path, version)
						}
					}
				})
			}
		})
	}
}

func atLeastStr(r release, v string) bool {
	o, err := parseRelease(v)
	if err != nil {
		panic(err)
	}
	return r.atLeast(o.major, o.minor, o.patch)
}
