package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAlertSettingsChannels: the settings page shows "critical only", a
// test button per channel and each webhook's headers (names only) and
// template; saving the main form keeps a webhook's headers and template,
// and the webhook's own form saves them or shows the API's refusal beside
// them.
func TestAlertSettingsChannels(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/alert-settings"
	hook := "http://203.0.113.9/hook"
	e.api(200, "PUT", "/api/v1"+path, e.admin, map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "warning",
		"webhooks": []map[string]any{{"url": hook, "headers": []map[string]string{{"name": "X-Key", "value": "k-secret"}}}}})

	p := b.get(path)
	mustStatus(t, p, 200, "settings")
	for _, want := range []string{`name="criticalOnly"`, `name="webhook" value="` + hook + `"`, `aria-label="Send a test to webhook ` + hook + `"`, "X-Key:</textarea>"} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("the page lacks %s:\n%s", want, p.body)
		}
	}
	if strings.Contains(p.body, "k-secret") {
		t.Fatal("the page shows a header value")
	}

	// The main form: critical only on; the webhook keeps its header.
	p = b.post(path, url.Values{"enabled": {"on"}, "criticalOnly": {"on"}, "triggerCount": {"1"}, "recoveryCount": {"1"}, "severity": {"warning"}, "webhooks": {hook}})
	mustStatus(t, p, http.StatusSeeOther, "save")
	got := string(e.api(200, "GET", "/api/v1"+path, e.admin, nil))
	if !strings.Contains(got, `"criticalOnly":true`) || !strings.Contains(got, `"headers":[{"name":"X-Key"}]`) {
		t.Fatalf("after the main form the settings are %s", got)
	}

	// The webhook's form: a bad header name is shown beside it.
	p = b.post(path+"/webhook", url.Values{"url": {hook}, "headers": {"X-Key:\nX Bad: v"}, "template": {""}})
	mustStatus(t, p, http.StatusBadRequest, "bad header")
	if !strings.Contains(p.body, `id="hook0-error"`) || !strings.Contains(p.body, "webhooks[0].headers[1].name must be an HTTP header name") {
		t.Fatalf("the refusal is not shown beside the webhook:\n%s", p.body)
	}
	p = b.post(path+"/webhook", url.Values{"url": {hook}, "headers": {"X-Key:"}, "template": {`{"text": "{{alertName}} {{alertFoo}}"}`}})
	mustStatus(t, p, http.StatusBadRequest, "bad template")
	if !strings.Contains(p.body, "{{alertFoo}} is not a placeholder") {
		t.Fatalf("the template's refusal is not shown:\n%s", p.body)
	}
	p = b.post(path+"/webhook", url.Values{"url": {hook}, "headers": {"X-Key:"}, "template": {`{"text": "{{alertName}}"}`}})
	mustStatus(t, p, http.StatusSeeOther, "save webhook")
	got = string(e.api(200, "GET", "/api/v1"+path, e.admin, nil))
	if !strings.Contains(got, `"template":"{\"text\": \"{{alertName}}\"}"`) || !strings.Contains(got, `"headers":[{"name":"X-Key"}]`) || !strings.Contains(got, `"criticalOnly":true`) {
		t.Fatalf("after the webhook's form the settings are %s", got)
	}

	// One channel's test goes to the service with that channel: without
	// Alertmanager it is refused, with the reason, beside the tests.
	p = b.post(path+"/test", url.Values{"webhook": {hook}})
	if p.status != http.StatusConflict || !strings.Contains(p.body, `id="test-error"`) {
		t.Fatalf("one channel's test without Alertmanager: %d\n%s", p.status, p.body)
	}
}
