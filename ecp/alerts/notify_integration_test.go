package alerts

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/alerting"
)

// post sends alerts to Alertmanager as Prometheus would.
func (s *amStack) post(t *testing.T, alerts ...map[string]string) {
	t.Helper()
	var body []map[string]any
	for _, l := range alerts {
		body = append(body, map[string]any{"labels": l, "startsAt": time.Now().UTC(),
			"annotations": map[string]string{"summary": l["alertname"] + " in " + l["cluster"], "cluster_name": "Line " + l["cluster"]}})
	}
	b, _ := json.Marshal(body)
	resp, err := http.Post(s.am+"/api/v2/alerts", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alertmanager took the alerts with %s", resp.Status)
	}
}

// titles lists the "title" member of each templated body the sink got.
func (s *headerSink) titles(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range s.requests() {
		var b struct {
			Title string `json:"title"`
		}
		if err := json.Unmarshal(r.body, &b); err != nil {
			t.Fatalf("the relayed webhook got a body that is not the template's JSON: %s", r.body)
		}
		out = append(out, b.Title)
	}
	return out
}

// plainNames lists the alertnames the plain webhook got, in order.
func (s *amStack) plainNames() []string {
	var out []string
	for _, m := range s.sink.messages() {
		for _, a := range m.Alerts {
			out = append(out, a.Labels["alertname"])
		}
	}
	return out
}

// TestIntegrationNotificationChannels runs the project's channels on a real
// Alertmanager (Debian's 0.25): with "critical only" a warning alert
// reaches neither webhook while a critical one reaches both; the relayed
// webhook gets its custom header and the template rendered for the alert;
// a test of one channel reaches that channel alone.
func TestIntegrationNotificationChannels(t *testing.T) {
	s := startAMStack(t, alerting.DefaultStormThreshold)
	p := s.w.project.ID
	custom := newHeaderSink(t)
	customURL, plainURL := custom.URL+"/custom", s.sink.URL+"/plant"
	path := "/api/v1/projects/" + p + "/alert-settings"
	s.must(200, "padmin", http.MethodPut, path, map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "warning", "criticalOnly": true,
		"webhooks": []map[string]any{
			{"url": plainURL},
			{"url": customURL, "template": relayTemplate, "headers": []map[string]string{{"name": "X-Api-Key", "value": "k-123"}}},
		}})
	var reply SettingsReply
	eventually(t, 10*time.Second, "the settings run", func() bool {
		s.must(200, "padmin", http.MethodGet, path, nil).decode(t, &reply)
		return reply.Status.Delivery == DeliveryApplied
	})

	s.post(t, map[string]string{"alertname": "EMQXNodeLoadHigh", "project": p, "cluster": "c1", "severity": "warning"},
		map[string]string{"alertname": "EMQXNodeDown", "project": p, "cluster": "c2", "severity": "critical"})
	eventually(t, 15*time.Second, "the critical alert reaches both webhooks", func() bool {
		return len(custom.requests()) > 0 && len(s.sink.messages()) > 0
	})
	// The warning would have gone out with the same group wait.
	time.Sleep(groupWait + time.Second)
	if got := custom.titles(t); !slices.Equal(got, []string{"[critical] EMQXNodeDown"}) {
		t.Fatalf("the relayed webhook got %v, want the critical alert alone", got)
	}
	if got := s.plainNames(); !slices.Equal(got, []string{"EMQXNodeDown"}) {
		t.Fatalf("the plain webhook got %v, want the critical alert alone", got)
	}
	r := custom.requests()[0]
	var body map[string]string
	_ = json.Unmarshal(r.body, &body)
	if r.header.Get("X-Api-Key") != "k-123" || body["where"] != "Line c2 (c2)" || body["text"] != "EMQXNodeDown in c2" || body["status"] != "firing" {
		t.Fatalf("the relayed webhook got headers %v and body %s", r.header, r.body)
	}
	// ecp's list has both: critical only is about the channels.
	eventually(t, 10*time.Second, "the list shows both alerts", func() bool { return len(s.list(p, "state=active")) == 2 })

	// A test of the relayed webhook reaches it alone, then one of the
	// plain webhook reaches that one alone.
	s.must(202, "padmin", http.MethodPost, path+"/test", TestChannel{Webhook: customURL})
	eventually(t, 10*time.Second, "the relayed webhook gets the test", func() bool { return len(custom.requests()) == 2 })
	if got := custom.titles(t)[1]; got != "[warning] "+TestAlertName {
		t.Fatalf("the relayed webhook's test title %q", got)
	}
	s.must(202, "padmin", http.MethodPost, path+"/test", TestChannel{Webhook: plainURL})
	eventually(t, 10*time.Second, "the plain webhook gets the test", func() bool { return len(s.plainNames()) == 2 })
	time.Sleep(time.Second) // a stray copy would arrive at once (group wait 0s)
	if got := s.plainNames(); !slices.Equal(got, []string{"EMQXNodeDown", TestAlertName}) {
		t.Fatalf("the plain webhook got %v", got)
	}
	if got := len(custom.requests()); got != 2 {
		t.Fatalf("the relayed webhook got %d requests, want 2 (the plain webhook's test reached it)", got)
	}
}
