package alerting

import (
	"bytes"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amtemplate "github.com/prometheus/alertmanager/template"
	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/alertmanager"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/internal/secret"
	"github.com/ecpio/ecp/rules"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	testSMTPPassword = "smtp-pass-9f3c1b"
	testWebhookToken = "ecp-hook-token-77a2e4"
)

// everyRuleOn is a catalogue with every rule on at its default, but for
// the rules in set.
func everyRuleOn(set map[string]RuleSettings) map[string]RuleSettings {
	m := map[string]RuleSettings{}
	for _, id := range rules.CatalogueIDs() {
		m[id] = RuleSettings{Enabled: true}
	}
	maps.Copy(m, set)
	return m
}

func ptr[T any](v T) *T { return &v }

// testOptions are the options every golden file is rendered with.
func testOptions() Options {
	o := DefaultOptions()
	o.ExternalURL = "https://ecp.example.test"
	o.WebhookURL = "http://127.0.0.1:8080/api/v1/alertmanager/webhook"
	o.WebhookToken = secret.String(testWebhookToken)
	o.SMTP = SMTP{Smarthost: "127.0.0.1:1025", From: "ecp@example.test", RequireTLS: false,
		Username: "ecp", Password: secret.String(testSMTPPassword)}
	// As a system admin of a test deployment, where every sink is on
	// loopback, would set it (PUT /api/v1/system/notification-policy).
	o.Destinations = newTestPolicy(destpolicy.Rules{AllowCIDRs: []string{"127.0.0.0/8"}})
	return o
}

// testProjects cover every shape a project's settings can take.
func testProjects() map[string]Settings {
	return map[string]Settings{
		// Counts of 1: no for, no keep_firing_for; webhooks only.
		"alpha": {Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityCritical,
			Webhooks: []Webhook{{URL: "https://hooks.example.test/alpha"}, {URL: "http://127.0.0.1:9999/sink"}},
			Names:    Names{Organization: "Acme", Project: "Alpha", Clusters: []rules.Cluster{{ID: "c1", Name: "Plant North"}, {ID: "c2", Name: `Hall "2"`}}}},
		// Counts of 3 and 2, e-mail only, EMQX alarms forwarded.
		"beta": {Enabled: true, TriggerCount: 3, RecoveryCount: 2, Severity: SeverityWarning, EMQXAlertPush: true,
			Emails: []string{"ops@example.test", "oncall@example.test"},
			Names:  Names{Organization: "Acme", Project: "Beta", Clusters: []rules.Cluster{{ID: "c3", Name: "Plant South"}}}},
		// Enabled but no channel: ecp's own list still gets its alerts.
		"gamma": {Enabled: true, TriggerCount: 2, RecoveryCount: 5, Severity: SeverityInfo},
		// Disabled: no rules, no route, though it has channels.
		"delta": {Enabled: false, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityWarning,
			Emails: []string{"nobody@example.test"}},
	}
}

// everyRuleProject has every rule of the catalogue on, some with their own
// threshold, severity and counts: the "every rule on" project CI checks
// with promtool and amtool.
func everyRuleProject() Settings {
	return Settings{Enabled: true, TriggerCount: 2, RecoveryCount: 2, Severity: SeverityWarning, EMQXAlertPush: true,
		Rules: everyRuleOn(map[string]RuleSettings{
			rules.CatalogueLicenseExpiry: {Enabled: true, Threshold: ptr(14.0), Severity: SeverityCritical, TriggerCount: 1},
			rules.CatalogueConnections:   {Enabled: true, Threshold: ptr(75.5), RecoveryCount: 4},
			rules.CatalogueRuleFailures:  {Enabled: true, Threshold: ptr(0.0), Severity: SeverityInfo},
		}),
		Webhooks: []Webhook{{URL: "http://127.0.0.1:9999/epsilon"}},
		Emails:   []string{"ops@example.test"},
		Names:    Names{Organization: "Acme", Project: "Epsilon", Clusters: []rules.Cluster{{ID: "c5", Name: "Plant West"}}}}
}

// TestEveryRuleOnPassesPromtoolAndAmtool renders a project with every rule
// of the catalogue on: its rule file is golden (and so passes
// TestGoldenRulesPassPromtoolCheck), holds every alert kind with the
// rule's own severity and counts, and the Alertmanager configuration with
// it passes amtool check-config.
func TestEveryRuleOnPassesPromtoolAndAmtool(t *testing.T) {
	s := everyRuleProject()
	b, err := RenderRules("epsilon", s, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("rules", RuleFileName("epsilon")), b)
	var f rules.File
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	got := map[string]rules.Rule{}
	for _, r := range f.Groups[0].Rules {
		got[r.Alert] = r
	}
	for _, a := range rules.Alerts() {
		if _, ok := got[a]; !ok {
			t.Errorf("every rule on, yet %s is not rendered", a)
		}
	}
	for alert, want := range map[string][3]string{
		rules.AlertLicenseExpiring: {SeverityCritical, "", "15s"},
		rules.AlertConnectionsNear: {SeverityWarning, "15s", "45s"},
		rules.AlertRuleFailures:    {SeverityInfo, "15s", "15s"},
		rules.AlertNodeDown:        {SeverityWarning, "15s", "15s"},
	} {
		r := got[alert]
		if have := [3]string{r.Labels[rules.LabelSeverity], r.For, r.KeepFiringFor}; have != want {
			t.Errorf("%s: severity, for, keep_firing_for = %q, want %q", alert, have, want)
		}
	}
	for _, want := range []string{"<= 1209600", "> 0.755", "* 60 > 0\n"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("rule file lacks %q", want)
		}
	}
	projects := testProjects()
	projects["epsilon"] = s
	am, err := RenderAlertmanager(projects, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string][]byte{"alertmanager.yml": am, alertmanager.EmailTemplateFile: alertmanager.EmailTemplate} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run(t, tool(t, "amtool"), "check-config", filepath.Join(dir, "alertmanager.yml"))
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ecp/alerting -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the rendered output; run go test ./ecp/alerting -update and review the diff\ngot:\n%s", path, got)
	}
}

func TestGoldenRules(t *testing.T) {
	for id, s := range testProjects() {
		if !s.Enabled {
			continue
		}
		t.Run(id, func(t *testing.T) {
			b, err := RenderRules(id, s, testOptions())
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("rules", RuleFileName(id)), b)
		})
	}
}

func TestGoldenAlertmanager(t *testing.T) {
	b, err := RenderAlertmanager(testProjects(), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "alertmanager.yml", b)
	// Beside it, as Apply writes it, so amtool finds what it names.
	golden(t, alertmanager.EmailTemplateFile, alertmanager.EmailTemplate)
	for _, want := range []string{`project="alpha"`, `project="beta"`, "continue: true", testWebhookToken, testSMTPPassword,
		"- " + alertmanager.EmailTemplateFile, `Subject: '{{ template "ecp.email.subject" . }}'`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("alertmanager.yml lacks %q", want)
		}
	}
	for _, unwanted := range []string{`project="gamma"`, `project="delta"`, "nobody@example.test", "<secret>"} {
		if bytes.Contains(b, []byte(unwanted)) {
			t.Errorf("alertmanager.yml holds %q", unwanted)
		}
	}
}

// tool finds one of Debian's Prometheus tools or fails with the install
// command: these checks are part of CI, never skipped.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v): install it with `bash scripts/install-prometheus.sh`", name, err)
	}
	return p
}

func run(t *testing.T, bin string, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
}

func TestGoldenRulesPassPromtoolCheck(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "rules", "*"+RuleFileSuffix))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden rule files (%v)", err)
	}
	run(t, tool(t, "promtool"), append([]string{"check", "rules"}, files...)...)
}

func TestGoldenAlertmanagerPassesAmtoolCheck(t *testing.T) {
	run(t, tool(t, "amtool"), "check-config", filepath.Join("testdata", "alertmanager.yml"))
}

// TestRenderedRulesPassPromtoolCases runs the promtool cases of rules/
// (one per alert kind, counts 1 and 3) against rule files rendered by this
// package from Settings, so the whole path from settings to firing and
// recovery is what is tested.
func TestRenderedRulesPassPromtoolCases(t *testing.T) {
	bin := tool(t, "promtool")
	dir := t.TempDir()
	o := testOptions()
	o.Interval = time.Minute
	// The names and clusters rules/rules_test.go renders these files with.
	for file, s := range map[string]Settings{
		"n1.rules.yml": {Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityCritical, EMQXAlertPush: true, Rules: everyRuleOn(nil),
			Names: Names{Organization: "Acme Manufacturing", Project: "Line One", Clusters: []rules.Cluster{{ID: "c1", Name: "Plant North"}}}},
		"n3.rules.yml": {Enabled: true, TriggerCount: 3, RecoveryCount: 3, Severity: SeverityWarning, EMQXAlertPush: true, Rules: everyRuleOn(nil),
			Names: Names{Organization: "Acme Manufacturing", Project: "Line Three",
				Clusters: []rules.Cluster{{ID: "c2", Name: "Plant South"}, {ID: "c3", Name: "Plant East"}}}},
	} {
		b, err := RenderRules(strings.TrimSuffix(file, ".rules.yml"), s, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases, err := filepath.Glob(filepath.Join("..", "..", "rules", "testdata", "*.test.yml"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no promtool cases in rules/testdata (%v)", err)
	}
	var args []string
	for _, c := range cases {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.Base(c))
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, dst)
	}
	run(t, bin, append([]string{"test", "rules"}, args...)...)
}

func TestValidateRulesRefuses(t *testing.T) {
	good, err := RenderRules("p", Settings{Enabled: true, TriggerCount: 2, RecoveryCount: 2, Severity: SeverityInfo}, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateRules(good); err != nil {
		t.Fatalf("rendered rules refused: %v", err)
	}
	const head = "groups:\n  - name: g\n"
	for _, tc := range []struct{ name, file, want string }{
		{"bad PromQL", head + "    rules:\n      - alert: A\n        expr: sum(up\n", "parse error"},
		{"unknown field", head + "    rules:\n      - alert: A\n        expr: up\n        bogus: 1\n", "bogus"},
		{"bad template", head + "    rules:\n      - alert: A\n        expr: up\n        annotations: {summary: '{{ .Nope'}\n", "summary"},
		{"UTF-8 label name", head + "    rules:\n      - alert: A\n        expr: up\n        labels: {\"1bad\": x}\n", "1bad"},
		{"group labels", head + "    labels: {team: x}\n    rules:\n      - alert: A\n        expr: up\n", "group labels"},
		{"query_offset", head + "    query_offset: 1m\n    rules:\n      - alert: A\n        expr: up\n", "query_offset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateRules([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestValidateAlertmanagerRefuses(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"unknown field", "route: {receiver: a}\nreceivers: [{name: a}]\nbogus: 1\n", "bogus"},
		{"undefined receiver", "route: {receiver: b}\nreceivers: [{name: a}]\n", `undefined receiver "b"`},
		{"continue in root", "route: {receiver: a, continue: true}\nreceivers: [{name: a}]\n", "continue in root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateAlertmanager([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestRenderAlertmanagerNeedsSMTPForEmail(t *testing.T) {
	o := testOptions()
	o.SMTP = SMTP{}
	_, err := RenderAlertmanager(map[string]Settings{"beta": testProjects()["beta"]}, o)
	if err == nil || !strings.Contains(err.Error(), "--smtp.smarthost") {
		t.Fatalf("got %v, want a refusal naming --smtp.smarthost", err)
	}
	// Webhook-only projects need no SMTP, and the global section has none.
	b, err := RenderAlertmanager(map[string]Settings{"alpha": testProjects()["alpha"]}, o)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("smtp_smarthost")) {
		t.Fatalf("no SMTP configured, yet:\n%s", b)
	}
}

// TestEmailTemplates renders ecp's e-mail templates with Alertmanager's own
// template package: a group of alerts of one fault (issue #12 defect 3) and
// a single resolved alert. Subject and bodies name organization, project
// and cluster, list every object and link back to ecp.
func TestEmailTemplates(t *testing.T) {
	tmpl, err := EmailTemplates()
	if err != nil {
		t.Fatal(err)
	}
	names := amtemplate.KV{"cluster_name": "Plant North", "project_name": "Line One", "organization_name": "Acme Manufacturing"}
	alert := func(status, alertname, id string) amtemplate.Alert {
		labels := amtemplate.KV{"alertname": alertname, "project": "p-0a1b", "cluster": "c-9f8e", "id": id, "severity": "critical"}
		annotations := amtemplate.KV{"summary": alertname + " " + id + " in cluster Plant North.", "description": "<b>" + id + "</b> is broken.",
			"link": "https://ecp.example.test/clusters/c-9f8e"}
		for k, v := range names {
			annotations[k] = v
		}
		start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
		return amtemplate.Alert{Status: status, Labels: labels, Annotations: annotations, StartsAt: start, EndsAt: start.Add(time.Minute)}
	}
	fault := amtemplate.Alerts{
		alert("firing", "EMQXConnectorAbnormal", "http:sink_1"),
		alert("firing", "EMQXActionAbnormal", "http:to_sink"),
		alert("firing", "EMQXRuleAbnormal", "rule_a"),
		alert("firing", "EMQXRuleAbnormal", "rule_b"),
	}
	for _, tc := range []struct {
		name, status, subject string
		alerts                amtemplate.Alerts
	}{
		{"one fault", "firing", "[FIRING:4] cluster Plant North · project Line One · Acme Manufacturing · 4 alerts", fault},
		{"resolved", "resolved", "[RESOLVED] cluster Plant North · project Line One · Acme Manufacturing · EMQXConnectorAbnormal http:sink_1",
			amtemplate.Alerts{alert("resolved", "EMQXConnectorAbnormal", "http:sink_1")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := &amtemplate.Data{Receiver: "project-p-0a1b", Status: tc.status, Alerts: tc.alerts,
				GroupLabels:  amtemplate.KV{"project": "p-0a1b", "cluster": "c-9f8e"},
				CommonLabels: amtemplate.KV{"project": "p-0a1b", "cluster": "c-9f8e", "severity": "critical"}, CommonAnnotations: names}
			subject, text, html := renderEmail(t, tmpl, data)
			if subject != tc.subject {
				t.Errorf("subject %q; want %q", subject, tc.subject)
			}
			for _, body := range []string{text, html} {
				for _, want := range []string{"Acme Manufacturing", "Line One", "Plant North", "p-0a1b", "c-9f8e", "https://ecp.example.test/clusters/c-9f8e", strings.ToUpper(tc.status)} {
					if !strings.Contains(body, want) {
						t.Errorf("body lacks %q:\n%s", want, body)
					}
				}
				for _, a := range tc.alerts {
					if want := a.Labels["alertname"] + " · " + a.Labels["id"]; !strings.Contains(body, want) {
						t.Errorf("body does not list %q:\n%s", want, body)
					}
				}
			}
			if strings.Contains(html, "<b>http:sink_1</b>") {
				t.Errorf("the HTML body does not escape the description:\n%s", html)
			}
		})
	}
}

// renderEmail renders subject, text and HTML body as Alertmanager does for
// one of ecp's e-mail configs.
func renderEmail(t *testing.T, tmpl *amtemplate.Template, data *amtemplate.Data) (subject, text, html string) {
	t.Helper()
	e := newEmail("ops@example.test", true)
	var err error
	if subject, err = tmpl.ExecuteTextString(e.Headers["Subject"], data); err != nil {
		t.Fatal(err)
	}
	if text, err = tmpl.ExecuteTextString(e.Text, data); err != nil {
		t.Fatal(err)
	}
	if html, err = tmpl.ExecuteHTMLString(e.HTML, data); err != nil {
		t.Fatal(err)
	}
	return subject, text, html
}

// issue #12 defect 3: names are tenants' input and reach e-mails through
// the alerts' annotations. Template code, markup and line breaks in them
// print as themselves (escaped in HTML) and run nothing.
func TestJourneyHostileNamesInEmails(t *testing.T) {
	tmpl, err := EmailTemplates()
	if err != nil {
		t.Fatal(err)
	}
	cluster := "Site \"B\" {{ template \"ecp.email.subject\" . }} $labels.cluster\nBcc: evil@example.test"
	project := "<script>alert(1)</script> {{ .Status }}"
	names := amtemplate.KV{"cluster_name": cluster, "project_name": project, "organization_name": "{{ len .Alerts }} & Co"}
	a := amtemplate.Alert{Status: "firing", Labels: amtemplate.KV{"alertname": "EMQXNodeDown", "project": "p1", "cluster": "c1", "node": "emqx@a"},
		Annotations: names, StartsAt: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
	data := &amtemplate.Data{Status: "firing", Alerts: amtemplate.Alerts{a}, GroupLabels: amtemplate.KV{"project": "p1", "cluster": "c1"},
		CommonLabels: a.Labels, CommonAnnotations: names}
	subject, text, html := renderEmail(t, tmpl, data)
	if want := "[FIRING:1] cluster " + cluster + " · project " + project + " · {{ len .Alerts }} & Co · EMQXNodeDown node emqx@a"; subject != want {
		t.Errorf("subject %q; want %q", subject, want)
	}
	for _, want := range []string{cluster, project, "{{ len .Alerts }} & Co"} {
		if !strings.Contains(text, want) {
			t.Errorf("text body lacks %q literally:\n%s", want, text)
		}
	}
	if strings.Contains(html, "<script>") || !strings.Contains(html, "&lt;script&gt;") || !strings.Contains(html, "{{ len .Alerts }} &amp; Co") {
		t.Errorf("the HTML body does not escape the names:\n%s", html)
	}
}

// TestGoldenTemplatesPassAmtoolCheck: Debian's amtool (Alertmanager 0.25)
// finds the templates the golden configuration names and parses them.
func TestGoldenTemplatesPassAmtoolCheck(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), tool(t, "amtool"), "check-config", filepath.Join("testdata", "alertmanager.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "1 templates") || strings.Count(string(out), "SUCCESS") < 2 {
		t.Fatalf("amtool did not check the e-mail templates:\n%s", out)
	}
}
