package dashboards

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/ecpio/ecp/agentproto/series"
)

var update = flag.Bool("update", false, "rewrite the generated dashboard files")

// TestGenerated regenerates every dashboard and compares it with the
// committed file Grafana's file provisioning loads.
func TestGenerated(t *testing.T) {
	for _, s := range Specs() {
		t.Run(s.Name, func(t *testing.T) {
			got, err := s.JSON(Params{})
			if err != nil {
				t.Fatal(err)
			}
			path := s.Name + ".json"
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./dashboards -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from the generated dashboard; run go test ./dashboards -update and review the diff", path)
			}
		})
	}
}

// board is the part of Grafana's dashboard JSON the checks read.
type board struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Panels        []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
	Templating struct {
		List []struct {
			Name    string `json:"name"`
			Type    string `json:"type"`
			Query   any    `json:"query"`
			Hide    int    `json:"hide"`
			Current struct {
				Value any `json:"value"`
			} `json:"current"`
		} `json:"list"`
	} `json:"templating"`
}

func decode(t *testing.T, s Spec, p Params) board {
	t.Helper()
	b, err := s.JSON(p)
	if err != nil {
		t.Fatal(err)
	}
	var d board
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", s.Name, err)
	}
	return d
}

// exported are the series the agent and ecp export, with their labels:
// the agent's golden /metrics output plus ecp_cluster_state. Every agent
// series also carries project and cluster, stamped by ecp.
func exported(t *testing.T) map[string]map[string]bool {
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
	out := map[string]map[string]bool{
		series.ClusterState: {series.LabelProject: true, series.LabelCluster: true, series.LabelState: true},
	}
	for name, mf := range families {
		labels := map[string]bool{series.LabelProject: true, series.LabelCluster: true}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[name] = labels
	}
	// The series the alert rules read must be among them, or this check
	// would test against the wrong list.
	for _, s := range []string{series.RuleEnabled, series.RuleFailed, series.RuleActionsFailed,
		series.ConnectorEnabled, series.ConnectorStatus, series.ActionEnabled, series.ActionStatus,
		series.NodeRunning, series.NodeConnections, series.DynamicMaxConnections, series.LicenseMaxConnections,
		series.NodeLoad1, series.NodeLoad5, series.NodeLoad15, series.NodeMemoryTotal, series.NodeMemoryUsed,
		series.ConnectAuthFailures, series.PublishAuthFailures, series.SubscribeAuthFailures,
		series.AuthnConnected, series.AuthnEnabled, series.AuthzConnected, series.AuthzEnabled} {
		if out[s] == nil {
			t.Fatalf("agentproto/series names %s, which the agent's golden output lacks", s)
		}
	}
	return out
}

// grafanaVars stand in for Grafana's own variables so the parser sees
// what Prometheus will.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h")

func TestDashboards(t *testing.T) {
	series := exported(t)
	used := map[string]bool{}
	for _, p := range []Params{{}, {Project: "0123456789abcdef", ProjectName: "Plant A"}} {
		for _, s := range Specs() {
			t.Run(s.Name+"/"+p.Project, func(t *testing.T) {
				d := decode(t, s, p)
				if d.SchemaVersion < 36 {
					t.Errorf("schemaVersion %d; want the modern schema (36+)", d.SchemaVersion)
				}
				if d.UID != s.UID(p) || len(d.UID) > 40 || d.Title != s.Title(p) {
					t.Errorf("uid %q title %q; want %q (≤ 40 characters) and %q", d.UID, d.Title, s.UID(p), s.Title(p))
				}
				vars := map[string]string{}
				for _, v := range d.Templating.List {
					vars[v.Name] = v.Type
				}
				if want := map[string]string{"datasource": "datasource", "project": "query", "cluster": "query"}; !equalMaps(vars, want) {
					t.Errorf("variables %v; want %v", vars, want)
				}
				ids := map[int]bool{}
				targets := 0
				for _, panel := range d.Panels {
					if panel.ID == 0 || ids[panel.ID] {
						t.Errorf("panel %q: id %d is missing or not unique", panel.Title, panel.ID)
					}
					ids[panel.ID] = true
					for _, tg := range panel.Targets {
						targets++
						checkExpr(t, panel.Title, tg.Expr, series, used)
					}
				}
				if targets == 0 {
					t.Error("no queries")
				}
			})
		}
	}
	// Every series the agent exports for operators is shown somewhere.
	for name := range series {
		switch name {
		case "emqx_last_collection_timestamp_seconds", "emqx_license_info", "emqx_source_enabled",
			"emqx_connector_enabled", "emqx_action_enabled":
			// Metadata, or read only as the "unless disabled" side.
			continue
		}
		if !used[name] && !strings.HasSuffix(name, "_enabled") {
			t.Errorf("no dashboard shows %s", name)
		}
	}
}

// checkExpr parses expr and checks that it reads only exported series,
// matches and groups only on their labels, and selects by project and
// cluster.
func checkExpr(t *testing.T, panel, expr string, series map[string]map[string]bool, used map[string]bool) {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		t.Errorf("panel %q: %v\n%s", panel, err, expr)
		return
	}
	labelsOK := func(names []string, allowed map[string]bool) []string {
		var bad []string
		for _, n := range names {
			if !allowed[n] && n != model.MetricNameLabel {
				bad = append(bad, n)
			}
		}
		return bad
	}
	all := map[string]bool{}
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			labels := series[vs.Name]
			if labels == nil {
				t.Errorf("panel %q reads %q, which neither the agent nor ecp exports", panel, vs.Name)
				return nil
			}
			used[vs.Name] = true
			var names []string
			project, cluster := false, false
			for _, m := range vs.LabelMatchers {
				names = append(names, m.Name)
				project = project || (m.Name == "project" && m.Value == "$project")
				cluster = cluster || (m.Name == "cluster" && m.Value == "$cluster")
			}
			if bad := labelsOK(names, labels); len(bad) > 0 {
				t.Errorf("panel %q: %s has no labels %v", panel, vs.Name, bad)
			}
			if !project || !cluster {
				t.Errorf("panel %q: %s is not selected by $project and $cluster", panel, vs.Name)
			}
			for l := range labels {
				all[l] = true
			}
		}
		return nil
	})
	// Grouping and matching labels must exist on some series read (or be
	// one the expression makes itself).
	all["what"] = true
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.AggregateExpr:
			if bad := labelsOK(n.Grouping, all); len(bad) > 0 {
				t.Errorf("panel %q groups by unknown labels %v", panel, bad)
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				if bad := labelsOK(n.VectorMatching.MatchingLabels, all); len(bad) > 0 {
					t.Errorf("panel %q matches on unknown labels %v", panel, bad)
				}
			}
		}
		return nil
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestProjectCopy checks what ecp provisions per project: the project
// preset and hidden, distinct uids, links into the project's own copies.
func TestProjectCopy(t *testing.T) {
	p := Params{Project: "0123456789abcdef", ProjectName: "Plant A"}
	uids := map[string]bool{}
	for _, s := range Specs() {
		d := decode(t, s, p)
		uids[d.UID] = true
		for _, v := range d.Templating.List {
			if v.Name != "project" {
				continue
			}
			if v.Current.Value != p.Project || v.Hide != 2 {
				t.Errorf("%s: project variable current %v hide %d; want %q hidden", s.Name, v.Current.Value, v.Hide, p.Project)
			}
			if q, _ := v.Query.(string); !strings.Contains(q, `project="0123456789abcdef"`) {
				t.Errorf("%s: project variable query %v does not offer only the project", s.Name, v.Query)
			}
		}
		b, _ := s.JSON(p)
		if strings.Contains(string(b), "/d/ecp-cluster?") {
			t.Errorf("%s links to the shared cluster dashboard, not the project's copy", s.Name)
		}
	}
	if len(uids) != len(Specs()) {
		t.Errorf("uids %v are not distinct", slices.Collect(func(yield func(string) bool) {
			for u := range uids {
				if !yield(u) {
					return
				}
			}
		}))
	}
	long := strings.Repeat("a", 64)
	if k := ProjectKey(long); len(k) != 20 || k == ProjectKey(long+"b") {
		t.Errorf("ProjectKey of a long id: %q", k)
	}
}
