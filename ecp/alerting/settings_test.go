package alerting

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/rules"
)

func TestSettingsJSONShape(t *testing.T) {
	// The public contract (ARCHITECTURE.md, alert-settings).
	in := `{"enabled": true, "triggerCount": 2, "recoveryCount": 3, "severity": "critical",
		"emqxAlertPush": true, "emails": ["ops@example.com"], "webhooks": [{"url": "https://hooks.example.com/x"}]}`
	var s Settings
	dec := json.NewDecoder(strings.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	want := Settings{Enabled: true, TriggerCount: 2, RecoveryCount: 3, Severity: SeverityCritical, EMQXAlertPush: true,
		Emails: []string{"ops@example.com"}, Webhooks: []Webhook{{URL: "https://hooks.example.com/x"}}}
	got, _ := json.Marshal(s)
	exp, _ := json.Marshal(want)
	if string(got) != string(exp) {
		t.Fatalf("decoded %s, want %s", got, exp)
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("valid settings refused: %v", err)
	}
}

func TestDefaultSettings(t *testing.T) {
	d := DefaultSettings()
	if d.Enabled {
		t.Fatal("alerting must be off until a project switches it on")
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	b, _ := json.Marshal(d)
	// Empty lists, not null, so the console can iterate without checks.
	if !strings.Contains(string(b), `"emails":[]`) || !strings.Contains(string(b), `"webhooks":[]`) {
		t.Fatalf("defaults marshal as %s", b)
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(*Settings)
		field     string
		mentioned string // what the message must say is accepted
	}{
		{"trigger 0", func(s *Settings) { s.TriggerCount = 0 }, "triggerCount", "1 to 100"},
		{"trigger 101", func(s *Settings) { s.TriggerCount = 101 }, "triggerCount", "1 to 100"},
		{"recovery negative", func(s *Settings) { s.RecoveryCount = -1 }, "recoveryCount", "1 to 100"},
		{"severity unknown", func(s *Settings) { s.Severity = "page" }, "severity", "critical, warning, info"},
		{"severity empty", func(s *Settings) { s.Severity = "" }, "severity", "critical, warning, info"},
		{"email not an address", func(s *Settings) { s.Emails = []string{"ops"} }, "emails[0]", "ops@example.com"},
		{"email with display name", func(s *Settings) { s.Emails = []string{"a@x.test", "Ops <ops@x.test>"} }, "emails[1]", "addr-spec"},
		{"email repeated", func(s *Settings) { s.Emails = []string{"a@x.test", "A@x.test"} }, "emails[1]", "repeats"},
		{"email to an address literal", func(s *Settings) { s.Emails = []string{"ops@[127.0.0.1]"} }, "emails[0]", "address literal"},
		{"too many emails", func(s *Settings) { s.Emails = make([]string, 11) }, "emails", "at most 10"},
		{"webhook ftp", func(s *Settings) { s.Webhooks = []Webhook{{URL: "ftp://x.test/"}} }, "webhooks[0].url", "http:// or https://"},
		{"webhook relative", func(s *Settings) { s.Webhooks = []Webhook{{URL: "/hook"}} }, "webhooks[0].url", "http:// or https://"},
		{"webhook with credentials", func(s *Settings) { s.Webhooks = []Webhook{{URL: "https://u:p@x.test/"}} }, "webhooks[0].url", "no user:password"},
		{"webhook repeated", func(s *Settings) {
			s.Webhooks = []Webhook{{URL: "https://x.test/a"}, {URL: "https://x.test/a"}}
		}, "webhooks[1].url", "repeats"},
		{"too many webhooks", func(s *Settings) { s.Webhooks = make([]Webhook, 11) }, "webhooks", "at most 10"},
		{"rule not in the catalogue", func(s *Settings) { s.Rules = map[string]RuleSettings{"cpuUsage": {Enabled: true}} }, "rules.cpuUsage", "licenseExpiry"},
		{"licence expiry 0 days", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueLicenseExpiry: {Threshold: ptr(0.0)}}
		}, "rules.licenseExpiry.threshold", "from 1 to 365 (days), got 0"},
		{"licence usage above 100%", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueLicenseUsage: {Threshold: ptr(100.5)}}
		}, "rules.licenseUsage.threshold", "from 1 to 100 (percent), got 100.5"},
		{"connections 0%", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueConnections: {Threshold: ptr(0.5)}}
		}, "rules.connections.threshold", "from 1 to 100 (percent)"},
		{"negative failures", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueActionFailures: {Threshold: ptr(-1.0)}}
		}, "rules.actionFailures.threshold", "from 0 to 1e+06 (failures per minute)"},
		{"threshold on node down", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueNodeDown: {Threshold: ptr(1.0)}}
		}, "rules.nodeDown.threshold", "nodeDown has no threshold"},
		{"rule severity unknown", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueNodeDown: {Severity: "page"}}
		}, "rules.nodeDown.severity", "critical, warning, info"},
		{"rule trigger 101", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueClusterStatus: {TriggerCount: 101}}
		}, "rules.clusterStatus.triggerCount", "1 to 100"},
		{"rule recovery negative", func(s *Settings) {
			s.Rules = map[string]RuleSettings{rules.CatalogueRuleFailures: {RecoveryCount: -1}}
		}, "rules.ruleFailures.recoveryCount", "1 to 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			tc.change(&s)
			err := s.Validate()
			var he *httpapi.Error
			if !errors.As(err, &he) {
				t.Fatalf("got %v, want an *httpapi.Error", err)
			}
			if he.Status != http.StatusBadRequest || he.Field != tc.field || !strings.Contains(he.Message, tc.mentioned) {
				t.Fatalf("got %d field %q message %q; want 400 on %q mentioning %q", he.Status, he.Field, he.Message, tc.field, tc.mentioned)
			}
		})
	}
}

// TestJourneySettingsErrorsListEveryField: a form with several wrong
// fields learns all of them from one refusal, not one per attempt.
func TestJourneySettingsErrorsListEveryField(t *testing.T) {
	s := DefaultSettings()
	s.TriggerCount = 0
	s.Emails = []string{"ok@example.test", "nope"}
	s.Webhooks = []Webhook{{URL: "ftp://x.test/"}}
	var he *httpapi.Error
	if !errors.As(s.Validate(), &he) || he.Field != "triggerCount" {
		t.Fatalf("got %v, want a 400 naming triggerCount first", he)
	}
	list, _ := he.Details["errors"].([]map[string]string)
	var fields []string
	for _, e := range list {
		fields = append(fields, e["field"])
	}
	if got := strings.Join(fields, " "); got != "triggerCount emails[1] webhooks[0].url" {
		t.Fatalf("errors name %q, want triggerCount emails[1] webhooks[0].url", got)
	}
}

// enabledRules lists the rules a catalogue switches on, in catalogue order.
func enabledRules(c map[string]RuleSettings) []string {
	var on []string
	for _, id := range rules.CatalogueIDs() {
		if c[id].Enabled {
			on = append(on, id)
		}
	}
	return on
}

// TestDefaultCatalogueHasTodaysTwoOn: a project's new settings have the
// two rules ECP 2.3 had on (rule exception; connector and action
// exception), every other rule off, each threshold at its default.
func TestDefaultCatalogueHasTodaysTwoOn(t *testing.T) {
	c := DefaultSettings().Rules
	if got := strings.Join(enabledRules(c), " "); got != "ruleAbnormal connectorAbnormal" {
		t.Fatalf("on by default: %q, want ruleAbnormal connectorAbnormal", got)
	}
	if len(c) != len(rules.Catalogue) || *c[rules.CatalogueLicenseExpiry].Threshold != 30 || c[rules.CatalogueNodeDown].Threshold != nil {
		t.Fatalf("default catalogue %+v", c)
	}
}

// TestSettingsStoredBeforeTheCatalogueMeanTheSame: a document as ecp
// stored it before the catalogue (no "rules") loads with every rule it
// rendered then on (cluster, node, connections at 90 %, rule, connector and
// action), EMQX alarms following emqxAlertPush, the new rules off, and
// renders exactly the alert kinds it rendered then, with the top-level
// severity and counts.
func TestSettingsStoredBeforeTheCatalogueMeanTheSame(t *testing.T) {
	for _, push := range []bool{false, true} {
		stored := `{"enabled":true,"triggerCount":3,"recoveryCount":2,"severity":"critical","emqxAlertPush":` +
			map[bool]string{false: "false", true: "true"}[push] + `,"emails":[],"webhooks":[],"updatedAt":"2026-11-01T10:00:00Z"}`
		var s Settings
		if err := json.Unmarshal([]byte(stored), &s); err != nil {
			t.Fatal(err)
		}
		want := "clusterStatus nodeDown connections ruleAbnormal connectorAbnormal"
		kinds := []string{rules.AlertClusterAbnormal, rules.AlertNodeDown, rules.AlertConnectionsNear,
			rules.AlertRuleAbnormal, rules.AlertConnectorAbnormal, rules.AlertActionAbnormal}
		if push {
			want += " emqxAlarm"
			kinds = append(kinds, rules.AlertEMQXAlarm)
		}
		if got := strings.Join(enabledRules(s.Catalogue()), " "); got != want {
			t.Fatalf("push %v: on %q, want %q", push, got, want)
		}
		b, err := RenderRules("old", s, testOptions())
		if err != nil {
			t.Fatal(err)
		}
		var f rules.File
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range f.Groups[0].Rules {
			got = append(got, r.Alert)
			if r.Labels[rules.LabelSeverity] != "critical" || r.For != "30s" || r.KeepFiringFor != "15s" {
				t.Errorf("%s: severity %q for %q keep_firing_for %q, want the top-level critical, 3 and 2", r.Alert, r.Labels[rules.LabelSeverity], r.For, r.KeepFiringFor)
			}
			if r.Alert == rules.AlertConnectionsNear && !strings.HasSuffix(r.Expr, "> 0.9") {
				t.Errorf("connections threshold changed: %s", r.Expr)
			}
		}
		if strings.Join(got, " ") != strings.Join(kinds, " ") {
			t.Fatalf("push %v: renders %v, want %v", push, got, kinds)
		}
	}
}

// TestCatalogueRuleLeftOutHasItsDefault: with a "rules" member, a rule it
// leaves out is at its default (off but for today's two), and emqxAlarm
// follows emqxAlertPush whatever its entry says.
func TestCatalogueRuleLeftOutHasItsDefault(t *testing.T) {
	s := Settings{EMQXAlertPush: false, Rules: map[string]RuleSettings{
		rules.CatalogueLicenseUsage: {Enabled: true},
		rules.CatalogueEMQXAlarm:    {Enabled: true},
	}}
	c := s.Catalogue()
	if got := strings.Join(enabledRules(c), " "); got != "licenseUsage ruleAbnormal connectorAbnormal" {
		t.Fatalf("on %q, want licenseUsage ruleAbnormal connectorAbnormal", got)
	}
	if *c[rules.CatalogueLicenseUsage].Threshold != 80 {
		t.Fatalf("licenseUsage threshold %v, want its default 80", *c[rules.CatalogueLicenseUsage].Threshold)
	}
	s.EMQXAlertPush = true
	if !s.Catalogue()[rules.CatalogueEMQXAlarm].Enabled {
		t.Fatal("emqxAlarm off with emqxAlertPush on")
	}
}
