package alerting

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/httpapi"
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
