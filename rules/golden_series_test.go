package rules

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/ecpio/ecp/agentproto/series"
)

// goldenScrape is the agent's whole /metrics output after one collection
// from emqx-sim (agent-exporter/collector's TestGoldenMetrics writes it).
func goldenScrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "agent-exporter", "collector", "testdata", "metrics.golden.prom"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tp := expfmt.NewTextParser(model.UTF8Validation)
	families, err := tp.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// TestRulesReadOnlyExportedSeries: every series a generated rule reads (every
// entry of the catalogue on) is in the agent's golden scrape against emqx-sim, or is ecp's
// own ecp_cluster_state, and every label it matches on is one the series
// has. It failed while the EMQXAlarm rule read emqx_alarm_active, which the
// agent did not produce.
func TestRulesReadOnlyExportedSeries(t *testing.T) {
	labels := map[string]map[string]bool{
		series.ClusterState: {series.LabelProject: true, series.LabelCluster: true, series.LabelState: true},
	}
	for name, mf := range goldenScrape(t) {
		l := map[string]bool{series.LabelProject: true, series.LabelCluster: true}
		for _, m := range mf.GetMetric() {
			for _, p := range m.GetLabel() {
				l[p.GetName()] = true
			}
		}
		labels[name] = l
	}
	p := testParams["n3.rules.yml"]
	f, err := Project(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(f.Groups[0].Rules), len(Alerts()); got != want {
		t.Fatalf("%d rules rendered, want every one of the %d kinds", got, want)
	}
	read := 0
	for _, r := range f.Groups[0].Rules {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
		if err != nil {
			t.Fatalf("%s: %v", r.Alert, err)
		}
		parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			read++
			have := labels[vs.Name]
			if have == nil {
				t.Errorf("%s reads %s, which the agent's golden scrape lacks (and ecp does not export)", r.Alert, vs.Name)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name != model.MetricNameLabel && !have[m.Name] {
					t.Errorf("%s matches %s on label %q, which it does not have (it has %v)", r.Alert, vs.Name, m.Name, slices.Sorted(maps.Keys(have)))
				}
			}
			return nil
		})
	}
	if read == 0 {
		t.Fatal("no series read: the check tested nothing")
	}
}

// TestEMQXAlarmFiresOnGoldenSeries feeds promtool every series of the
// agent's golden scrape (stamped with project and cluster, as ecp does on
// remote write) and expects the "EMQX alert push" rule to fire once per
// alarm emqx-sim held active, and the authnResource rule once for the
// authenticator emqx-sim had lost its backend on one node: both work end
// to end on what the agent really exports, not on a series fed by hand.
func TestEMQXAlarmFiresOnGoldenSeries(t *testing.T) {
	bin := promtool(t)
	p := testParams["n1.rules.yml"]
	cluster := p.Clusters[0]
	dir, file, _ := renderRules(t, p)
	var input, alerts, authn []any
	annotations := func(summary, description string) map[string]string {
		return map[string]string{
			AnnotationSummary: summary, AnnotationDescription: description,
			AnnotationLink:             "https://ecp.example.test/clusters/" + cluster.ID,
			AnnotationClusterName:      cluster.Name,
			AnnotationProjectName:      p.ProjectName,
			AnnotationOrganizationName: p.OrganizationName,
		}
	}
	for name, mf := range goldenScrape(t) {
		for _, m := range mf.GetMetric() {
			l := map[string]string{series.LabelProject: p.Project, series.LabelCluster: cluster.ID}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
			input = append(input, map[string]string{"series": name + labelString(l), "values": fmt.Sprintf("%g %g", v, v)})
			if name == series.AuthnConnected && v == 0 {
				id := l[series.LabelID]
				authn = append(authn, map[string]any{
					"exp_labels": map[string]string{LabelSeverity: p.Severity, series.LabelProject: p.Project,
						series.LabelCluster: cluster.ID, series.LabelID: id},
					"exp_annotations": annotations("EMQX authenticator "+id+" is not connected in cluster "+cluster.Name+".",
						"Authenticator "+id+" of cluster "+cluster.Name+" in project "+p.ProjectName+
							" is enabled but not connected on every node: clients it should check cannot log in."),
				})
			}
			if name != series.AlarmActive {
				continue
			}
			alarm, node := l[series.LabelName], l[series.LabelNode]
			alerts = append(alerts, map[string]any{
				"exp_labels": map[string]string{LabelSeverity: p.Severity, series.LabelProject: p.Project,
					series.LabelCluster: cluster.ID, series.LabelName: alarm, series.LabelNode: node},
				"exp_annotations": annotations("EMQX alarm "+alarm+" is active in cluster "+cluster.Name+".",
					"EMQX raised its alarm "+alarm+" on cluster "+cluster.Name+" (node "+node+") in project "+p.ProjectName+"."),
			})
		}
	}
	if len(alerts) == 0 {
		t.Fatalf("the golden scrape has no %s series: the agent exports no EMQX alarm", series.AlarmActive)
	}
	if len(authn) == 0 {
		t.Fatalf("the golden scrape has no %s series at 0: no authenticator failed", series.AuthnConnected)
	}
	promtoolTest(t, bin, dir, file, map[string]any{
		"interval":     "1m",
		"input_series": input,
		"alert_rule_test": []any{
			map[string]any{"eval_time": "1m", "alertname": AlertEMQXAlarm, "exp_alerts": alerts},
			map[string]any{"eval_time": "1m", "alertname": AlertAuthnAbnormal, "exp_alerts": authn},
		},
	})
}

// labelString writes labels as a PromQL selector body, sorted.
func labelString(l map[string]string) string {
	parts := make([]string, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, l[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
