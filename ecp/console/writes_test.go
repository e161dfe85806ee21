package console_test

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/tenancy"
)

// TestForcedWritesRefusedLikeTheAPI: the console's changes call the API
// packages' service methods, so a change the caller may not make, forced
// with a hand-made POST, gets the API's own status and reason for the same
// change (403 for a viewer of the project, 404 for a stranger to it),
// nothing changes, and the audit log records the refused attempt as it
// records one made through the API.
func TestForcedWritesRefusedLikeTheAPI(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "line-1")
	e.user("victor", "project-viewer", e.project)
	e.user("olga", "project-viewer", e.other)
	p := "/projects/" + e.project
	api := func(token, method, path string, body any) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			raw, _ := json.Marshal(body)
			rd = bytes.NewReader(raw)
		}
		req, _ := http.NewRequest(method, e.url+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var env struct{ Error struct{ Message string } }
		_ = json.NewDecoder(resp.Body).Decode(&env)
		return resp.StatusCode, env.Error.Message
	}
	writes := []struct {
		name, path string
		form       url.Values
		// The same change through the API.
		method, apiPath string
		body            any
	}{
		{"add cluster", p + "/clusters", url.Values{"name": {"forced"}}, "POST", "/api/v1" + p + "/clusters", map[string]string{"name": "forced"}},
		{"rename", p + "/clusters/" + id + "/edit", url.Values{"name": {"renamed"}, "serviceUrl": {""}}, "PATCH", "/api/v1/clusters/" + id, map[string]string{"name": "renamed"}},
		{"log collection", p + "/clusters/" + id + "/log-collection", url.Values{"enabled": {"false"}}, "PATCH", "/api/v1/clusters/" + id, map[string]any{"logCollection": map[string]bool{"enabled": false}}},
		{"max connections", p + "/clusters/" + id + "/max-connections", url.Values{"maxConnections": {"20"}}, "PUT", "/api/v1/clusters/" + id + "/max-connections", map[string]int{"maxConnections": 20}},
		{"transfer", p + "/clusters/" + id + "/transfer", url.Values{"project": {e.other}}, "POST", "/api/v1/clusters/" + id + "/transfer", map[string]string{"project": e.other}},
		{"re-register", p + "/clusters/" + id + "/registration", nil, "POST", "/api/v1/clusters/" + id + "/registration", nil},
		{"delete", p + "/clusters/" + id + "/delete", url.Values{"confirm": {"line-1"}}, "DELETE", "/api/v1/clusters/" + id, nil},
		{"alert settings", p + "/alert-settings", url.Values{"enabled": {"on"}, "triggerCount": {"3"}, "recoveryCount": {"2"}, "severity": {"critical"}},
			"PUT", "/api/v1" + p + "/alert-settings", map[string]any{"enabled": true, "triggerCount": 3, "recoveryCount": 2, "severity": "critical"}},
		{"test notification", p + "/alert-settings/test", nil, "POST", "/api/v1" + p + "/alert-settings/test", nil},
		{"test one channel", p + "/alert-settings/test", url.Values{"email": {"ops@example.com"}}, "POST", "/api/v1" + p + "/alert-settings/test", map[string]string{"email": "ops@example.com"}},
		{"webhook headers", p + "/alert-settings/webhook", url.Values{"url": {"http://203.0.113.9/hook"}, "headers": {"X-Key: v"}},
			"PUT", "/api/v1" + p + "/alert-settings", map[string]any{"enabled": true, "triggerCount": 3, "recoveryCount": 2, "severity": "critical"}},
	}
	for _, who := range []struct{ user, via string }{{"victor", "viewer"}, {"olga", "stranger"}} {
		token := e.apiLogin(who.user, who.user+"-password")
		b := e.browser()
		mustStatus(t, b.login(who.user, who.user+"-password"), http.StatusSeeOther, "login")
		b.get("/projects/" + e.other + "/clusters") // olga's CSRF token: her 404 page has no form
		for _, w := range writes {
			t.Run(who.via+" "+w.name, func(t *testing.T) {
				status, msg := api(token, w.method, w.apiPath, w.body)
				if who.via == "viewer" && status != http.StatusForbidden || who.via == "stranger" && status != http.StatusNotFound {
					t.Fatalf("the API answers %s with %d", who.user, status)
				}
				got := b.post(w.path, maps.Clone(w.form)) // post adds the caller's CSRF token
				mustStatus(t, got, status, w.name)
				// A stranger's 404 names the project the page is in, the
				// API's the cluster: both say only "not found".
				if who.via == "viewer" && !strings.Contains(got.body, html.EscapeString(msg)) {
					t.Fatalf("the console's refusal lacks the API's reason %q:\n%s", msg, got.body)
				}
			})
		}
	}
	// The Setup and System pages' forms, forced by the viewer: the API's
	// status and reason, whatever they are.
	adminToken := e.id(e.api(201, "POST", "/api/v1/api-tokens", e.admin, map[string]string{"name": "ci"}))
	vb := e.browser()
	mustStatus(t, vb.login("victor", "victor-password"), http.StatusSeeOther, "login")
	vt := e.apiLogin("victor", "victor-password")
	ownBinding := tenancy.BindingID("victor", tenancy.RoleProjectViewer, e.org, e.project)
	for _, w := range []struct {
		name, path      string
		form            url.Values
		method, apiPath string
		body            any
	}{
		{"create organization", "/setup/orgs", url.Values{"name": {"forced-org"}}, http.MethodPost, "/api/v1/orgs", map[string]string{"name": "forced-org"}},
		{"create project", "/setup/projects", url.Values{"org": {e.org}, "name": {"forced-project"}},
			http.MethodPost, "/api/v1/orgs/" + e.org + "/projects", map[string]string{"name": "forced-project"}},
		{"grant", "/setup/role-bindings", url.Values{"username": {"victor"}, "role": {"project-admin"}, "scope": {"project:" + e.project}},
			http.MethodPost, "/api/v1/role-bindings", map[string]string{"username": "victor", "role": "project-admin", "project": e.project}},
		{"revoke", "/setup/role-bindings/revoke", url.Values{"id": {ownBinding}}, http.MethodDelete, "/api/v1/role-bindings/" + ownBinding, nil},
		{"create user", "/setup/users", url.Values{"username": {"forced-user"}, "password": {"forced-password-1"}, "password2": {"forced-password-1"}},
			http.MethodPost, "/api/v1/users", map[string]string{"username": "forced-user", "password": "forced-password-1"}},
		{"revoke another's API token", "/setup/api-tokens/revoke", url.Values{"id": {adminToken}}, http.MethodDelete, "/api/v1/api-tokens/" + adminToken, nil},
		{"log receiver", "/system/log-receiver", url.Values{"type": {"victorialogs"}, "url": {"http://127.0.0.1:1"}},
			http.MethodPut, "/api/v1/system/log-receiver", map[string]string{"type": "victorialogs", "url": "http://127.0.0.1:1"}},
		{"log receiver test", "/system/log-receiver/test", url.Values{"type": {"victorialogs"}, "url": {"http://127.0.0.1:1"}},
			http.MethodPost, "/api/v1/system/log-receiver/test", map[string]string{"type": "victorialogs", "url": "http://127.0.0.1:1"}},
		{"notification policy", "/system/notification-policy", url.Values{"allowCidrs": {"10.0.0.0/8"}},
			http.MethodPut, "/api/v1/system/notification-policy", map[string][]string{"allowCidrs": {"10.0.0.0/8"}}},
		{"project quota", "/system/quota", url.Values{"kind": {"project"}, "id": {e.project}, "maxConnections": {"5"}},
			http.MethodPut, "/api/v1/projects/" + e.project + "/quota", map[string]int{"maxConnections": 5}},
		{"organization quota", "/system/quota", url.Values{"kind": {"org"}, "id": {e.org}, "maxConnections": {"5"}},
			http.MethodPut, "/api/v1/orgs/" + e.org + "/quota", map[string]int{"maxConnections": 5}},
	} {
		status, msg := api(vt, w.method, w.apiPath, w.body)
		got := vb.post(w.path, w.form)
		mustStatus(t, got, status, w.name)
		if status/100 != 4 || !strings.Contains(got.body, html.EscapeString(msg)) {
			t.Errorf("%s: the console's refusal lacks the API's reason %q (%d)", w.name, msg, status)
		}
	}
	if orgs := string(e.api(200, "GET", "/api/v1/orgs", e.admin, nil)); strings.Contains(orgs, "forced-org") {
		t.Errorf("a forced organization was created: %s", orgs)
	}
	if ps := string(e.api(200, "GET", "/api/v1/projects", e.admin, nil)); strings.Contains(ps, "forced-project") {
		t.Errorf("a forced project was created: %s", ps)
	}
	bs := string(e.api(200, "GET", "/api/v1/role-bindings", e.admin, nil))
	if !strings.Contains(bs, ownBinding) || strings.Contains(bs, `"username":"victor","role":"project-admin"`) {
		t.Errorf("the viewer's forced grant or revoke changed the bindings: %s", bs)
	}
	if us := string(e.api(200, "GET", "/api/v1/users", e.admin, nil)); strings.Contains(us, "forced-user") {
		t.Errorf("a forced user was created: %s", us)
	}
	if toks := string(e.api(200, "GET", "/api/v1/api-tokens", e.admin, nil)); !strings.Contains(toks, adminToken) {
		t.Errorf("the viewer revoked the admin's API token: %s", toks)
	}
	if rcv := string(e.api(200, "GET", "/api/v1/system/log-receiver", e.admin, nil)); strings.Contains(rcv, "127.0.0.1:1") {
		t.Errorf("a forced log receiver was saved: %s", rcv)
	}
	if pol := string(e.api(200, "GET", "/api/v1/system/notification-policy", e.admin, nil)); strings.Contains(pol, "10.0.0.0/8") {
		t.Errorf("a forced notification policy was saved: %s", pol)
	}
	for _, q := range []string{"/api/v1/projects/" + e.project + "/quota", "/api/v1/orgs/" + e.org + "/quota"} {
		if got := string(e.api(200, "GET", q, e.admin, nil)); strings.Contains(got, `"maxConnections":5`) {
			t.Errorf("a forced quota was set: %s", got)
		}
	}
	// Nothing changed.
	cl := string(e.api(200, "GET", "/api/v1/clusters/"+id, e.admin, nil))
	for _, want := range []string{`"name":"line-1"`, `"project":"` + e.project + `"`, `"maxConnections":10`, `"state":"created"`} {
		if !strings.Contains(cl, want) {
			t.Errorf("cluster after the forced changes lacks %s: %s", want, cl)
		}
	}
	if list := string(e.api(200, "GET", "/api/v1"+p+"/clusters", e.admin, nil)); strings.Contains(list, "forced") {
		t.Errorf("a forced add created a cluster: %s", list)
	}
	if st := string(e.api(200, "GET", "/api/v1"+p+"/alert-settings", e.admin, nil)); strings.Contains(st, `"severity":"critical"`) {
		t.Errorf("forced alert settings were saved: %s", st)
	}
	// Audited as the API audits: the viewer's refused rename is on record,
	// with the cluster it aimed at.
	var log struct {
		Items []struct {
			Actor, Method, Target string
			Status                int
		}
	}
	if err := json.Unmarshal(e.api(200, "GET", "/api/v1/audit?limit=200", e.admin, nil), &log); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range log.Items {
		if rec.Actor == "victor" && rec.Method == http.MethodPost && rec.Status == http.StatusForbidden {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit record of victor's refused console changes: %+v", log.Items)
	}
}
