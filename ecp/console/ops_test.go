package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

func TestMonitoringShowsAbnormalConnectors(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.post("/projects/"+e.project+"/clusters", url.Values{"name": {"edge-1"}, "serviceUrl": {"http://emqx.example:18083"}})
	token := regexp.MustCompile(`data-token="([^"]+)"`).FindStringSubmatch(p.body)[1]
	ag := e.register(token)
	ag.report(agentproto.Resource{Kind: agentproto.KindConnector, ID: "http:sink", Name: "sink", Status: "disconnected", Reason: "connection refused"})

	p = b.get("/projects/" + e.project + "/monitoring")
	mustStatus(t, p, 200, "monitoring")
	for _, want := range []string{"http:sink", "connection refused", "1 disconnected", "http://emqx.example:18083/#/connector/", "edge-1"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("monitoring page lacks %q", want)
		}
	}
	p = b.get("/projects/" + e.project + "/monitoring?cluster=" + ag.cluster)
	mustStatus(t, p, 200, "monitoring filtered")
	if !strings.Contains(p.body, "http:sink") {
		t.Error("filtered monitoring lacks the connector")
	}
	// Another project's viewer sees none of it.
	e.user("olga", "project-viewer", e.other)
	o := e.browser()
	mustStatus(t, o.login("olga", "olga-password"), http.StatusSeeOther, "login")
	mustStatus(t, o.get("/projects/"+e.project+"/monitoring"), http.StatusNotFound, "foreign monitoring")
	if p := o.get("/projects/" + e.other + "/monitoring"); strings.Contains(p.body, "http:sink") {
		t.Fatal("another project's monitoring shows the connector")
	}
}

func TestAlertSettingsForm(t *testing.T) {
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/alert-settings"
	p := b.get(path)
	mustStatus(t, p, 200, "settings")
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		field  string
	}{
		{"bad count", url.Values{"triggerCount": {"x"}, "recoveryCount": {"1"}, "severity": {"warning"}}, 400, "triggerCount"},
		{"bad email", url.Values{"enabled": {"on"}, "triggerCount": {"3"}, "recoveryCount": {"2"}, "severity": {"warning"}, "emails": {"not-an-address"}}, 400, "emails"},
		// The notification policy refuses the cloud metadata address:
		// the 422 shows beside the webhooks, with the reason.
		{"refused webhook", url.Values{"enabled": {"on"}, "triggerCount": {"4"}, "recoveryCount": {"2"}, "severity": {"critical"}, "webhooks": {"http://203.0.113.9/hook\nhttp://169.254.169.254/latest/meta-data/"}}, 422, "webhooks"},
		{"ok", url.Values{"enabled": {"on"}, "triggerCount": {"4"}, "recoveryCount": {"2"}, "severity": {"critical"}, "emails": {"ops@example.com\n"}, "webhooks": {"http://203.0.113.9/hook"}}, 303, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.post(path, tc.form)
			mustStatus(t, p, tc.status, tc.name)
			if tc.field != "" && !strings.Contains(p.body, `id="`+tc.field+`-error"`) {
				t.Fatalf("error not shown at %s:\n%s", tc.field, p.body)
			}
			if tc.status == 422 && !strings.Contains(p.body, "Line 2 is refused by the notification policy: 169.254.169.254 is a link-local address") {
				t.Fatalf("refusal without its reason:\n%s", p.body)
			}
		})
	}
	got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/alert-settings", e.admin, nil))
	for _, want := range []string{`"triggerCount":4`, `"severity":"critical"`, `"ops@example.com"`, `"http://203.0.113.9/hook"`} {
		if !strings.Contains(got, want) {
			t.Errorf("stored settings lack %s: %s", want, got)
		}
	}
	// Without Alertmanager the test notification is refused, with the reason.
	p = b.post(path+"/test", nil)
	if p.status != http.StatusConflict || !strings.Contains(p.body, `id="test-error"`) {
		t.Fatalf("test notification without Alertmanager: %d\n%s", p.status, p.body)
	}

	v := e.browser()
	mustStatus(t, v.login("victor", "victor-password"), http.StatusSeeOther, "login")
	p = v.get(path)
	if !strings.Contains(p.body, "<fieldset disabled>") || strings.Contains(p.body, "Save settings") || strings.Contains(p.body, "Send test notification") {
		t.Fatalf("viewer can edit alert settings:\n%s", p.body)
	}
	p = v.get("/projects/" + e.project + "/alerts")
	mustStatus(t, p, 200, "viewer alerts")
	if !strings.Contains(p.body, "No active alerts") {
		t.Fatalf("alerts page:\n%s", p.body)
	}
}

func TestLogsWithoutReceiverSaysWhy(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get("/projects/" + e.project + "/logs?level=error&q=boom")
	if p.status < 400 || !strings.Contains(p.body, `class="error"`) || !strings.Contains(p.body, `value="boom"`) {
		t.Fatalf("logs without a receiver: %d\n%s", p.status, p.body)
	}
	p = b.get("/projects/" + e.project + "/logs?from=yesterday")
	mustStatus(t, p, http.StatusBadRequest, "bad from")
	if !strings.Contains(p.body, `id="from-error"`) {
		t.Fatalf("bad from not named:\n%s", p.body)
	}
}

func TestSystemPageOnlyForSystemAdmins(t *testing.T) {
	e := start(t, nil)
	e.user("alice", "project-admin", e.project)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get("/system")
	mustStatus(t, p, 200, "system")
	for _, want := range []string{"Total connections", "alice", "project-admin", "acme / factory", "POST /api/v1/users"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("system page lacks %q", want)
		}
	}
	// A receiver that does not answer is refused with the API's reason.
	p = b.post("/system/log-receiver/test", url.Values{"type": {"victorialogs"}, "url": {"http://127.0.0.1:9"}})
	if p.status < 400 || !strings.Contains(p.body, `class="error"`) && !strings.Contains(p.body, "field-error") {
		t.Fatalf("test of a dead receiver: %d\n%s", p.status, p.body)
	}
	p = b.post("/system/log-receiver", url.Values{"type": {"victorialogs"}, "url": {"not a url"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="url-error"`) {
		t.Fatalf("bad receiver URL: %d\n%s", p.status, p.body)
	}
	// The notification policy: a bad range shows beside its list; a good
	// one is stored and shown again.
	p = b.post("/system/notification-policy", url.Values{"allowCidrs": {"127.0.0.0/8"}, "denyCidrs": {"10.0.0.0/8\n10.1.2.3/8"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="denyCidrs-error"`) || !strings.Contains(p.body, "denyCidrs[1] has bits set past its prefix length") {
		t.Fatalf("bad deny range: %d\n%s", p.status, p.body)
	}
	mustStatus(t, b.post("/system/notification-policy", url.Values{"allowCidrs": {"127.0.0.0/8\n"}, "denyCidrs": {"10.0.0.0/8"}}), http.StatusSeeOther, "policy")
	if got := string(e.api(200, "GET", "/api/v1/system/notification-policy", e.admin, nil)); !strings.Contains(got, `"allowCidrs":["127.0.0.0/8"],"denyCidrs":["10.0.0.0/8"]`) {
		t.Fatalf("stored policy %s", got)
	}
	if p = b.get("/system"); !strings.Contains(p.body, ">127.0.0.0/8</textarea>") || !strings.Contains(p.body, "Always refused: ecp (") {
		t.Fatalf("system page does not show the policy:\n%s", p.body)
	}

	a := e.browser()
	mustStatus(t, a.login("alice", "alice-password"), http.StatusSeeOther, "login")
	if p := a.get("/projects/" + e.project + "/clusters"); strings.Contains(p.body, `href="/system"`) {
		t.Error("a project admin is offered the system page")
	}
	mustStatus(t, a.get("/system"), http.StatusForbidden, "system as project admin")
}
