package app

import (
	"strings"
	"testing"
)

// issue #11 extra: names accepted bidirectional-override and control
// characters: a project admin named a cluster "prod\u202egnp" and every
// other user saw another name than the one stored. Every API that takes a
// name a tenant gives refuses them with 400 naming the field, and nothing
// is stored.
func TestSecExtraAPIsRefuseHiddenCharactersInNames(t *testing.T) {
	h := start(t, testOptions(t))
	admin := h.login("admin", testAdminPassword)
	org := h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "o"}))
	project := h.id(h.must(201, "POST", "/api/v1/orgs/"+org+"/projects", admin, map[string]string{"name": "p"}))
	cluster := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	apis := []struct{ what, method, path string }{
		{"organization", "POST", "/api/v1/orgs"},
		{"project", "POST", "/api/v1/orgs/" + org + "/projects"},
		{"cluster", "POST", "/api/v1/projects/" + project + "/clusters"},
		{"cluster rename", "PATCH", "/api/v1/clusters/" + cluster},
		{"API token", "POST", "/api/v1/api-tokens"},
	}
	hostile := []string{"prod\u202egnp", "a\u2066b\u2069", "zero\u200bwidth", "tab\there", "nul\x00", "bell\a", " lead", "trail "}
	for _, api := range apis {
		for _, name := range hostile {
			r := h.do(api.method, api.path, admin, map[string]string{"name": name})
			if r.status != 400 || !strings.Contains(string(r.body), `"field":"name"`) || !strings.Contains(string(r.body), "invisible formatting") {
				t.Errorf("%s named %q: %d %s, want 400 naming the field and what is accepted", api.what, name, r.status, r.body)
			}
		}
		// A name in any script is fine.
		h.must(map[string]int{"POST": 201, "PATCH": 200}[api.method], api.method, api.path, admin, map[string]string{"name": "Werk München 北京 " + api.what})
	}
	for _, path := range []string{"/api/v1/orgs", "/api/v1/projects", "/api/v1/projects/" + project + "/clusters", "/api/v1/api-tokens"} {
		body := string(h.must(200, "GET", path, admin, nil).body)
		for _, name := range hostile {
			if strings.Contains(body, strings.TrimSpace(name)) {
				t.Errorf("GET %s lists the refused name %q: %s", path, name, body)
			}
		}
	}
}
