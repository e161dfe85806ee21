package console_test

import (
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resolved posts an alert episode that ended to ecp's webhook, as
// Alertmanager does, so that it lands in the history.
func (e *env) resolved(project, cluster, name, severity string, start, end time.Time) {
	e.t.Helper()
	e.hook("resolved", map[string]any{
		"status": "resolved", "fingerprint": "fp-" + name + cluster, "startsAt": start.UTC(), "endsAt": end.UTC(),
		"labels": map[string]string{"alertname": name, "project": project, "cluster": cluster, "severity": severity},
	})
}

// TestAlertsStormGuard: when the project's storm guard trips, the alert
// list says so plainly (since when, how many alerts, the threshold) to
// everyone who sees the project; an admin clears it from there, a viewer
// gets no button and is refused a forced clear, a stranger gets 404.
func TestAlertsStormGuard(t *testing.T) {
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	e.user("stranger", "project-admin", e.other)
	e.api(200, "PUT", "/api/v1/projects/"+e.project+"/alert-settings", e.admin, map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "warning", "stormThreshold": 5})
	id := e.createCluster(e.project, "edge-1")
	path := "/projects/" + e.project + "/alerts"

	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	if p := b.get(path); strings.Contains(p.body, `id="storm"`) {
		t.Fatalf("storm shown before any alert:\n%s", p.body)
	}
	for i := range 5 {
		e.fire(e.project, id, "EMQXRuleAbnormal"+strconv.Itoa(i))
	}
	p := b.get(path)
	body := html.UnescapeString(p.body)
	for _, want := range []string{`<div class="error" role="alert" id="storm">`, "Alert storm: this project's notifications are stopped.",
		"5 new alerts arrived within a minute (the threshold is 5)", `action="/projects/` + e.project + `/alerts/storm/clear"`} {
		if !strings.Contains(body, want) {
			t.Errorf("admin's alert list lacks %q:\n%s", want, body)
		}
	}
	// The polled table carries it too, so an open page shows it.
	frag := b.do("GET", path+"?state=active", nil, map[string]string{"HX-Request": "true", "HX-Target": "alerts-body"})
	if !strings.Contains(frag.body, `id="storm"`) {
		t.Errorf("the refreshed table lacks the storm:\n%s", frag.body)
	}

	v := e.browser()
	mustStatus(t, v.login("victor", "victor-password"), http.StatusSeeOther, "viewer login")
	p = v.get(path)
	if !strings.Contains(p.body, `id="storm"`) || strings.Contains(p.body, "/alerts/storm/clear") {
		t.Errorf("viewer: storm shown without a clear button wanted:\n%s", p.body)
	}
	mustStatus(t, v.post("/projects/"+e.project+"/alerts/storm/clear", nil), http.StatusForbidden, "viewer's forced clear")
	s := e.browser()
	mustStatus(t, s.login("stranger", "stranger-password"), http.StatusSeeOther, "stranger login")
	mustStatus(t, s.get("/projects/"+e.other+"/alerts"), http.StatusOK, "stranger's own alerts")
	mustStatus(t, s.post("/projects/"+e.project+"/alerts/storm/clear", nil), http.StatusNotFound, "stranger's clear")

	p = b.post("/projects/"+e.project+"/alerts/storm/clear", nil)
	mustStatus(t, p, http.StatusSeeOther, "clear")
	p = b.get(p.header.Get("Location"))
	if strings.Contains(p.body, `id="storm"`) || !strings.Contains(html.UnescapeString(p.body), "Alert storm cleared: the project's notifications flow again.") {
		t.Errorf("after clearing:\n%s", p.body)
	}
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/alerts/storm", e.admin, nil)); !strings.Contains(got, `"state":"normal"`) {
		t.Errorf("storm after the console cleared it: %s", got)
	}
}

// TestAlertsHistorySearchAndClear: the history searches by rule, cluster,
// severity and time range (UTC), and a project admin clears it by count or
// by time from the same page, with a refusal beside its field; a viewer
// searches but gets no clear form and is refused a forced one.
func TestAlertsHistorySearchAndClear(t *testing.T) {
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	a := e.createCluster(e.project, "edge-1")
	c := e.createCluster(e.project, "line-2")
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	e.resolved(e.project, a, "EMQXNodeDown", "critical", day.Add(1*time.Hour), day.Add(2*time.Hour))
	e.resolved(e.project, c, "EMQXNodeDown", "warning", day.Add(5*time.Hour), day.Add(6*time.Hour))
	e.resolved(e.project, a, "EMQXRuleAbnormal", "warning", day.Add(9*time.Hour), day.Add(10*time.Hour))
	base := "/projects/" + e.project + "/alerts?state=history"

	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	rows := func(q string) int {
		t.Helper()
		p := b.get(base + q)
		mustStatus(t, p, http.StatusOK, "history "+q)
		return strings.Count(p.body, "<tr data-alert=")
	}
	for q, want := range map[string]int{
		"": 3, "&rule=EMQXNodeDown": 2, "&rule=EMQXNodeDown&cluster=" + a: 1, "&severity=critical": 1,
		"&from=2026-03-01T04:00&to=2026-03-01T08:00": 1, "&from=2026-03-01T04:00": 2, "&rule=BackupOverdue": 0,
	} {
		if got := rows(q); got != want {
			t.Errorf("history%s: %d rows, want %d", q, got, want)
		}
	}
	p := b.get(base + "&from=yesterday")
	mustStatus(t, p, http.StatusBadRequest, "bad from")
	if !strings.Contains(p.body, `id="al-from-error"><p>from must be a date and time such as 2026-01-31T12:00 (UTC)`) {
		t.Errorf("bad from not shown beside the field:\n%s", p.body)
	}

	// Clear: a bad count beside its field, then the oldest one, then by time.
	clear := "/projects/" + e.project + "/alerts/history/clear"
	p = b.post(clear, url.Values{"count": {"0"}})
	mustStatus(t, p, http.StatusBadRequest, "bad count")
	if !strings.Contains(html.UnescapeString(p.body), `id="clear-count-error"><p>count must be a whole number from 1 to 50000, got "0"`) {
		t.Errorf("bad count not shown beside the field:\n%s", p.body)
	}
	p = b.post(clear, url.Values{"count": {"1"}})
	mustStatus(t, p, http.StatusSeeOther, "clear by count")
	p = b.get(p.header.Get("Location"))
	if !strings.Contains(p.body, "Removed 1 record.") || strings.Count(p.body, "<tr data-alert=") != 2 || strings.Contains(p.body, "critical</span>") {
		t.Errorf("after clearing the oldest: want the two later records:\n%s", p.body)
	}
	mustStatus(t, b.post(clear, url.Values{"before": {"2026-03-01T07:00"}}), http.StatusSeeOther, "clear by time")
	if got := rows(""); got != 1 {
		t.Errorf("after clearing before 07:00: %d rows, want 1", got)
	}

	v := e.browser()
	mustStatus(t, v.login("victor", "victor-password"), http.StatusSeeOther, "viewer login")
	p = v.get(base + "&rule=EMQXRuleAbnormal")
	if strings.Count(p.body, "<tr data-alert=") != 1 || strings.Contains(p.body, "history/clear") {
		t.Errorf("viewer: search wanted, no clear form:\n%s", p.body)
	}
	mustStatus(t, v.post(clear, url.Values{"count": {"1"}}), http.StatusForbidden, "viewer's forced clear")
	if got := rows(""); got != 1 {
		t.Errorf("the viewer's forced clear removed records: %d left", got)
	}
}
