package alerts

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/rules"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func connectorAlert(project string, startsAt time.Time) webhookAlert {
	return webhookAlert{
		Status: "firing", Fingerprint: "fp-" + project + "-1", StartsAt: startsAt,
		Labels: map[string]string{"alertname": "EMQXConnectorAbnormal", "project": project, "cluster": "c1", "id": "http:sink", "severity": "critical"},
		Annotations: map[string]string{"summary": "EMQX connector http:sink is not connected in cluster c1.",
			"description": "Connector http:sink on cluster c1 is enabled but not connected.", "link": "https://ecp.example.test/clusters/c1"},
	}
}

// TestWebhookKeepsActiveAndHistory walks one alert episode through the
// webhook: firing makes it active (once, however often it is repeated),
// resolution moves it to history, a late firing of the same episode does
// not bring it back, and a new episode is a new alert.
func TestWebhookKeepsActiveAndHistory(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	clk := &clock{t: t0}
	a := newService(t, w, Options{Now: clk.now})
	p := w.project.ID

	a.must(http.StatusBadRequest, "", http.MethodPost, WebhookPath, nil, "Authorization", "Bearer "+a.svc.token.Reveal()) // no body
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name, auth string
			body       any
			want       int
		}{
			{"no token", "", webhookMessage{Version: "4"}, 401},
			{"a wrong token", "Bearer nope", webhookMessage{Version: "4"}, 401},
			{"a user's kind of token on the right path", "Bearer " + a.svc.token.Reveal()[1:], webhookMessage{Version: "4"}, 401},
			{"another payload version", "Bearer " + a.svc.token.Reveal(), webhookMessage{Version: "3"}, 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a.must(tc.want, "", http.MethodPost, WebhookPath, tc.body, "Authorization", tc.auth)
			})
		}
	})

	fire := connectorAlert(p, t0)
	a.must(204, "", http.MethodPost, WebhookPath, webhookMessage{Version: "4", Status: "firing", Alerts: []webhookAlert{fire}}, "Authorization", "Bearer "+a.svc.token.Reveal())
	active := a.list(p, "state=active")
	if len(active) != 1 {
		t.Fatalf("active list %+v, want the one alert", active)
	}
	got := active[0]
	want := Alert{ID: AlertID(fire.Fingerprint, t0), Name: "EMQXConnectorAbnormal", Project: p, Cluster: "c1", Severity: "critical",
		Summary: fire.Annotations["summary"], Description: fire.Annotations["description"], Link: "https://ecp.example.test/clusters/c1",
		StartsAt: t0, State: StateActive}
	if got.ID != want.ID || got.Name != want.Name || got.Project != want.Project || got.Cluster != want.Cluster || got.Severity != want.Severity ||
		got.Summary != want.Summary || got.Description != want.Description || got.Link != want.Link || !got.StartsAt.Equal(t0) ||
		got.State != StateActive || got.EndsAt != nil || got.Labels["id"] != "http:sink" {
		t.Fatalf("active alert\n got %+v\nwant %+v", got, want)
	}

	// Repeats within refreshEvery write nothing; the episode keeps its id.
	before := testutil.ToFloat64(a.svc.metrics.notifications.WithLabelValues("unchanged"))
	a.notify("firing", fire)
	if n := testutil.ToFloat64(a.svc.metrics.notifications.WithLabelValues("unchanged")); n != before+1 {
		t.Fatalf("a repeated notification was stored again (unchanged %v → %v)", before, n)
	}
	if len(a.list(p, "state=active")) != 1 {
		t.Fatal("a repeat made a second alert")
	}
	if len(a.list(w.foreign.ID, "state=active")) != 0 {
		t.Fatal("another project sees the alert")
	}

	// Resolution moves it to history with its end.
	clk.add(time.Minute)
	res := fire
	res.Status, res.EndsAt = "resolved", t0.Add(50*time.Second)
	a.notify("resolved", res)
	if got := a.list(p, "state=active"); len(got) != 0 {
		t.Fatalf("resolved alert still active: %+v", got)
	}
	hist := a.list(p, "state=history")
	if len(hist) != 1 || hist[0].ID != want.ID || hist[0].State != StateHistory || hist[0].EndReason != EndResolved ||
		hist[0].EndsAt == nil || !hist[0].EndsAt.Equal(res.EndsAt) {
		t.Fatalf("history %+v, want the resolved episode ending at %s", hist, res.EndsAt)
	}

	// A late firing notification of the ended episode (a retry that
	// crossed the resolution) does not resurrect it.
	a.notify("firing", fire)
	if got := a.list(p, "state=active"); len(got) != 0 {
		t.Fatalf("a late firing resurrected the episode: %+v", got)
	}
	// The next outage of the same connector is a new episode.
	again := connectorAlert(p, t0.Add(10*time.Minute))
	a.notify("firing", again)
	if got := a.list(p, "state=active"); len(got) != 1 || got[0].ID == want.ID {
		t.Fatalf("new episode: %+v", got)
	}

	// Test notifications and alerts without a project never enter a list.
	test := connectorAlert(p, t0)
	test.Fingerprint, test.Labels = "fp-test", map[string]string{"alertname": TestAlertName, "project": p, LabelTest: "x"}
	stray := connectorAlert(p, t0)
	stray.Fingerprint, stray.Labels = "fp-stray", map[string]string{"alertname": "Other"}
	a.notify("firing", test, stray)
	if got := a.list(p, "state=active"); len(got) != 1 {
		t.Fatalf("test or stray alert listed: %+v", got)
	}
	if n := testutil.ToFloat64(a.svc.metrics.notifications.WithLabelValues("ignored")); n != 2 {
		t.Fatalf("ignored %v, want 2", n)
	}
}

// TestListFilters: cluster, severity and time range select, newest first,
// and bad filters name the field.
func TestListFilters(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	clk := &clock{t: t0.Add(time.Hour)}
	a := newService(t, w, Options{Now: clk.now})
	p := w.project.ID
	mk := func(fp, cluster, severity string, start time.Time) webhookAlert {
		al := connectorAlert(p, start)
		al.Fingerprint = fp
		al.Labels = map[string]string{"alertname": "EMQXNodeDown", "project": p, "cluster": cluster, "severity": severity}
		return al
	}
	a.notify("firing",
		mk("a", "c1", "critical", t0),
		mk("b", "c2", "warning", t0.Add(10*time.Minute)),
		mk("c", "c1", "warning", t0.Add(20*time.Minute)))
	ids := func(items []Alert) string {
		var s []string
		for _, it := range items {
			s = append(s, it.Labels["cluster"]+"/"+it.Severity+"@"+it.StartsAt.Sub(t0).String())
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct{ query, want string }{
		{"", "c1/warning@20m0s c2/warning@10m0s c1/critical@0s"},
		{"cluster=c1", "c1/warning@20m0s c1/critical@0s"},
		{"severity=warning", "c1/warning@20m0s c2/warning@10m0s"},
		{"to=" + t0.Add(5*time.Minute).Format(time.RFC3339), "c1/critical@0s"},
		{"from=" + t0.Add(15*time.Minute).Format(time.RFC3339) + "&cluster=c2", "c2/warning@10m0s"}, // still active: overlaps
		{"limit=1", "c1/warning@20m0s"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			if got := ids(a.list(p, tc.query)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	for _, q := range []string{"state=gone", "severity=urgent", "from=yesterday", "limit=0", "limit=5000",
		"from=" + t0.Format(time.RFC3339) + "&to=" + t0.Add(-time.Hour).Format(time.RFC3339)} {
		t.Run("bad "+q, func(t *testing.T) {
			a.must(400, "root", http.MethodGet, "/api/v1/projects/"+p+"/alerts?"+q, nil)
		})
	}
}

// TestDeleteByHand: a project admin removes an alert from either list;
// viewers may not, strangers do not learn it exists.
func TestDeleteByHand(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, Options{Now: (&clock{t: t0}).now})
	p := w.project.ID
	fire := connectorAlert(p, t0)
	a.notify("firing", fire)
	id := AlertID(fire.Fingerprint, t0)
	a.must(403, "viewer", http.MethodDelete, "/api/v1/alerts/"+id, nil)
	a.must(404, "stranger", http.MethodDelete, "/api/v1/alerts/"+id, nil)
	a.must(401, "", http.MethodDelete, "/api/v1/alerts/"+id, nil)
	a.must(204, "padmin", http.MethodDelete, "/api/v1/alerts/"+id, nil)
	a.must(404, "padmin", http.MethodDelete, "/api/v1/alerts/"+id, nil)
	if got := a.list(p, ""); len(got) != 0 {
		t.Fatalf("deleted alert still listed: %+v", got)
	}
	// From history too.
	res := fire
	res.Status, res.EndsAt = "resolved", t0.Add(time.Minute)
	a.notify("resolved", res)
	if len(a.list(p, "state=history")) != 1 {
		t.Fatal("resolution of an alert ecp never saw firing is not in history")
	}
	a.must(204, "root", http.MethodDelete, "/api/v1/alerts/"+id, nil)
	if got := a.list(p, "state=history"); len(got) != 0 {
		t.Fatalf("deleted alert still in history: %+v", got)
	}
}

// TestStaleAlertsMoveToHistory: an active alert Alertmanager stopped
// re-notifying (its resolution lost) leaves the active list after
// StaleAfter, marked stale.
func TestStaleAlertsMoveToHistory(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	clk := &clock{t: t0}
	a := newService(t, w, Options{Now: clk.now, StaleAfter: 3 * time.Hour})
	p := w.project.ID
	old, fresh := connectorAlert(p, t0), connectorAlert(p, t0)
	fresh.Fingerprint = "fp-fresh"
	a.notify("firing", old, fresh)
	clk.add(2 * time.Hour)
	a.notify("firing", fresh) // refreshed by Alertmanager's repeat
	clk.add(90 * time.Minute)
	if err := a.svc.sweepStale(t.Context()); err != nil {
		t.Fatal(err)
	}
	active, hist := a.list(p, "state=active"), a.list(p, "state=history")
	if len(active) != 1 || active[0].Fingerprint != "fp-fresh" {
		t.Fatalf("active %+v, want only the refreshed alert", active)
	}
	if len(hist) != 1 || hist[0].EndReason != EndStale || !hist[0].EndsAt.Equal(t0) {
		t.Fatalf("history %+v, want the stale alert ending at its last notification", hist)
	}
}

// TestSettingsAPI: defaults before anything is saved, validation naming
// the field, roles, and the "not configured" status without files.
func TestSettingsAPI(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, Options{})
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	var got SettingsReply
	a.must(200, "viewer", http.MethodGet, path, nil).decode(t, &got)
	if got.Enabled || got.TriggerCount != 3 || got.RecoveryCount != 2 || got.Severity != "warning" || got.Emails == nil || got.UpdatedAt != nil {
		t.Fatalf("defaults %+v", got)
	}
	if got.Status.Delivery != DeliveryNotConfigured || !strings.Contains(got.Status.Message, "--prometheus.rules-dir") {
		t.Fatalf("status without files: %+v", got.Status)
	}
	good := map[string]any{"enabled": true, "triggerCount": 2, "recoveryCount": 1, "severity": "critical",
		"emqxAlertPush": false, "emails": []string{"ops@example.test"}, "webhooks": []map[string]string{{"url": "https://hooks.example.test/x"}}}
	for _, tc := range []struct {
		name, field string
		change      func(map[string]any)
	}{
		{"trigger count 0", "triggerCount", func(m map[string]any) { m["triggerCount"] = 0 }},
		{"recovery count 101", "recoveryCount", func(m map[string]any) { m["recoveryCount"] = 101 }},
		{"unknown severity", "severity", func(m map[string]any) { m["severity"] = "urgent" }},
		{"bad e-mail", "emails[0]", func(m map[string]any) { m["emails"] = []string{"Ops <ops@example.test>"} }},
		{"webhook with credentials", "webhooks[0].url", func(m map[string]any) { m["webhooks"] = []map[string]string{{"url": "https://u:p@hooks.example.test"}} }},
		{"unknown field", "", func(m map[string]any) { m["colour"] = "red" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{}
			for k, v := range good {
				body[k] = v
			}
			tc.change(body)
			var e struct{ Error struct{ Field string } }
			a.must(400, "padmin", http.MethodPut, path, body).decode(t, &e)
			if e.Error.Field != tc.field {
				t.Fatalf("field %q, want %q", e.Error.Field, tc.field)
			}
		})
	}
	a.must(403, "viewer", http.MethodPut, path, good)
	a.must(404, "stranger", http.MethodPut, path, good)
	a.must(404, "stranger", http.MethodGet, path, nil)
	a.must(200, "padmin", http.MethodPut, path, good).decode(t, &got)
	if !got.Enabled || got.TriggerCount != 2 || got.Emails[0] != "ops@example.test" || got.UpdatedAt == nil {
		t.Fatalf("saved %+v", got)
	}
	// What GET returned can be sent back as is.
	a.must(200, "padmin", http.MethodPut, path, got)
	// Nothing configured: no test notification to send.
	a.must(409, "padmin", http.MethodPost, path+"/test", nil)
	var sys SystemStatus
	a.must(403, "padmin", http.MethodGet, "/api/v1/system/alerting", nil)
	a.must(200, "root", http.MethodGet, "/api/v1/system/alerting", nil).decode(t, &sys)
	if sys.Configured {
		t.Fatalf("system status %+v, want not configured", sys)
	}
}

// TestLeaderAppliesSettings: the running leader writes and reloads on each
// change, a refused reload shows in the status, the project's settings
// reply and the metrics, and is retried until it works; e-mail without
// SMTP is refused up front.
func TestLeaderAppliesSettings(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	prom, am := newFake(t), newFake(t)
	dir := t.TempDir()
	o := Options{Config: DefaultConfig(), RetryInterval: 50 * time.Millisecond, ReplicaID: "r1"}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "am", "alertmanager.yml")
	o.PrometheusURL, o.AlertmanagerURL = prom.URL, am.URL
	if err := os.MkdirAll(filepath.Dir(o.AlertmanagerConfigFile), 0o755); err != nil {
		t.Fatal(err)
	}
	a := newService(t, w, o)
	done := run(t, a.svc)
	defer done()

	first := waitStatus(t, w.cli, func(s applyStatus) bool { return s.OK && s.Leader == "r1" })
	if !first.Configured || first.Projects != 0 {
		t.Fatalf("first apply %+v", first)
	}
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	settings := map[string]any{"enabled": true, "triggerCount": 2, "recoveryCount": 2, "severity": "warning",
		"webhooks": []map[string]string{{"url": "https://hooks.example.test/plant"}}}
	var reply SettingsReply
	a.must(400, "padmin", http.MethodPut, path, map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "info",
		"emails": []string{"ops@example.test"}}).decode(t, &reply)
	a.must(200, "padmin", http.MethodPut, path, settings).decode(t, &reply)
	st := waitStatus(t, w.cli, func(s applyStatus) bool { return s.Projects == 1 })
	if !st.OK {
		t.Fatalf("apply failed: %+v", st)
	}
	a.must(200, "viewer", http.MethodGet, path, nil).decode(t, &reply)
	if reply.Status.Delivery != DeliveryApplied {
		t.Fatalf("status after apply %+v", reply.Status)
	}
	rules, err := os.ReadFile(filepath.Join(o.RulesDir, alerting.RuleFileName(w.project.ID)))
	if err != nil {
		t.Fatal(err)
	}
	// Trigger count 2 at the default 15s interval.
	if !strings.Contains(string(rules), "for: 15s") {
		t.Fatalf("rules lack for: 15s:\n%s", rules)
	}
	amCfg, err := os.ReadFile(o.AlertmanagerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"https://hooks.example.test/plant", "https://ecp.example.test" + WebhookPath, a.svc.token.Reveal()} {
		if !strings.Contains(string(amCfg), want) {
			t.Fatalf("alertmanager config lacks %q:\n%s", want, amCfg)
		}
	}
	if prom.reloads() == 0 || am.reloads() == 0 {
		t.Fatalf("reloads: prometheus %d, alertmanager %d", prom.reloads(), am.reloads())
	}

	// Prometheus refuses: the failure is visible everywhere, then retried.
	prom.fail("failed to reload config: one or more errors occurred while applying the new configuration")
	settings["triggerCount"] = 1
	a.must(200, "padmin", http.MethodPut, path, settings)
	st = waitStatus(t, w.cli, func(s applyStatus) bool { return !s.OK })
	if !strings.Contains(st.Error, "reloading prometheus: 500") {
		t.Fatalf("status error %q", st.Error)
	}
	a.must(200, "viewer", http.MethodGet, path, nil).decode(t, &reply)
	if reply.Status.Delivery != DeliveryFailed || strings.Contains(reply.Status.Message, "500") {
		t.Fatalf("project status %+v: want failed, without the server's text", reply.Status)
	}
	var sys SystemStatus
	a.must(200, "root", http.MethodGet, "/api/v1/system/alerting", nil).decode(t, &sys)
	if sys.OK || !strings.Contains(sys.Error, "failed to reload config") {
		t.Fatalf("system status %+v", sys)
	}
	if v := testutil.ToFloat64(a.svc.metrics.applySuccess); v != 0 {
		t.Fatalf("ecp_alerts_apply_success %v during the failure", v)
	}
	prom.fail("")
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.OK })
	if v := testutil.ToFloat64(a.svc.metrics.applySuccess); v != 1 {
		t.Fatalf("ecp_alerts_apply_success %v after recovery", v)
	}
	if probs, err := testutil.GatherAndLint(a.reg); err != nil || len(probs) > 0 {
		t.Fatalf("metric lint: %v %v", probs, err)
	}
}

// TestTestNotificationGoesThroughAlertmanager: the test alert is posted to
// Alertmanager with the project label that routes it to the project's
// channels, and the marker that keeps it out of ecp's lists.
func TestTestNotificationGoesThroughAlertmanager(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	o, am := fakeStackOptions(t)
	a := newService(t, w, o)
	defer run(t, a.svc)()
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	a.must(409, "padmin", http.MethodPost, path+"/test", nil) // alerting off
	a.must(200, "padmin", http.MethodPut, path, map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical",
		"webhooks": []map[string]string{{"url": "https://hooks.example.test/plant"}}})
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.Projects == 1 && s.OK })
	a.must(403, "viewer", http.MethodPost, path+"/test", nil)
	var reply TestReply
	a.must(202, "padmin", http.MethodPost, path+"/test", nil).decode(t, &reply)
	posted := am.alerts()
	if len(posted) != 1 {
		t.Fatalf("alertmanager got %d posts", len(posted))
	}
	var alerts []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		EndsAt      *time.Time        `json:"endsAt"`
	}
	if err := json.Unmarshal(posted[0], &alerts); err != nil || len(alerts) != 1 {
		t.Fatalf("posted %s: %v", posted[0], err)
	}
	l := alerts[0].Labels
	if l["project"] != w.project.ID || l["severity"] != "critical" || l[LabelTest] != reply.TestID || l["alertname"] != TestAlertName {
		t.Fatalf("test alert labels %v", l)
	}
	// Names for the e-mail; no end time, so Alertmanager's
	// resolve_timeout ends it and the test receiver sends no resolution
	// (TestJourneyTestNotificationIsOneEmail in ecp/alerting).
	if an := alerts[0].Annotations; an["project_name"] != "plant" || an["organization_name"] != "acme" || alerts[0].EndsAt != nil {
		t.Fatalf("test alert annotations %v, endsAt %v", an, alerts[0].EndsAt)
	}
}

// TestFailover: two replicas on one etcd, one applies; when it stops, the
// other takes over and applies the next change.
func TestFailover(t *testing.T) {
	srv := etcdtest.Start(t)
	w := newWorld(t, etcdtest.ClientOf(t, srv))
	dir := t.TempDir()
	o := Options{Config: DefaultConfig()}
	r1, r2 := newReplica(t, srv, w, dir, "r1", o), newReplica(t, srv, w, dir, "r2", o)
	stop1 := run(t, r1.svc)
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.Leader == "r1" && s.OK })
	defer run(t, r2.svc)()
	if r2.svc.IsLeader() {
		t.Fatal("two leaders")
	}
	stop1()
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	r2.must(200, "padmin", http.MethodPut, path, map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "info"})
	st := waitStatus(t, w.cli, func(s applyStatus) bool { return s.Leader == "r2" && s.Projects == 1 })
	if !st.OK {
		t.Fatalf("r2's apply %+v", st)
	}
	if _, err := os.Stat(filepath.Join(dir, "rules", alerting.RuleFileName(w.project.ID))); err != nil {
		t.Fatalf("r2 wrote no rule file: %v", err)
	}
}

// TestWebhookTokenNeverShown: the token Alertmanager sends ecp is the same
// on every replica, and no API reply carries it.
func TestWebhookTokenNeverShown(t *testing.T) {
	srv := etcdtest.Start(t)
	w := newWorld(t, etcdtest.ClientOf(t, srv))
	dir := t.TempDir()
	o := Options{Config: DefaultConfig()}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
	a, b := newService(t, w, o), newService(t, w, o)
	if a.svc.token.IsZero() || a.svc.token != b.svc.token {
		t.Fatal("replicas disagree on the webhook token")
	}
	token := a.svc.token.Reveal()
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	for _, r := range []result{
		a.must(200, "padmin", http.MethodPut, path, map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "info"}),
		a.must(200, "root", http.MethodGet, path, nil),
		a.must(200, "root", http.MethodGet, "/api/v1/system/alerting", nil),
		a.must(200, "root", http.MethodGet, "/api/v1/projects/"+w.project.ID+"/alerts", nil),
	} {
		if strings.Contains(string(r.body), token) {
			t.Fatalf("reply carries the webhook token: %s", r.body)
		}
	}
}

// TestReconcileWithAlertmanager: an active alert Alertmanager no longer
// holds (its resolution lost) moves to history as "gone"; one it holds, and
// one notified a moment ago, stay.
func TestReconcileWithAlertmanager(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	am := newFake(t)
	clk := &clock{t: t0}
	// The URL alone is enough to reconcile; no files are written here.
	a := newService(t, w, Options{Now: clk.now})
	a.svc.opts.AlertmanagerURL = am.URL
	p := w.project.ID
	held, lost, recent := connectorAlert(p, t0), connectorAlert(p, t0), connectorAlert(p, t0)
	lost.Fingerprint, recent.Fingerprint = "fp-lost", "fp-recent"
	a.notify("firing", held, lost)
	clk.add(5 * time.Minute)
	a.notify("firing", recent)
	am.hold(fmt.Appendf(nil, `[{"fingerprint":%q,"startsAt":%q,"labels":{}}]`, held.Fingerprint, t0.Format(time.RFC3339Nano)))
	if err := a.svc.reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	var active []string
	for _, al := range a.list(p, "state=active") {
		active = append(active, al.Fingerprint)
	}
	hist := a.list(p, "state=history")
	if strings.Join(active, " ") != "fp-recent "+held.Fingerprint && strings.Join(active, " ") != held.Fingerprint+" fp-recent" {
		t.Fatalf("active %v, want the held and the recent alert", active)
	}
	if len(hist) != 1 || hist[0].Fingerprint != "fp-lost" || hist[0].EndReason != EndGone {
		t.Fatalf("history %+v, want the lost alert, gone", hist)
	}
	am.hold([]byte("not json"))
	if err := a.svc.reconcile(t.Context()); err == nil {
		t.Fatal("a broken Alertmanager reply was taken as an empty list")
	}
}

// TestSettingsStoredBeforeTheCatalogueLoadAsBefore: a record an ecp
// without the rule catalogue stored reads back with the rules it rendered
// on (cluster, node, connections at 90 %, rule, connector and action) and
// the new ones off; a PUT that sets one rule keeps the others, and a rule
// threshold out of range is refused naming the field.
func TestSettingsStoredBeforeTheCatalogueLoadAsBefore(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, Options{})
	old := `{"enabled":true,"triggerCount":2,"recoveryCount":1,"severity":"critical","emqxAlertPush":false,` +
		`"emails":null,"webhooks":null,"updatedAt":"2026-11-01T10:00:00Z","updatedBy":"padmin"}`
	if _, err := w.cli.Put(t.Context(), settingsPrefix+w.project.ID, old); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	var got SettingsReply
	a.must(200, "viewer", http.MethodGet, path, nil).decode(t, &got)
	on := func(r SettingsReply) string {
		var ids []string
		for _, id := range rules.CatalogueIDs() {
			if r.Rules[id].Enabled {
				ids = append(ids, id)
			}
		}
		return strings.Join(ids, " ")
	}
	if s := on(got); s != "clusterStatus nodeDown connections ruleAbnormal connectorAbnormal" || *got.Rules[rules.CatalogueConnections].Threshold != 90 ||
		got.TriggerCount != 2 || got.Severity != "critical" {
		t.Fatalf("old record reads as %+v (on: %s)", got, s)
	}
	expiry := 7.0
	got.Rules[rules.CatalogueLicenseExpiry] = alerting.RuleSettings{Enabled: true, Threshold: &expiry, Severity: "warning"}
	a.must(200, "padmin", http.MethodPut, path, got).decode(t, &got)
	if s := on(got); s != "clusterStatus nodeDown licenseExpiry connections ruleAbnormal connectorAbnormal" ||
		*got.Rules[rules.CatalogueLicenseExpiry].Threshold != 7 || got.Rules[rules.CatalogueLicenseExpiry].Severity != "warning" {
		t.Fatalf("saved %+v (on: %s)", got.Rules, s)
	}
	bad := map[string]any{"enabled": true, "triggerCount": 2, "recoveryCount": 1, "severity": "critical",
		"rules": map[string]any{"licenseUsage": map[string]any{"enabled": true, "threshold": 101}}}
	var e struct {
		Error struct{ Field, Message string }
	}
	a.must(400, "padmin", http.MethodPut, path, bad).decode(t, &e)
	if e.Error.Field != "rules.licenseUsage.threshold" || !strings.Contains(e.Error.Message, "from 1 to 100 (percent), got 101") {
		t.Fatalf("refusal %+v", e.Error)
	}
}
