package alerting

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/prometheus/alertmanager/dispatch"
	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/ecp/httpapi"
)

// fieldMessages returns every field and message of a Validate error.
func fieldMessages(t *testing.T, err error) map[string]string {
	t.Helper()
	var he *httpapi.Error
	if !errors.As(err, &he) {
		t.Fatalf("got %v, want an *httpapi.Error", err)
	}
	out := map[string]string{}
	list, _ := he.Details["errors"].([]map[string]string)
	for _, e := range list {
		out[e["field"]] = e["message"]
	}
	if len(out) == 0 {
		out[he.Field] = he.Message
	}
	return out
}

func TestWebhookHeadersAndTemplateValidate(t *testing.T) {
	valid := `{"text": "{{alertName}} on {{ alertAddress }}: {{alertContent}}", "at": "{{alertTime}}", "level": "{{alertLevel}}",
		"status": "{{alertStatus}}", "link": "{{alertLink}}", "sent": "{{systemTime}}", "n": 1}`
	for _, tc := range []struct {
		name    string
		webhook Webhook
		field   string // "" when valid
		says    string
	}{
		{"headers and template", Webhook{Headers: []Header{{"X-Api-Key", "k"}, {"Authorization", "Bearer t"}}, Template: valid}, "", ""},
		{"name not a token", Webhook{Headers: []Header{{"X Api", "k"}}}, "webhooks[0].headers[0].name", "HTTP header name"},
		{"name with colon", Webhook{Headers: []Header{{"X-A:", "k"}}}, "webhooks[0].headers[0].name", "HTTP header name"},
		{"empty name", Webhook{Headers: []Header{{"", "k"}}}, "webhooks[0].headers[0].name", "HTTP header name"},
		{"long name", Webhook{Headers: []Header{{strings.Repeat("x", MaxHeaderName+1), "k"}}}, "webhooks[0].headers[0].name", "at most 100 bytes"},
		{"hop-by-hop", Webhook{Headers: []Header{{"connection", "close"}}}, "webhooks[0].headers[0].name", "Connection is set by ecp"},
		{"host", Webhook{Headers: []Header{{"Host", "internal"}}}, "webhooks[0].headers[0].name", "Host is set by ecp"},
		{"content length", Webhook{Headers: []Header{{"Content-Length", "1"}}}, "webhooks[0].headers[0].name", "Content-Length"},
		{"transfer encoding", Webhook{Headers: []Header{{"Transfer-Encoding", "chunked"}}}, "webhooks[0].headers[0].name", "Transfer-Encoding"},
		{"repeated any case", Webhook{Headers: []Header{{"X-Key", "a"}, {"x-key", "b"}}}, "webhooks[0].headers[1].name", "repeats X-Key"},
		{"value with line break", Webhook{Headers: []Header{{"X-Key", "a\r\nX-Evil: 1"}}}, "webhooks[0].headers[0].value", "no line breaks"},
		{"value too long", Webhook{Headers: []Header{{"X-Key", strings.Repeat("v", MaxHeaderValue+1)}}}, "webhooks[0].headers[0].value", "at most 2048 bytes"},
		{"value missing", Webhook{Headers: []Header{{"X-Key", ""}}}, "webhooks[0].headers[0].value", "is required"},
		{"too many headers", Webhook{Headers: slices.Repeat([]Header{{"X-A", "v"}}, MaxHeaders+1)}, "webhooks[0].headers", "at most 10 headers"},
		{"unknown placeholder", Webhook{Template: `{"a": "{{alarmName}}"}`}, "webhooks[0].template", "{{alarmName}} is not a placeholder; want one of {{alertName}}"},
		{"unclosed placeholder", Webhook{Template: `{"a": "{{alertName"}`}, "webhooks[0].template", "never closed"},
		{"placeholder outside a string", Webhook{Template: `{"a": {{alertName}}}`}, "webhooks[0].template", "must render valid JSON"},
		{"not JSON", Webhook{Template: `alert {{alertName}}`}, "webhooks[0].template", "must render valid JSON"},
		{"two documents", Webhook{Template: `{} {}`}, "webhooks[0].template", "must render valid JSON"},
		{"template too long", Webhook{Template: `"` + strings.Repeat("x", MaxTemplate) + `"`}, "webhooks[0].template", "at most 8192 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSettings()
			tc.webhook.URL = "https://hooks.example.test/x"
			s.Webhooks = []Webhook{tc.webhook}
			err := s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			msgs := fieldMessages(t, err)
			if !strings.Contains(msgs[tc.field], tc.says) {
				t.Fatalf("errors %v, want %s saying %q", msgs, tc.field, tc.says)
			}
		})
	}
}

func TestRenderTemplateEscapesValues(t *testing.T) {
	tmpl := `{"msg": "[{{alertLevel}}] {{alertName}}: {{alertContent}}", "where": "{{alertAddress}}", "at": "{{alertTime}}",
		"status": "{{alertStatus}}", "link": "{{alertLink}}", "now": "{{systemTime}}"}`
	a := TemplateAlert{Status: "firing", StartsAt: time.Date(2026, 12, 5, 3, 0, 0, 0, time.FixedZone("x", 3600)),
		Labels: map[string]string{"alertname": "EMQXNodeDown", "severity": "critical", "cluster": "c1", "node": "emqx@10.0.0.1"},
		Annotations: map[string]string{"summary": "Node \"emqx@10.0.0.1\" stopped\n</script>", "cluster_name": "Plant North",
			"link": "https://ecp.example.test/clusters/c1"}}
	b, err := RenderTemplate(tmpl, a, time.Date(2026, 12, 5, 3, 0, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("rendered %s: %v", b, err)
	}
	want := map[string]string{
		"msg":   "[critical] EMQXNodeDown: Node \"emqx@10.0.0.1\" stopped\n</script>",
		"where": "Plant North (c1) node emqx@10.0.0.1", "at": "2026-12-05T02:00:00Z", "status": "firing",
		"link": "https://ecp.example.test/clusters/c1", "now": "2026-12-05T03:00:05Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestSettingsRedactedAndKeepHeaderValues(t *testing.T) {
	stored := Settings{Webhooks: []Webhook{
		{URL: "https://a.example.test", Headers: []Header{{"X-Key", "secret-a"}}},
		{URL: "https://b.example.test", Headers: []Header{{"X-Key", "secret-b"}}},
	}}
	red := stored.Redacted()
	b, _ := json.Marshal(red)
	if strings.Contains(string(b), "secret") || !strings.Contains(string(b), `"headers":[{"name":"X-Key"}]`) {
		t.Fatalf("redacted settings marshal as %s", b)
	}
	if stored.Webhooks[0].Headers[0].Value != "secret-a" {
		t.Fatal("Redacted changed the settings it was called on")
	}
	// Sent back as read, with b's URL changed and a new header on a.
	back := red
	back.Webhooks = []Webhook{
		{URL: "https://a.example.test", Headers: []Header{{"x-key", ""}, {"X-New", ""}}},
		{URL: "https://c.example.test", Headers: []Header{{"X-Key", ""}}},
	}
	got := back.KeepHeaderValues(stored)
	if v := got.Webhooks[0].Headers[0].Value; v != "secret-a" {
		t.Fatalf("a's X-Key = %q, want the stored value", v)
	}
	if v := got.Webhooks[0].Headers[1].Value; v != "" {
		t.Fatalf("a's new header = %q, want none", v)
	}
	if v := got.Webhooks[1].Headers[0].Value; v != "" {
		t.Fatalf("the webhook whose URL changed got %q, want no stored secret", v)
	}
	if msgs := fieldMessages(t, Settings{TriggerCount: 1, RecoveryCount: 1, Severity: SeverityInfo, Webhooks: got.Webhooks}.Validate()); msgs["webhooks[1].headers[0].value"] == "" {
		t.Fatalf("errors %v, want webhooks[1].headers[0].value required", msgs)
	}
}

// receiversFor routes labels through the rendered configuration with
// Alertmanager's own routing code, as amtool config routes test does.
func receiversFor(t *testing.T, cfg []byte, labels map[string]string) []string {
	t.Helper()
	c, err := amconfig.Load(string(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ls := model.LabelSet{}
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	var out []string
	for _, r := range dispatch.NewRoute(c.Route, nil).Match(ls) {
		out = append(out, r.RouteOpts.Receiver)
	}
	return out
}

func TestRenderCriticalOnlyRelayAndChannelTests(t *testing.T) {
	o := testOptions()
	s := Settings{Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityWarning, CriticalOnly: true,
		Emails: []string{"ops@example.test"},
		Webhooks: []Webhook{
			{URL: "https://hooks.example.test/plain"},
			{URL: "https://hooks.example.test/custom", Headers: []Header{{"X-Key", "tenant-secret"}}, Template: `{"a": "{{alertName}}"}`},
		}}
	cfg, err := RenderAlertmanager(map[string]Settings{"p1": s}, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"warning: ecp only", map[string]string{"project": "p1", "severity": "warning"}, []string{ReceiverECP, ReceiverNone}},
		{"critical: the channels", map[string]string{"project": "p1", "severity": "critical"}, []string{ReceiverECP, "project-p1"}},
		{"test of every channel, any severity", map[string]string{"project": "p1", "severity": "info", LabelTest: "t1"}, []string{ReceiverECP, "project-p1-test"}},
		{"test of the e-mail", map[string]string{"project": "p1", LabelTest: "t1", LabelTestChannel: EmailChannel("ops@example.test")},
			[]string{ReceiverECP, "project-p1-test-" + EmailChannel("ops@example.test")}},
		{"test of the custom webhook", map[string]string{"project": "p1", LabelTest: "t1", LabelTestChannel: WebhookChannel("https://hooks.example.test/custom")},
			[]string{ReceiverECP, "project-p1-test-" + WebhookChannel("https://hooks.example.test/custom")}},
		{"another project's critical", map[string]string{"project": "p2", "severity": "critical"}, []string{ReceiverECP}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := receiversFor(t, cfg, tc.labels); !slices.Equal(got, tc.want) {
				t.Fatalf("receivers %v, want %v", got, tc.want)
			}
		})
	}
	c, err := amconfig.Load(string(cfg))
	if err != nil {
		t.Fatal(err)
	}
	// The custom webhook goes through ecp's relay with ecp's token; its
	// headers never reach Alertmanager's configuration.
	if strings.Contains(string(cfg), "tenant-secret") || strings.Contains(string(cfg), "/custom") {
		t.Fatalf("the relayed webhook's header or URL is in Alertmanager's configuration:\n%s", cfg)
	}
	for _, r := range c.Receivers {
		if r.Name != "project-p1-test-"+WebhookChannel("https://hooks.example.test/custom") {
			continue
		}
		if len(r.WebhookConfigs) != 1 || len(r.EmailConfigs) != 0 {
			t.Fatalf("the custom webhook's test receiver %+v, want that webhook alone", r)
		}
		w := r.WebhookConfigs[0]
		if want := o.WebhookURL + "/p1/" + WebhookKey("https://hooks.example.test/custom"); string(w.URL) != want || w.SendResolved() {
			t.Fatalf("relayed test webhook to %s (send_resolved %v), want %s without resolution", w.URL, w.SendResolved(), want)
		}
		if w.HTTPConfig.Authorization == nil || string(w.HTTPConfig.Authorization.Credentials) != testWebhookToken {
			t.Fatal("the relay is posted without ecp's bearer token")
		}
		return
	}
	t.Fatal("no test receiver for the custom webhook")
}
