package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// tool finds a binary the alerting test runs for real, or fails with the
// command that installs it.
func tool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join("..", ".tools", name)
	if _, err := os.Stat(p); err == nil {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	t.Fatalf("%s is not installed: run `%s` (make test-deps does)", name, install)
	return ""
}

// sink records webhook notifications (Alertmanager's payload, version 4).
type sink struct {
	*httptest.Server
	mu    sync.Mutex
	calls []sinkMessage
}

type sinkMessage struct {
	at     time.Time
	Status string `json:"status"`
	Alerts []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m sinkMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m.at = time.Now()
		s.mu.Lock()
		s.calls = append(s.calls, m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

// find returns the first notification carrying alertname with labels
// matching want, in the given status.
func (s *sink) find(status, alertname string, want map[string]string) (sinkMessage, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.calls {
		for _, a := range c.Alerts {
			if a.Status != status || a.Labels["alertname"] != alertname {
				continue
			}
			ok := true
			for k, v := range want {
				ok = ok && a.Labels[k] == v
			}
			if ok {
				return c, true
			}
		}
	}
	return sinkMessage{}, false
}

// listedAlert is the part of ecp's alert list the test reads.
type listedAlert struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Project  string            `json:"project"`
	Cluster  string            `json:"cluster"`
	Severity string            `json:"severity"`
	Summary  string            `json:"summary"`
	Link     string            `json:"link"`
	Labels   map[string]string `json:"labels"`
	State    string            `json:"state"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   *time.Time        `json:"endsAt"`
	// LastNotifiedAt is when Alertmanager last told ecp about it.
	LastNotifiedAt time.Time `json:"lastNotifiedAt"`
	// SilencedBy are the ids of the silences that mute it.
	SilencedBy []string `json:"silencedBy"`
}

// TestAlertsEndToEnd: with the built binaries, Debian's Prometheus and
// Alertmanager and a real Mailpit, a connector failed on emqx-sim raises
// EMQXConnectorAbnormal (trigger count 2): it shows in ecp's active list,
// reaches the project's webhook and arrives by e-mail, all naming project,
// cluster and connector; healed, it moves to ecp's history by itself.
// Agent samples reach Prometheus through ecp's remote-write gateway;
// Prometheus scrapes ecp's own /metrics for ecp_cluster_state.
func TestAlertsEndToEnd(t *testing.T) {
	t.Parallel() // see TestMain
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries, Prometheus, Alertmanager and Mailpit")
	}
	as := startAlertStack(t, reportInterval)
	ctx, s, promURL, amURL, mailURL, simAddr := t.Context(), as.stack, as.promURL, as.amURL, as.mailURL, as.simAddr

	simURL := "http://" + simAddr
	s.startSim(simAddr)
	project := s.projects("plant")[0]
	entry := s.manage(project.ID, simURL).entry

	// Alert settings: trigger count 2, e-mail and a webhook.
	const triggerCount = 2
	hook := newSink(t)
	settingsPath := "/api/v1/projects/" + project.ID + "/alert-settings"
	// The sink listens on loopback, which the notification policy refuses
	// by default: the system admin allows it, as a single-host deployment
	// would. Prometheus, on loopback too, stays out of reach
	// (issue #11 finding 2).
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}}, nil); err != nil {
		t.Fatal(err)
	}
	var refused *testbed.APIError
	if err := s.api.Do(ctx, http.MethodPut, settingsPath, map[string]any{
		"enabled": true, "triggerCount": triggerCount, "recoveryCount": 1, "severity": "critical",
		"webhooks": []map[string]string{{"url": promURL + "/-/quit"}},
	}, nil); !errors.As(err, &refused) || refused.Status != http.StatusUnprocessableEntity || refused.Field != "webhooks[0].url" {
		t.Fatalf("a webhook at Prometheus' /-/quit: got %v, want 422 on webhooks[0].url", err)
	}
	if err := s.api.Do(ctx, http.MethodPut, settingsPath, map[string]any{
		"enabled": true, "triggerCount": triggerCount, "recoveryCount": 1, "severity": "critical", "emqxAlertPush": false,
		"emails": []string{"ops@example.test"}, "webhooks": []map[string]string{{"url": hook.URL + "/plant"}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "settings applied to Prometheus and Alertmanager", func() (bool, string) {
		var st struct {
			Status struct{ Delivery, Message string }
		}
		if err := s.api.Do(ctx, http.MethodGet, settingsPath, nil, &st); err != nil {
			return false, err.Error()
		}
		return st.Status.Delivery == "applied", st.Status.Delivery + ": " + st.Status.Message
	})

	// A test notification goes through Alertmanager to both channels, and
	// stays out of ecp's lists.
	if err := s.api.Do(ctx, http.MethodPost, settingsPath+"/test", nil, nil); err != nil {
		t.Fatal(err)
	}
	testSent := time.Now()

	// The agent's series reach Prometheus through ecp, stamped with the
	// project and cluster; pick a connector from them.
	var connector string
	eventually(t, 30*time.Second, "agent series in Prometheus via ecp's remote-write gateway", func() (bool, string) {
		ids := promLabelValues(t, promURL, fmt.Sprintf(`emqx_connector_enabled{project=%q,cluster=%q} == 1`, project.ID, entry.ID), "id")
		if len(ids) == 0 {
			return false, "no series"
		}
		connector = ids[0]
		return true, ""
	})

	t.Cleanup(func() {
		if t.Failed() {
			// E2E_KEEP_LOGS=DIR keeps every daemon's log for a post-mortem.
			if dir := os.Getenv("E2E_KEEP_LOGS"); dir != "" {
				_ = exec.Command("cp", "-r", filepath.Join(s.dir, "logs"), dir).Run()
			}
			for _, u := range []string{amURL + "/api/v2/alerts", s.base + "/metrics", promURL + "/metrics", promURL + "/api/v1/alerts"} {
				if resp, err := http.Get(u); err == nil {
					b, _ := io.ReadAll(resp.Body)
					_ = resp.Body.Close()
					for _, line := range strings.Split(string(b), "\n") {
						if !strings.HasPrefix(line, "#") && (strings.Contains(line, "ecp_alert") || strings.Contains(line, "prometheus_notifications") || strings.Contains(u, "/api/")) {
							t.Logf("%s: %.3000s", u, line)
						}
					}
				}
			}
			for _, q := range []string{fmt.Sprintf("emqx_connector_status{id=%q}", connector), "ALERTS"} {
				t.Logf("prometheus %s: %s", q, promRaw(t, promURL, q))
			}
		}
	})
	down := time.Now()
	simPost(t, simURL+"/sim/connectors/"+connector+"/fail", `{"reason":"e2e: broker of the sink is down"}`)
	want := map[string]string{"project": project.ID, "cluster": entry.ID, "id": connector, "severity": "critical"}
	var active listedAlert
	eventually(t, 45*time.Second, "the alert in ecp's active list", func() (bool, string) {
		items := listAlerts(t, s, project.ID, "active")
		for _, a := range items {
			if a.Name == "EMQXConnectorAbnormal" && a.Labels["id"] == connector {
				active = a
				return true, ""
			}
		}
		return false, fmt.Sprint(items)
	})
	t.Logf("connector down → active in ecp's list: %s (trigger count %d, %s collection and evaluation)", time.Since(down).Round(100*time.Millisecond), triggerCount, reportInterval)
	if active.Project != project.ID || active.Cluster != entry.ID || active.Severity != "critical" || active.Summary == "" ||
		active.Link != s.base+"/clusters/"+entry.ID || active.State != "active" {
		t.Fatalf("active alert %+v", active)
	}
	eventually(t, 30*time.Second, "the project's webhook notified", func() (bool, string) {
		_, ok := hook.find("firing", "EMQXConnectorAbnormal", want)
		return ok, ""
	})
	msg, _ := hook.find("firing", "EMQXConnectorAbnormal", want)
	t.Logf("connector down → project webhook: %s (includes Alertmanager's group_wait)", msg.at.Sub(down).Round(100*time.Millisecond))
	eventually(t, 30*time.Second, "the e-mail in Mailpit", func() (bool, string) {
		body, n := mailFor(t, mailURL, "ops@example.test", connector)
		// Names for people (issue #12 defect 3), ids beside them.
		return n > 0 && strings.Contains(body, "cluster "+entry.Name+" · project "+project.Name+" · acme") &&
			strings.Contains(body, project.ID) && strings.Contains(body, entry.ID), fmt.Sprintf("%d messages", n)
	})

	eventually(t, 30*time.Second, "the test notification by webhook and e-mail", func() (bool, string) {
		_, hooked := hook.find("firing", "ECPTestNotification", map[string]string{"project": project.ID})
		_, mailed := mailFor(t, mailURL, "ops@example.test", "ECPTestNotification")
		return hooked && mailed > 0, fmt.Sprintf("webhook %v, e-mails %d", hooked, mailed)
	})
	t.Logf("test notification → webhook and e-mail within %s", time.Since(testSent).Round(100*time.Millisecond))
	for _, a := range listAlerts(t, s, project.ID, "active") {
		if a.Name == "ECPTestNotification" {
			t.Fatalf("the test notification entered ecp's list: %+v", a)
		}
	}

	healed := time.Now()
	simPost(t, simURL+"/sim/connectors/"+connector+"/heal", "")
	eventually(t, 45*time.Second, "the alert in ecp's history", func() (bool, string) {
		for _, a := range listAlerts(t, s, project.ID, "active") {
			if a.ID == active.ID {
				return false, "still active"
			}
		}
		for _, a := range listAlerts(t, s, project.ID, "history") {
			if a.ID == active.ID {
				return a.State == "history" && a.EndsAt != nil, fmt.Sprint(a)
			}
		}
		return false, "not in history"
	})
	t.Logf("connector healed → history in ecp: %s", time.Since(healed).Round(100*time.Millisecond))

	// Alerting off: Prometheus drops the project's rules, so nothing fires
	// or is sent for it any more.
	if err := s.api.Do(ctx, http.MethodPut, settingsPath, map[string]any{
		"enabled": false, "triggerCount": 2, "recoveryCount": 1, "severity": "critical",
		"emails": []string{"ops@example.test"}, "webhooks": []map[string]string{{"url": hook.URL + "/plant"}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the project's rules gone from Prometheus", func() (bool, string) {
		var r struct {
			Data struct {
				Groups []struct{ Name string } `json:"groups"`
			} `json:"data"`
		}
		getJSON(t, promURL+"/api/v1/rules", &r)
		for _, g := range r.Data.Groups {
			if strings.Contains(g.Name, project.ID) {
				return false, g.Name
			}
		}
		return true, ""
	})
}

func listAlerts(t *testing.T, s *stack, project, state string) []listedAlert {
	t.Helper()
	var out struct{ Items []listedAlert }
	if err := s.api.Do(t.Context(), http.MethodGet, "/api/v1/projects/"+project+"/alerts?state="+state, nil, &out); err != nil {
		t.Fatal(err)
	}
	return out.Items
}

// promLabelValues runs an instant query and returns label's values.
func promLabelValues(t *testing.T, promURL, query, label string) []string {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var r struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range r.Data.Result {
		out = append(out, m.Metric[label])
	}
	return out
}

// promRaw is an instant query's raw reply, for failure logs.
func promRaw(t *testing.T, promURL, query string) string {
	t.Helper()
	resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
	return string(b)
}

func simPost(t *testing.T, u, body string) {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: %s %s", u, resp.Status, b)
	}
}

// mailFor returns the text of the messages to addr that mention needle,
// and how many there are, from Mailpit's API.
func mailFor(t *testing.T, mailURL, addr, needle string) (string, int) {
	t.Helper()
	var list struct {
		Messages []struct {
			ID      string `json:"ID"`
			Subject string `json:"Subject"`
		} `json:"messages"`
	}
	getJSON(t, mailURL+"/api/v1/search?query="+url.QueryEscape("to:"+addr), &list)
	var texts []string
	for _, m := range list.Messages {
		var msg struct {
			Text string `json:"Text"`
			HTML string `json:"HTML"`
		}
		getJSON(t, mailURL+"/api/v1/message/"+m.ID, &msg)
		text := m.Subject + "\n" + msg.Text + "\n" + msg.HTML
		if strings.Contains(text, needle) {
			texts = append(texts, text)
		}
	}
	return strings.Join(texts, "\n---\n"), len(texts)
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}
