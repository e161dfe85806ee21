package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestJourneyClusterPageLive: the cluster page polls its Status panel, and
// the panel alone (not the page) answers with every field the agent's
// reports fill in, so a page opened before registration fills in by itself.
func TestJourneyClusterPageLive(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/clusters/" + id
	page := b.get(path)
	mustStatus(t, page, http.StatusOK, "cluster page")
	if !strings.Contains(page.body, `hx-get="`+path+`/status"`) || !strings.Contains(page.body, `<dt>Version</dt><dd>—</dd>`) {
		t.Fatalf("cluster page does not poll its status panel:\n%s", page.body)
	}
	status := func() string {
		t.Helper()
		p := b.do("GET", path+"/status", nil, map[string]string{"HX-Request": "true"})
		mustStatus(t, p, http.StatusOK, "status fragment")
		body := strings.TrimSpace(p.body)
		if !strings.HasPrefix(body, `<div id="cluster-status"`) || strings.Contains(body, "<html") || strings.Contains(body, "Max connections of this cluster") {
			t.Fatalf("status fragment is not the panel alone:\n%s", body)
		}
		return body
	}
	before := status()
	for _, want := range []string{"badge-created", "<dt>Version</dt><dd>—</dd>", "<dt>Last report</dt><dd>never</dd>", "of max 10"} {
		if !strings.Contains(before, want) {
			t.Errorf("status before registration lacks %q:\n%s", want, before)
		}
	}
	token := registrationToken(t, b, path)
	ag := e.register(token)
	if got := status(); !strings.Contains(got, "badge-registering") {
		t.Fatalf("status after register:\n%s", got)
	}
	ag.report()
	after := status()
	for _, want := range []string{"badge-running", "<dt>Version</dt><dd>5.8.6</dd>", "1 running of 1", "3 (2 live) of max 10", "<dt>Agent</dt><dd>test</dd>"} {
		if !strings.Contains(after, want) {
			t.Errorf("status after the first report lacks %q:\n%s", want, after)
		}
	}
	for _, field := range []string{"Started", "Managed since", "Last report"} {
		if !regexp.MustCompile(`<dt>` + field + `</dt><dd><time datetime="[^"]+">[^<]+</time>`).MatchString(after) {
			t.Errorf("status after the first report: %s not filled in:\n%s", field, after)
		}
	}
}

// registrationToken issues a token from the cluster page's Register form.
func registrationToken(t *testing.T, b *browser, path string) string {
	t.Helper()
	p := b.post(path+"/registration", nil)
	mustStatus(t, p, http.StatusOK, "registration guide")
	m := regexp.MustCompile(`data-token="([^"]+)"`).FindStringSubmatch(p.body)
	if m == nil {
		t.Fatalf("guide without a token:\n%s", p.body)
	}
	return m[1]
}

// TestJourneyRegisterOnStalePageRefused: the Register button of a page
// loaded before the agent registered issues no token (which would revoke
// the agent that just registered); the page says so and offers Re-register.
func TestJourneyRegisterOnStalePageRefused(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/clusters/" + id
	page := b.get(path)
	if !strings.Contains(page.body, `name="seenState" value="created"`) {
		t.Fatalf("Register form does not say what the page saw:\n%s", page.body)
	}
	ag := e.register(registrationToken(t, b, path))
	ag.report()
	p := b.post(path+"/registration", url.Values{"seenState": {"created"}})
	mustStatus(t, p, http.StatusConflict, "register on a stale page")
	if !strings.Contains(p.body, "edge-1 was registered while this page was open (it is running now)") || !strings.Contains(p.body, ">Re-register</button>") {
		t.Fatalf("stale Register not explained:\n%s", p.body)
	}
	ag.report() // the agent's credential still works
}
