package console_test

import (
	"bytes"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/internal/testbed"
)

// withAlertmanager starts Debian's Alertmanager for the test and wires ecp
// to it, as `ecp serve --alertmanager.*` does.
func withAlertmanager(t *testing.T) (func(*app.Options), string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Alertmanager; skipped with -short")
	}
	bin, err := testbed.Alertmanager.Find("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "alertmanager.yml")
	proc, err := testbed.StartAlertmanager(t.Context(), bin, dir, addr, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop() })
	am := "http://" + addr
	return func(o *app.Options) {
		o.Alerts.AlertmanagerURL, o.Alerts.AlertmanagerConfigFile, o.Alerts.RulesDir = am, config, filepath.Join(dir, "rules")
	}, am
}

// fireAt posts a firing alert to Alertmanager itself, as Prometheus does
// (its times in milliseconds), and returns its start.
func fireAt(t testing.TB, am, project, cluster, name string) time.Time {
	t.Helper()
	start := time.Now().UTC().Truncate(time.Millisecond)
	b, _ := json.Marshal([]map[string]any{{"labels": map[string]string{"alertname": name, "project": project, "cluster": cluster, "severity": "warning"},
		"startsAt": start}})
	resp, err := http.Post(am+"/api/v2/alerts", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alertmanager took the alert with %s", resp.Status)
	}
	return start
}

var alertRow = regexp.MustCompile(`<tr data-alert="([^"]+)">`)

// TestAlertsSilences: from the active list an admin silences one alert and
// one cluster (forms on console routes, through the silences service), the
// list marks the silenced alert with who silenced it, until when and why,
// and lists the silences with expire buttons; a refused form shows the
// error beside its field; a viewer sees the silences without a form or a
// button, and is refused a forced one; a stranger sees nothing.
func TestAlertsSilences(t *testing.T) {
	wire, am := withAlertmanager(t)
	e := start(t, wire)
	e.user("victor", "project-viewer", e.project)
	e.user("stranger", "project-admin", e.other)
	edge := e.createCluster(e.project, "edge-1")
	line := e.createCluster(e.project, "line-2")
	alertsPath := "/projects/" + e.project + "/alerts"

	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	e.fire(e.project, edge, "EMQXConnectorAbnormal")
	p := b.get(alertsPath)
	mustStatus(t, p, http.StatusOK, "alerts")
	m := alertRow.FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("no alert on the list:\n%s", p.body)
	}
	alertID := m[1]
	if !strings.Contains(p.body, `href="/projects/`+e.project+`/silences/new?alert=`+alertID+`"`) || !strings.Contains(p.body, "No silences: every alert notifies.") {
		t.Fatalf("admin's active list lacks the Silence link or the empty silences list:\n%s", p.body)
	}

	// The form opened from the alert offers the alert, its cluster and its rule.
	p = b.get("/projects/" + e.project + "/silences/new?alert=" + alertID)
	mustStatus(t, p, http.StatusOK, "new silence")
	body := html.UnescapeString(p.body)
	for _, want := range []string{`value="alert" checked> This alert: <strong>EMQXConnectorAbnormal</strong> on edge-1`,
		`<option value="` + edge + `" selected>edge-1</option>`, `<option selected>connectorAbnormal</option>`} {
		if !strings.Contains(body, want) {
			t.Errorf("new silence form lacks %q:\n%s", want, body)
		}
	}
	// Refused: the errors beside their fields, the input kept.
	p = b.post("/projects/"+e.project+"/silences", url.Values{"scope": {"alert"}, "alert": {alertID}, "duration": {"90d"}, "comment": {" "}})
	mustStatus(t, p, http.StatusBadRequest, "refused silence")
	body = html.UnescapeString(p.body)
	for _, want := range []string{`<div class="field-error" id="duration-error"><p>duration must be from 1m to 30d; got 90d</p>`,
		`<div class="field-error" id="comment-error"><p>comment must say why the alerts are silenced</p>`, `value="90d"`} {
		if !strings.Contains(body, want) {
			t.Errorf("refused silence lacks %q:\n%s", want, body)
		}
	}
	p = b.post("/projects/"+e.project+"/silences", url.Values{"scope": {"alert"}, "alert": {alertID}, "duration": {"2h"}, "comment": {"connector swap tonight"}})
	mustStatus(t, p, http.StatusSeeOther, "silence the alert")
	if loc := p.header.Get("Location"); loc != alertsPath+"?done=silenced" {
		t.Errorf("after the silence: %s", loc)
	}
	// A cluster, from the form without an alert; Alertmanager holds an
	// alert of it, which the list shows silenced.
	fireAt(t, am, e.project, line, "EMQXNodeDown")
	mustStatus(t, b.post("/projects/"+e.project+"/silences", url.Values{"scope": {"cluster"}, "cluster": {line}, "duration": {"30m"}, "comment": {"rack move"}}),
		http.StatusSeeOther, "silence the cluster")

	deadline := time.Now().Add(10 * time.Second)
	for {
		p = b.get(alertsPath)
		if strings.Contains(p.body, `data-silenced=`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	body = html.UnescapeString(p.body)
	for _, want := range []string{
		`<span class="badge sev-info">silenced</span> by admin until `, `: “rack move”`,
		"alert EMQXConnectorAbnormal, cluster edge-1", "cluster line-2", "connector swap tonight",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("active list lacks %q:\n%s", want, body)
		}
	}
	expire := regexp.MustCompile(`action="/projects/`+e.project+`/silences/([0-9a-f-]+)/expire"`).FindAllStringSubmatch(p.body, -1)
	if len(expire) != 2 {
		t.Fatalf("%d expire buttons, want 2:\n%s", len(expire), p.body)
	}

	// A viewer sees the silences and the silenced alert, with no form.
	v := e.browser()
	mustStatus(t, v.login("victor", "victor-password"), http.StatusSeeOther, "viewer login")
	p = v.get(alertsPath)
	mustStatus(t, p, http.StatusOK, "viewer alerts")
	if !strings.Contains(p.body, "rack move") || !strings.Contains(p.body, "data-silenced=") {
		t.Errorf("viewer does not see the silences:\n%s", p.body)
	}
	for _, no := range []string{"/expire", "/silences/new", "<form method=\"post\""} {
		if strings.Contains(p.body, no) {
			t.Errorf("viewer's alert list has %q", no)
		}
	}
	mustStatus(t, v.get("/projects/"+e.project+"/silences/new"), http.StatusForbidden, "viewer's silence form")
	mustStatus(t, v.post("/projects/"+e.project+"/silences", url.Values{"scope": {"cluster"}, "cluster": {edge}, "duration": {"1h"}, "comment": {"x"}}),
		http.StatusForbidden, "viewer's forced silence")
	mustStatus(t, v.post("/projects/"+e.project+"/silences/"+expire[0][1]+"/expire", nil), http.StatusForbidden, "viewer's forced expire")

	// A stranger sees neither the list nor the silences, and cannot expire one.
	s := e.browser()
	mustStatus(t, s.login("stranger", "stranger-password"), http.StatusSeeOther, "stranger login")
	mustStatus(t, s.get(alertsPath), http.StatusNotFound, "stranger's alerts")
	mustStatus(t, s.get("/projects/"+e.other+"/alerts"), http.StatusOK, "stranger's own alerts")
	mustStatus(t, s.post("/projects/"+e.other+"/silences/"+expire[0][1]+"/expire", nil), http.StatusNotFound, "stranger's expire")

	// The admin expires one; the list keeps the other.
	mustStatus(t, b.post("/projects/"+e.project+"/silences/"+expire[0][1]+"/expire", nil), http.StatusSeeOther, "expire")
	p = b.get(alertsPath + "?done=silence-ended")
	if got := strings.Count(p.body, "/expire\""); got != 1 || !strings.Contains(p.body, "Silence expired: its alerts notify again.") {
		t.Errorf("after expiring one: %d expire buttons, want 1:\n%s", got, p.body)
	}

	// Audited under the console's routes.
	var log struct {
		Items []struct {
			Actor, Method, Route, Target string
			Status                       int
		}
	}
	if err := json.Unmarshal(e.api(200, "GET", "/api/v1/audit?limit=200", e.admin, nil), &log); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, rec := range log.Items {
		seen[rec.Actor+" "+rec.Route+" "+http.StatusText(rec.Status)] = true
	}
	for _, want := range []string{"admin /projects/{project}/silences See Other", "admin /projects/{project}/silences Bad Request",
		"admin /projects/{project}/silences/{id}/expire See Other", "victor /projects/{project}/silences Forbidden"} {
		if !seen[want] {
			t.Errorf("no audit record %q in %v", want, seen)
		}
	}
}
