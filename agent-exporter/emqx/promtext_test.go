package emqx

import (
	"bufio"
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestRuleMetricsText(t *testing.T) {
	tests := []struct {
		name, body string
		want       map[string]RuleMetrics
		err        string
	}{
		{
			name: "EMQX's exposition, other families ignored",
			body: "# TYPE emqx_rules_count gauge\n# HELP emqx_rules_count \nemqx_rules_count 2\n" +
				"# TYPE emqx_rule_enable gauge\n# HELP emqx_rule_enable \nemqx_rule_enable{id=\"r1\"} 1\n" +
				"# TYPE emqx_rule_matched counter\n# HELP emqx_rule_matched \nemqx_rule_matched{id=\"r1\"} 10\nemqx_rule_matched{id=\"r2\"} 3\n" +
				"emqx_rule_failed{id=\"r1\"} 2\nemqx_rule_failed_exception{id=\"r1\"} 99\nemqx_rule_actions_failed{id=\"r2\"} 1 1764000000000\n" +
				"emqx_rule_passed{id=\"r1\"} 8\nemqx_rule_actions_total{id=\"r1\"} 8\nemqx_rule_actions_success{id=\"r1\"} 8\n" +
				"emqx_connector_status{id=\"http:c\"} 1\n",
			want: map[string]RuleMetrics{
				"r1": {Matched: 10, Passed: 8, Failed: 2, ActionsTotal: 8, ActionsOK: 8},
				"r2": {Matched: 3, ActionsFailed: 1},
			},
		},
		{
			name: "one series per node sums to the cluster's",
			body: "emqx_rule_matched{node=\"emqx@n1\",id=\"r1\"} 4\nemqx_rule_matched{node=\"emqx@n2\",id=\"r1\"} 6\n",
			want: map[string]RuleMetrics{"r1": {Matched: 10}},
		},
		{
			name: "escaped label values",
			body: `emqx_rule_matched{id="a\"b\\c"} 1` + "\n",
			want: map[string]RuleMetrics{`a"b\c`: {Matched: 1}},
		},
		{name: "a rule series without id", body: "emqx_rule_matched 1\n", err: "line 1: a series without the id label"},
		{name: "an unterminated value", body: "emqx_rule_matched{id=\"r1} 1\n", err: "line 1: unterminated label value"},
		{name: "a bad value", body: "\n\nemqx_rule_failed{id=\"r1\"} many\n", err: `line 3: sample value "many"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ruleMetricsText(strings.NewReader(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for id, m := range tt.want {
				if got[id] != m {
					t.Errorf("rule %q: %+v, want %+v", id, got[id], m)
				}
			}
		})
	}
}

// FuzzRuleMetricsText: whatever a node answers, the parser returns
// counters or an error, never panics.
func FuzzRuleMetricsText(f *testing.F) {
	f.Add([]byte("emqx_rule_matched{id=\"r1\"} 1\n"))
	f.Add([]byte("emqx_rule_failed{node=\"n\",id=\"a\\\\\\\"\"} 2 3\n# TYPE x gauge\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ruleMetricsText(bytes.NewReader(body))
		if err != nil && m != nil {
			t.Fatalf("counters %v returned with error %v", m, err)
		}
	})
}

// TestAuthStatusText: a backend is connected (or enabled) only if every
// node's sample says 1, and a series without its label is refused.
func TestAuthStatusText(t *testing.T) {
	body := []byte(`# TYPE emqx_authn_status gauge
emqx_authn_enable{node="emqx@a",id="password_based:http"} 1
emqx_authn_status{node="emqx@a",id="password_based:http"} 1
emqx_authn_status{node="emqx@b",id="password_based:http"} 0
emqx_authz_enable{type="file"} 0
emqx_authz_status{type="file"} 1
emqx_authn_total{id="password_based:http"} 7
`)
	got, err := authStatusText(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []AuthBackend{
		{ID: "password_based:http", Enabled: true, Connected: false},
		{Authorization: true, ID: "file", Enabled: false, Connected: true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if _, err := authStatusText(strings.NewReader("emqx_authz_status{id=\"file\"} 1\n")); err == nil || err.Error() != "line 1: a series without the type label" {
		t.Fatalf("err = %v, want the missing type label named", err)
	}
}

// TestNodeCPUText: emqx_vm_cpu_use by node, the other series of
// /prometheus/stats skipped, a series without its node label refused.
func TestNodeCPUText(t *testing.T) {
	body := []byte(`# TYPE emqx_vm_cpu_use gauge
# HELP emqx_vm_cpu_use 
emqx_vm_cpu_use{node="emqx@a"} 12.5
emqx_vm_cpu_use{node="emqx@b"} 91
# TYPE emqx_vm_cpu_idle gauge
emqx_vm_cpu_idle{node="emqx@a"} 87.5
emqx_connections_count{node="emqx@a"} 3
`)
	got, err := nodeCPUText(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]float64{"emqx@a": 12.5, "emqx@b": 91}; !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := nodeCPUText(strings.NewReader("emqx_vm_cpu_use 12\n")); err == nil || err.Error() != "line 1: a series without the node label" {
		t.Fatalf("err = %v, want the missing node label named", err)
	}
}

// TestRuleCountersShareThePrefix: ruleMetricsText skips every series not
// named with ruleCounterPrefix before looking its name up, so a counter
// named otherwise would never be read.
func TestRuleCountersShareThePrefix(t *testing.T) {
	for name := range ruleCounters {
		if !strings.HasPrefix(name, ruleCounterPrefix) {
			t.Errorf("rule counter %s lacks the prefix %q", name, ruleCounterPrefix)
		}
	}
}

// TestRuleMetricsTextLongLines: a line longer than the reader's buffer
// is read whole, across buffer fills.
func TestRuleMetricsTextLongLines(t *testing.T) {
	id := strings.Repeat("r", 100)
	body := "# HELP emqx_rule_matched " + strings.Repeat("long help ", 20) + "\n" +
		`emqx_rule_matched{id="` + id + `",node="emqx@a"} 3` + "\n" +
		`emqx_rule_failed{id="` + id + `"} 2`
	got, err := ruleMetricsText(bufio.NewReaderSize(strings.NewReader(body), 16))
	if err != nil {
		t.Fatal(err)
	}
	if want := (RuleMetrics{Matched: 3, Failed: 2}); len(got) != 1 || got[id] != want {
		t.Fatalf("got %+v, want %s: %+v", got, id, want)
	}
}
