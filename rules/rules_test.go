package rules

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden rule files in testdata/")

// testParams are the two projects the promtool cases in testdata/ run
// against: n1 fires and resolves at once, n3 needs three evaluations each
// way. The interval is one minute so the cases read in whole minutes.
var testParams = map[string]Params{
	"n1.rules.yml": {
		Project: "n1", Interval: time.Minute, TriggerCount: 1, RecoveryCount: 1,
		Severity: "critical", ExternalURL: "https://ecp.example.test/", Rules: everyRule(),
		ProjectName: "Line One", OrganizationName: "Acme Manufacturing",
		Clusters: []Cluster{{ID: "c1", Name: "Plant North"}},
	},
	"n3.rules.yml": {
		Project: "n3", Interval: time.Minute, TriggerCount: 3, RecoveryCount: 3,
		Severity: "warning", ExternalURL: "https://ecp.example.test", Rules: everyRule(),
		ProjectName: "Line Three", OrganizationName: "Acme Manufacturing",
		Clusters: []Cluster{{ID: "c2", Name: "Plant South"}, {ID: "c3", Name: "Plant East"}},
	},
}

// everyRule switches every catalogue entry on at its default threshold.
func everyRule() map[string]RuleParams {
	m := map[string]RuleParams{}
	for _, e := range Catalogue {
		var rp RuleParams
		if e.Threshold != nil {
			rp.Threshold = e.Threshold.Default
		}
		m[e.ID] = rp
	}
	return m
}

func TestGoldenRuleFiles(t *testing.T) {
	for name, p := range testParams {
		t.Run(name, func(t *testing.T) {
			f, err := Project(p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./rules -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s differs from the rendered rules; run go test ./rules -update and review the diff\ngot:\n%s", path, got)
			}
		})
	}
}

// promtool finds Debian's promtool or fails the test with the install
// command: CI must run these checks, never skip them.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): install it with `bash scripts/install-prometheus.sh`", err)
	}
	return p
}

func TestPromtoolCheckRules(t *testing.T) {
	bin := promtool(t)
	for name := range testParams {
		t.Run(name, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), bin, "check", "rules", filepath.Join("testdata", name)).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool check rules: %v\n%s", err, out)
			}
		})
	}
}

// TestPromtoolTestRules runs every case in testdata/: one file per alert
// kind, showing it fire after N bad evaluations and resolve after M good
// ones, for counts 1 and 3.
func TestPromtoolTestRules(t *testing.T) {
	bin := promtool(t)
	cases, err := filepath.Glob(filepath.Join("testdata", "*.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[strings.TrimSuffix(filepath.Base(c), ".test.yml")] = true
		t.Run(filepath.Base(c), func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), bin, "test", "rules", c).CombinedOutput()
			if err != nil {
				t.Fatalf("promtool test rules: %v\n%s", err, out)
			}
		})
	}
	for _, a := range Alerts() {
		if !covered[a] {
			t.Errorf("alert %s has no promtool case testdata/%s.test.yml", a, a)
		}
	}
}

func TestCountDurations(t *testing.T) {
	for _, tc := range []struct {
		trigger, recovery       int
		wantFor, wantKeepFiring string
	}{
		{1, 1, "", ""},
		{2, 1, "15s", ""},
		{1, 5, "", "1m"},
		{3, 3, "30s", "30s"},
		{100, 100, "24m45s", "24m45s"},
	} {
		t.Run(tc.wantFor+"/"+tc.wantKeepFiring, func(t *testing.T) {
			f, err := Project(Params{Project: "p", TriggerCount: tc.trigger, RecoveryCount: tc.recovery,
				Severity: "warning", ExternalURL: "http://127.0.0.1:8080", Rules: everyRule()})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range f.Groups[0].Rules {
				if r.For != tc.wantFor || r.KeepFiringFor != tc.wantKeepFiring {
					t.Fatalf("%s: for %q keep_firing_for %q, want %q %q", r.Alert, r.For, r.KeepFiringFor, tc.wantFor, tc.wantKeepFiring)
				}
			}
			out, err := Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantFor == "" && bytes.Contains(out, []byte(" for:")) {
				t.Fatalf("count 1 must leave for out:\n%s", out)
			}
			if tc.wantKeepFiring == "" && bytes.Contains(out, []byte("keep_firing_for:")) {
				t.Fatalf("count 1 must leave keep_firing_for out:\n%s", out)
			}
		})
	}
}

// TestCounterKindsLookThreeIntervalsBack: every range a rendered rule
// reads, and the window its description names, is three intervals, so that
// an evaluation with the newest sample still on its way holds two that
// arrived (e2e TestRateAlertsFireWhileNewestSampleInFlight shows it on
// Prometheus). Over two, the rate kinds never fired.
func TestCounterKindsLookThreeIntervalsBack(t *testing.T) {
	f, err := Project(Params{Project: "p", Interval: 15 * time.Second, TriggerCount: 1, RecoveryCount: 1,
		Severity: "warning", ExternalURL: "http://127.0.0.1:8080", Rules: everyRule()})
	if err != nil {
		t.Fatal(err)
	}
	ranges := regexp.MustCompile(`\[([^\]]*)\]`)
	var counters []string
	for _, r := range f.Groups[0].Rules {
		found := ranges.FindAllStringSubmatch(r.Expr, -1)
		if len(found) == 0 {
			continue
		}
		counters = append(counters, r.Alert)
		for _, m := range found {
			if m[1] != "45s" {
				t.Errorf("%s reads a range of %s, want 45s (three intervals of 15s):\n%s", r.Alert, m[1], r.Expr)
			}
		}
		if d := r.Annotations[AnnotationDescription]; !strings.Contains(d, " the last 45s") {
			t.Errorf("%s: description %q does not name the 45s window", r.Alert, d)
		}
	}
	want := []string{AlertRuleAbnormal, AlertRuleFailures, AlertActionFailures, AlertRuleRateDrop,
		AlertConnectAuthFailures, AlertPublishAuthFailures, AlertSubscribeAuthFailures}
	if !slices.Equal(counters, want) {
		t.Fatalf("kinds reading a range: %v, want %v", counters, want)
	}
}

func TestParamsValidate(t *testing.T) {
	good := Params{Project: "p-1", TriggerCount: 1, RecoveryCount: 1, Severity: "info", ExternalURL: "https://ecp.example.test"}
	for _, tc := range []struct {
		name   string
		change func(*Params)
		want   string
	}{
		{"project with quote", func(p *Params) { p.Project = `p"1` }, "project id"},
		{"empty project", func(p *Params) { p.Project = "" }, "project id"},
		{"sub-second interval", func(p *Params) { p.Interval = 1500 * time.Millisecond }, "interval"},
		{"trigger 0", func(p *Params) { p.TriggerCount = 0 }, "trigger count"},
		{"recovery 101", func(p *Params) { p.RecoveryCount = 101 }, "recovery count"},
		{"severity with space", func(p *Params) { p.Severity = "very bad" }, "severity"},
		{"connections above 100%", func(p *Params) { p.Rules = map[string]RuleParams{CatalogueConnections: {Threshold: 101}} }, "rule connections: threshold 101: want 1 to 100 (percent)"},
		{"threshold on a rule without one", func(p *Params) { p.Rules = map[string]RuleParams{CatalogueNodeDown: {Threshold: 1}} }, "rule nodeDown: threshold 1: the rule has none"},
		{"rule trigger 101", func(p *Params) { p.Rules = map[string]RuleParams{CatalogueNodeDown: {TriggerCount: 101}} }, "rule nodeDown: trigger count"},
		{"rule severity with space", func(p *Params) { p.Rules = map[string]RuleParams{CatalogueNodeDown: {Severity: "a b"}} }, "rule nodeDown: severity"},
		{"unknown rule", func(p *Params) { p.Rules = map[string]RuleParams{"cpu": {}} }, "rule cpu: not in the catalogue"},
		{"relative URL", func(p *Params) { p.ExternalURL = "/ecp" }, "external URL"},
		{"template in URL", func(p *Params) { p.ExternalURL = "https://x.test/{{ . }}" }, "'{'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := good
			tc.change(&p)
			_, err := Project(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
	if _, err := Project(good); err != nil {
		t.Fatalf("good params refused: %v", err)
	}
}

// TestCatalogueEntriesSwitchTheirAlerts: each entry on alone renders
// exactly its alert kinds, with its own severity and counts where it sets
// them and the project's otherwise.
func TestCatalogueEntriesSwitchTheirAlerts(t *testing.T) {
	for _, e := range Catalogue {
		t.Run(e.ID, func(t *testing.T) {
			rp := everyRule()[e.ID]
			rp.Severity, rp.TriggerCount = "info", 4
			f, err := Project(Params{Project: "p", TriggerCount: 1, RecoveryCount: 2, Severity: "critical",
				ExternalURL: "http://127.0.0.1:8080", Rules: map[string]RuleParams{e.ID: rp}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range f.Groups[0].Rules {
				got = append(got, r.Alert)
				if r.Labels[LabelSeverity] != "info" || r.For != "45s" || r.KeepFiringFor != "15s" {
					t.Errorf("%s: severity %q for %q keep_firing_for %q, want info 45s 15s", r.Alert, r.Labels[LabelSeverity], r.For, r.KeepFiringFor)
				}
			}
			if !slices.Equal(got, e.Alerts) {
				t.Fatalf("rendered %v, want %v", got, e.Alerts)
			}
		})
	}
	f, err := Project(Params{Project: "p", TriggerCount: 1, RecoveryCount: 1, Severity: "info", ExternalURL: "http://127.0.0.1:8080"})
	if err != nil || len(f.Groups[0].Rules) != 0 {
		t.Fatalf("no entry on rendered %v (%v), want no rule", f.Groups, err)
	}
}

// TestEveryAlertHasOneEntry: the catalogue names every kind exactly once.
func TestEveryAlertHasOneEntry(t *testing.T) {
	var listed []string
	for _, e := range Catalogue {
		listed = append(listed, e.Alerts...)
	}
	if got, want := slices.Sorted(slices.Values(listed)), slices.Sorted(slices.Values(Alerts())); !slices.Equal(got, want) {
		t.Fatalf("catalogue lists %v, kinds are %v", got, want)
	}
}

// issue #12 defect 3: alerts name cluster, project and organization, and
// those names are tenants' input. A name written to look like template
// code, YAML or PromQL must print as itself in every annotation: promtool
// loads the file and expands the templates exactly as Prometheus does.
func TestJourneyHostileNamesPrintLiterally(t *testing.T) {
	bin := promtool(t)
	hostile := map[string]string{
		"cluster":      "Site \"B\" {{ $labels.id }} $labels.cluster }}\nsecond line: - [x]",
		"project":      `{{ template "x" }} {{ .Value }} ' \" \\`,
		"organization": "{{ $value }} & <b>Acme</b> #",
	}
	p := Params{Project: "h1", Interval: time.Minute, TriggerCount: 1, RecoveryCount: 1, Severity: "critical",
		ExternalURL: "https://ecp.example.test", ProjectName: hostile["project"], OrganizationName: hostile["organization"], Rules: everyRule(),
		Clusters: []Cluster{{ID: "c1", Name: hostile["cluster"]}, {ID: "c2", Name: "Plain"}}}
	dir, file, b := renderRules(t, p)
	if out, err := exec.CommandContext(t.Context(), bin, "check", "rules", filepath.Join(dir, file)).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, b)
	}
	name := hostile["cluster"]
	promtoolTest(t, bin, dir, file, map[string]any{
		"interval": "1m",
		"input_series": []any{
			map[string]string{"series": `emqx_node_running{project="h1", cluster="c1", node="emqx@a"}`, "values": "0 0"},
		},
		"alert_rule_test": []any{map[string]any{
			"eval_time": "1m", "alertname": AlertNodeDown,
			"exp_alerts": []any{map[string]any{
				"exp_labels": map[string]string{"severity": "critical", "project": "h1", "cluster": "c1", "node": "emqx@a"},
				"exp_annotations": map[string]string{
					AnnotationSummary:          "EMQX node emqx@a is down in cluster " + name + ".",
					AnnotationDescription:      "EMQX node emqx@a of cluster " + name + " in project " + hostile["project"] + " is stopped.",
					AnnotationLink:             "https://ecp.example.test/clusters/c1",
					AnnotationClusterName:      name,
					AnnotationProjectName:      hostile["project"],
					AnnotationOrganizationName: hostile["organization"],
				},
			}},
		}},
	})
}

// renderRules writes p's rule file into a new temporary directory and
// returns the directory, the file's name and its content.
func renderRules(t *testing.T, p Params) (dir, file string, content []byte) {
	t.Helper()
	f, err := Project(p)
	if err != nil {
		t.Fatal(err)
	}
	content, err = Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	dir, file = t.TempDir(), p.Project+".rules.yml"
	if err := os.WriteFile(filepath.Join(dir, file), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file, content
}

// promtoolTest runs `promtool test rules` with the test groups tests
// (evaluated every minute) against the rule file in dir.
func promtoolTest(t *testing.T, bin, dir, file string, tests ...any) {
	t.Helper()
	tb, err := yaml.Marshal(map[string]any{"rule_files": []string{file}, "evaluation_interval": "1m", "tests": tests})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unit.test.yml"), tb, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(t.Context(), bin, "test", "rules", filepath.Join(dir, "unit.test.yml")).CombinedOutput(); err != nil {
		rules, _ := os.ReadFile(filepath.Join(dir, file))
		t.Fatalf("promtool test rules: %v\n%s\nrules:\n%s", err, out, rules)
	}
}
