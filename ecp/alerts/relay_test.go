package alerts

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// headerSink records the requests a relayed webhook gets: headers and body.
type headerSink struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []sinkRequest
}

type sinkRequest struct {
	path   string
	header http.Header
	body   []byte
}

func newHeaderSink(t *testing.T) *headerSink {
	s := &headerSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, sinkRequest{path: r.URL.Path, header: r.Header.Clone(), body: b})
		s.mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/broken") {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *headerSink) requests() []sinkRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkRequest(nil), s.reqs...)
}

const relayTemplate = `{"title": "[{{alertLevel}}] {{alertName}}", "text": "{{alertContent}}", "where": "{{alertAddress}}", "status": "{{alertStatus}}"}`

// relayWorld is a project whose alerting is on with a relayed webhook on
// a loopback sink the notification policy allows.
func relayWorld(t *testing.T) (*api, *world, *headerSink) {
	t.Helper()
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, Options{Config: DefaultConfig(), ReplicaID: "r1"})
	a.must(200, "root", http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}})
	sink := newHeaderSink(t)
	a.must(200, "padmin", http.MethodPut, "/api/v1/projects/"+w.project.ID+"/alert-settings", map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical",
		"webhooks": []map[string]any{
			{"url": sink.URL + "/custom", "template": relayTemplate, "headers": []map[string]string{{"name": "X-Api-Key", "value": "k-123"}}},
			{"url": sink.URL + "/broken", "headers": []map[string]string{{"name": "X-Api-Key", "value": "k-456"}}},
		}})
	return a, w, sink
}

// relayPost posts an Alertmanager notification to the relay of project's
// webhook url.
func (a *api) relayPost(project, url, token string, alerts ...webhookAlert) result {
	a.t.Helper()
	return a.do("", http.MethodPost, WebhookPath+"/"+project+"/"+alerting.WebhookKey(url),
		webhookMessage{Version: "4", Status: "firing", Receiver: "project-" + project, Alerts: alerts}, "Authorization", "Bearer "+token)
}

func TestHeaderValuesAreNeverShownAndKeptWhenSentBack(t *testing.T) {
	a, w, sink := relayWorld(t)
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	r := a.must(200, "viewer", http.MethodGet, path, nil)
	if strings.Contains(string(r.body), "k-123") || !strings.Contains(string(r.body), `"headers":[{"name":"X-Api-Key"}]`) {
		t.Fatalf("GET alert-settings shows %s", r.body)
	}
	// The console sends back what it read: the values stay.
	var read SettingsReply
	r.decode(t, &read)
	a.must(200, "padmin", http.MethodPut, path, read)
	a.must(204, "", http.MethodPost, WebhookPath+"/"+w.project.ID+"/"+alerting.WebhookKey(sink.URL+"/custom"),
		webhookMessage{Version: "4", Status: "firing", Alerts: []webhookAlert{{Status: "firing", Labels: map[string]string{"project": w.project.ID, "alertname": "A"}}}},
		"Authorization", "Bearer "+a.svc.token.Reveal())
	if got := sink.requests(); len(got) != 1 || got[0].header.Get("X-Api-Key") != "k-123" {
		t.Fatalf("after sending the settings back the webhook got %+v, want X-Api-Key k-123", got)
	}
	// Moved to another URL without its value: refused, naming the field.
	read.Webhooks[0].URL = sink.URL + "/elsewhere"
	r = a.must(400, "padmin", http.MethodPut, path, read)
	if !strings.Contains(string(r.body), `"field":"webhooks[0].headers[0].value"`) {
		t.Fatalf("a secret header carried to a new URL: %s", r.body)
	}
}

func TestRelayAddsHeadersAndRendersTemplatePerAlert(t *testing.T) {
	a, w, sink := relayWorld(t)
	p, token := w.project.ID, a.svc.token.Reveal()
	alert := func(name string) webhookAlert {
		return webhookAlert{Status: "firing", StartsAt: time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC),
			Labels:      map[string]string{"project": p, "cluster": "c1", "alertname": name, "severity": "critical"},
			Annotations: map[string]string{"summary": `Node "a" stopped`, "cluster_name": "Line 1"}}
	}
	a.must(401, "", http.MethodPost, WebhookPath+"/"+p+"/"+alerting.WebhookKey(sink.URL+"/custom"), webhookMessage{Version: "4"}, "Authorization", "Bearer wrong")
	a.must(204, "", http.MethodPost, WebhookPath+"/"+p+"/"+alerting.WebhookKey(sink.URL+"/custom"),
		webhookMessage{Version: "4", Status: "firing", Alerts: []webhookAlert{alert("EMQXNodeDown"), alert("EMQXLicenseExpiry")}},
		"Authorization", "Bearer "+token)
	got := sink.requests()
	if len(got) != 2 {
		t.Fatalf("the webhook got %d requests, want one per alert", len(got))
	}
	for i, name := range []string{"EMQXNodeDown", "EMQXLicenseExpiry"} {
		var body map[string]string
		if err := json.Unmarshal(got[i].body, &body); err != nil {
			t.Fatalf("body %s: %v", got[i].body, err)
		}
		want := map[string]string{"title": "[critical] " + name, "text": `Node "a" stopped`, "where": "Line 1 (c1)", "status": "firing"}
		for k, v := range want {
			if body[k] != v {
				t.Fatalf("request %d: %s = %q, want %q (body %s)", i, k, body[k], v, got[i].body)
			}
		}
		if h := got[i].header; h.Get("X-Api-Key") != "k-123" || h.Get("Content-Type") != "application/json" || h.Get("Authorization") != "" {
			t.Fatalf("request %d headers %v", i, h)
		}
	}
}

func TestRelayKeepsEachProjectToItsOwnWebhooks(t *testing.T) {
	a, w, sink := relayWorld(t)
	token, url := a.svc.token.Reveal(), sink.URL+"/custom"
	foreign := webhookAlert{Status: "firing", Labels: map[string]string{"project": w.foreign.ID, "alertname": "A"}}
	// Another project's alert on this project's webhook, and this
	// project's webhook key under another project: nothing is sent.
	r := a.relayPost(w.project.ID, url, token, foreign)
	if r.status != 400 || !strings.Contains(string(r.body), `"field":"alerts[0].labels.project"`) {
		t.Fatalf("a foreign alert on the relay: %d %s", r.status, r.body)
	}
	a.must(204, "", http.MethodPost, WebhookPath+"/"+w.foreign.ID+"/"+alerting.WebhookKey(url),
		webhookMessage{Version: "4", Alerts: []webhookAlert{foreign}}, "Authorization", "Bearer "+token)
	if got := sink.requests(); len(got) != 0 {
		t.Fatalf("the webhook got %d requests, want none", len(got))
	}
	if got := testutil.ToFloat64(a.svc.metrics.relay.WithLabelValues(relayGone)); got != 1 {
		t.Fatalf("relay gone %v, want 1", got)
	}
}

func TestRelayFailureIsRetriedAndPolicyHoldsAtDialTime(t *testing.T) {
	a, w, sink := relayWorld(t)
	p, token := w.project.ID, a.svc.token.Reveal()
	al := webhookAlert{Status: "firing", Labels: map[string]string{"project": p, "alertname": "A"}}
	// A 503 from the webhook: 502, so Alertmanager retries; no URL in
	// the message.
	r := a.relayPost(p, sink.URL+"/broken", token, al)
	if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "503") || strings.Contains(string(r.body), sink.URL) {
		t.Fatalf("a failing webhook: %d %s", r.status, r.body)
	}
	// The system admin denies loopback after the settings were saved:
	// the relay refuses to dial.
	a.must(200, "root", http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"denyCidrs": []string{"127.0.0.0/8"}})
	before := len(sink.requests())
	r = a.relayPost(p, sink.URL+"/custom", token, al)
	if r.status != http.StatusBadGateway || !strings.Contains(string(r.body), "notification policy denies") {
		t.Fatalf("a denied webhook: %d %s", r.status, r.body)
	}
	if len(sink.requests()) != before {
		t.Fatal("the relay reached a webhook the policy denies")
	}
	if got := testutil.ToFloat64(a.svc.metrics.relay.WithLabelValues(relayRefused)); got != 1 {
		t.Fatalf("relay refused %v, want 1", got)
	}
}

// TestTestNotificationOfOneChannel: a channel named in the body is looked
// up in the saved settings and its key rides on the test alert; one that is
// not saved is refused naming the field.
func TestTestNotificationOfOneChannel(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	o, am := fakeStackOptions(t)
	o.SMTP = alerting.SMTP{Smarthost: "127.0.0.1:25", From: "ecp@example.test"}
	a := newService(t, w, o)
	defer run(t, a.svc)()
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	a.must(200, "padmin", http.MethodPut, path, map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "warning",
		"emails": []string{"ops@example.test"}, "webhooks": []map[string]string{{"url": "https://hooks.example.test/plant"}}})
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.Projects == 1 && s.OK })
	for _, tc := range []struct {
		body  TestChannel
		field string
	}{
		{TestChannel{Email: "nobody@example.test"}, "email"},
		{TestChannel{Webhook: "https://hooks.example.test/other"}, "webhook"},
		{TestChannel{Email: "ops@example.test", Webhook: "https://hooks.example.test/plant"}, "webhook"},
	} {
		r := a.must(400, "padmin", http.MethodPost, path+"/test", tc.body)
		if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
			t.Fatalf("%+v: %s, want field %s", tc.body, r.body, tc.field)
		}
	}
	for _, tc := range []struct {
		body TestChannel
		key  string
	}{
		{TestChannel{Email: "OPS@example.test"}, alerting.EmailChannel("ops@example.test")},
		{TestChannel{Webhook: "https://hooks.example.test/plant"}, alerting.WebhookChannel("https://hooks.example.test/plant")},
		{TestChannel{}, ""},
	} {
		n := len(am.alerts())
		a.must(202, "padmin", http.MethodPost, path+"/test", tc.body)
		posted := am.alerts()
		if len(posted) != n+1 {
			t.Fatalf("%+v: alertmanager got %d posts, want 1", tc.body, len(posted)-n)
		}
		var alerts []struct {
			Labels map[string]string `json:"labels"`
		}
		if err := json.Unmarshal(posted[n], &alerts); err != nil || len(alerts) != 1 {
			t.Fatalf("posted %s: %v", posted[n], err)
		}
		if got := alerts[0].Labels[alerting.LabelTestChannel]; got != tc.key {
			t.Fatalf("%+v: %s=%q, want %q", tc.body, alerting.LabelTestChannel, got, tc.key)
		}
	}
}
