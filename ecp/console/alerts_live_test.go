package console_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/alerts"
)

// fire posts a firing alert to ecp's Alertmanager webhook, as Alertmanager
// does.
func (e *env) fire(project, cluster, name string) {
	e.t.Helper()
	e.hook("firing", map[string]any{
		"status": "firing", "fingerprint": "fp-" + name, "startsAt": time.Now().UTC().Add(-time.Minute).Truncate(time.Second),
		"labels": map[string]string{"alertname": name, "project": project, "cluster": cluster, "severity": "warning"},
	})
}

// hook posts one alert to ecp's Alertmanager webhook in a notification of
// status, as Alertmanager does.
func (e *env) hook(status string, alert map[string]any) {
	e.t.Helper()
	token, err := alerts.WebhookToken(context.Background(), e.app.EtcdClient(), e.app.SecretsKey())
	if err != nil {
		e.t.Fatal(err)
	}
	e.api(204, "POST", alerts.WebhookPath, token.Reveal(), map[string]any{"version": "4", "status": status, "alerts": []map[string]any{alert}})
}

// TestJourneyAlertsPageRefreshes: the alert list polls its table with its
// filters, and the table alone answers, with an alert that fired after the
// page was loaded.
func TestJourneyAlertsPageRefreshes(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/alerts?cluster=" + id + "&state=active"
	p := b.get(path)
	mustStatus(t, p, http.StatusOK, "alerts")
	self := "/projects/" + e.project + "/alerts?cluster=" + id + "&amp;state=active"
	if !strings.Contains(p.body, `<div id="alerts-body" hx-get="`+self+`" hx-trigger="every `) {
		t.Fatalf("alerts page does not refresh its table with its filters:\n%s", p.body)
	}
	e.fire(e.project, id, "EMQXConnectorAbnormal")
	frag := b.do("GET", path, nil, map[string]string{"HX-Request": "true", "HX-Target": "alerts-body"})
	mustStatus(t, frag, http.StatusOK, "alerts fragment")
	body := strings.TrimSpace(frag.body)
	if !strings.HasPrefix(body, `<div id="alerts-body"`) || strings.Contains(body, "<html") {
		t.Fatalf("fragment is not the table alone:\n%s", body)
	}
	if !strings.Contains(body, "EMQXConnectorAbnormal") || !strings.Contains(body, ">edge-1<") {
		t.Fatalf("fragment lacks the new alert:\n%s", body)
	}
}

// TestJourneyAlertSettingsRejectedKeepsInput: a refused settings form shows
// what was typed, every error beside its field in the form's words, and no
// delivery banner of the saved settings over it.
func TestJourneyAlertSettingsRejectedKeepsInput(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/alert-settings"
	mustStatus(t, b.get(path), http.StatusOK, "settings")
	emails := "ops@example.com\n\nnot-an-address"
	hooks := "ftp://hooks.example.com/x"
	p := b.post(path, url.Values{"enabled": {"on"}, "triggerCount": {"three"}, "recoveryCount": {"0"}, "severity": {"warning"},
		"emails": {emails}, "webhooks": {hooks}})
	mustStatus(t, p, http.StatusBadRequest, "rejected settings")
	body := html.UnescapeString(p.body)
	for _, want := range []string{
		`value="three"`, `value="0"`, ">" + emails + "</textarea>", ">" + hooks + "</textarea>",
		"Trigger count must be a whole number, got \"three\"",
		"Recovery count must be a whole number from 1 to",
		"Line 3 must be an e-mail address",
		"Line 1 must be an absolute http:// or https:// URL",
		"Not saved",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("rejected form lacks %q", want)
		}
	}
	for field, want := range map[string]string{"triggerCount": "Trigger count", "recoveryCount": "Recovery count", "emails": "Line 3", "webhooks": "Line 1"} {
		_, after, ok := strings.Cut(body, `id="`+field+`-error">`)
		if !ok || !strings.Contains(after[:min(len(after), 300)], want) {
			t.Errorf("error %q not beside %s", want, field)
		}
	}
	for _, api := range []string{"triggerCount must", "recoveryCount must", "emails[", "webhooks[0]", `class="notice delivery-`} {
		if strings.Contains(body, api) {
			t.Errorf("rejected form shows %q", api)
		}
	}
	// The notification policy's refusals come all at once too.
	p = b.post(path, url.Values{"enabled": {"on"}, "triggerCount": {"3"}, "recoveryCount": {"2"}, "severity": {"warning"},
		"webhooks": {"http://127.0.0.1:9/a\n\nhttp://169.254.169.254/latest/meta-data/"}})
	mustStatus(t, p, http.StatusUnprocessableEntity, "refused webhooks")
	for _, want := range []string{"Line 1 is refused by the notification policy", "Line 3 is refused by the notification policy: 169.254.169.254 is a link-local address"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("refused webhooks: page lacks %q", want)
		}
	}
}

// TestJourneySwitchingOffFiringAlertsWarns: switching alerting off while
// alerts fire names them and saves nothing until confirmed.
func TestJourneySwitchingOffFiringAlertsWarns(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/alert-settings"
	on := url.Values{"enabled": {"on"}, "triggerCount": {"3"}, "recoveryCount": {"2"}, "severity": {"warning"}}
	mustStatus(t, b.post(path, on), http.StatusSeeOther, "switch on")
	e.fire(e.project, id, "EMQXRuleFailed")
	off := url.Values{"triggerCount": {"5"}, "recoveryCount": {"2"}, "severity": {"critical"}}
	p := b.post(path, off)
	mustStatus(t, p, http.StatusConflict, "switch off while firing")
	for _, want := range []string{`id="firing-warning"`, "1 alert is firing", "EMQXRuleFailed on edge-1", `name="confirmFiring" value="yes"`, `value="5"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("warning page lacks %q:\n%s", want, p.body)
		}
	}
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/alert-settings", e.admin, nil)); !strings.Contains(got, `"enabled":true`) {
		t.Fatalf("switched off without confirmation: %s", got)
	}
	off.Set("confirmFiring", "yes")
	mustStatus(t, b.post(path, off), http.StatusSeeOther, "confirmed")
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/alert-settings", e.admin, nil)); !strings.Contains(got, `"enabled":false`) || !strings.Contains(got, `"triggerCount":5`) {
		t.Fatalf("confirmed switch-off not stored: %s", got)
	}
}

// TestJourneyRemovingFiringAlertWarns: removing an alert that still fires
// says that it only leaves the list and comes back, and removes nothing
// until confirmed.
func TestJourneyRemovingFiringAlertWarns(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	e.fire(e.project, id, "EMQXConnectorAbnormal")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	list := b.get("/projects/" + e.project + "/alerts")
	m := regexpAlertRow.FindStringSubmatch(list.body)
	if m == nil {
		t.Fatalf("no alert row:\n%s", list.body)
	}
	remove := "/projects/" + e.project + "/alerts/" + m[1] + "/delete"
	p := b.post(remove, url.Values{"state": {"active"}})
	mustStatus(t, p, http.StatusOK, "remove a firing alert")
	for _, want := range []string{`id="firing-warning"`, "EMQXConnectorAbnormal</strong> on edge-1 is still firing", "comes back with its next notification", `name="confirm" value="yes"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("removal of a firing alert lacks %q:\n%s", want, p.body)
		}
	}
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/alerts?state=active", e.admin, nil)); !strings.Contains(got, m[1]) {
		t.Fatalf("removed without confirmation: %s", got)
	}
	mustStatus(t, b.post(remove, url.Values{"state": {"active"}, "confirm": {"yes"}}), http.StatusSeeOther, "confirmed removal")
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/alerts?state=active", e.admin, nil)); strings.Contains(got, m[1]) {
		t.Fatalf("confirmed removal left the alert: %s", got)
	}
}

var regexpAlertRow = regexp.MustCompile(`data-alert="([^"]+)"`)
