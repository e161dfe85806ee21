package sim

import (
	"net/http"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/secret"
)

func TestLogin(t *testing.T) {
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"good", `{"username":"admin","password":"public"}`, http.StatusOK, ""},
		{"wrong password", `{"username":"admin","password":"nope"}`, http.StatusUnauthorized, "BAD_USERNAME_OR_PWD"},
		{"unknown user", `{"username":"root","password":"public"}`, http.StatusUnauthorized, "BAD_USERNAME_OR_PWD"},
		{"not json", `{"username":`, http.StatusBadRequest, "BAD_REQUEST"},
		{"missing password", `{"username":"admin"}`, http.StatusBadRequest, "BAD_REQUEST"},
	}
	f := start(t, Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.req(t, http.MethodPost, "/api/v5/login", "", c.body)
			if c.code != "" {
				wantError(t, r, c.status, c.code, "")
				return
			}
			m := r.object(t)
			if r.status != c.status || m["version"] != "5.8.9" || m["role"] != "administrator" ||
				m["license"].(map[string]any)["edition"] != "ee" || jsonType(m["token"]) != "string" {
				t.Fatalf("login reply %d %s", r.status, r.body)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	f := start(t, Options{
		Users:   []User{{Username: "watcher", Password: "w-pass", Role: RoleViewer}},
		APIKeys: []APIKey{{Key: "agentkey", Secret: "agentsecret", Role: RoleAdministrator}, {Key: "viewkey", Secret: "viewsecret", Role: RoleViewer}},
	})
	admin := f.admin(t)
	viewer := f.login(t, "watcher", "w-pass")
	const forged = "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJFTVFYIn0.c2ln"
	cases := []struct {
		name, method, path, auth, body string
		status                         int
		code, msg                      string
		wwwAuth                        bool
	}{
		{"no header", "GET", "/api/v5/nodes", "", "", 401, "AUTHORIZATION_HEADER_ERROR", msgNoAuthHeader, true},
		{"unsupported scheme", "GET", "/api/v5/nodes", "Digest x", "", 401, "AUTHORIZATION_HEADER_ERROR", msgNoAuthHeader, true},
		{"unissued token", "GET", "/api/v5/nodes", forged, "", 401, "BAD_TOKEN", msgBadToken, false},
		{"bad api secret", "GET", "/api/v5/nodes", basic("agentkey", "wrong"), "", 401, "BAD_API_KEY_OR_SECRET", msgBadAPIKey, true},
		{"unknown api key", "GET", "/api/v5/nodes", basic("nokey", "x"), "", 401, "BAD_API_KEY_OR_SECRET", msgBadAPIKey, true},
		{"api key on api_key", "GET", "/api/v5/api_key", basic("agentkey", "agentsecret"), "", 401, "API_KEY_NOT_ALLOW",
			"Please use bearer Token instead, using API key/secret in api_key path is not permitted", true},
		{"api key on logout", "POST", "/api/v5/logout", basic("agentkey", "agentsecret"), `{"username":"admin"}`, 401,
			"API_KEY_NOT_ALLOW", "Please use bearer Token instead, using API key/secret in logout path is not permitted", true},
		{"viewer writes setting", "PUT", "/api/v5/license/setting", viewer, `{"dynamic_max_connections":10}`, 403, "UNAUTHORIZED_ROLE", msgRoleUser, false},
		{"viewer key writes licence", "POST", "/api/v5/license", basic("viewkey", "viewsecret"), `{"key":"default"}`, 403, "UNAUTHORIZED_ROLE", msgRoleAPIKey, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := f.req(t, c.method, c.path, c.auth, c.body)
			wantError(t, r, c.status, c.code, c.msg)
			got := r.header.Get("WWW-Authenticate")
			if c.wwwAuth != (got == `Basic Realm="emqx-dashboard"`) {
				t.Fatalf("WWW-Authenticate = %q, want present=%v", got, c.wwwAuth)
			}
		})
	}
	t.Run("allowed", func(t *testing.T) {
		for _, auth := range []string{admin, viewer, basic("agentkey", "agentsecret"), basic("viewkey", "viewsecret")} {
			if r := f.req(t, "GET", "/api/v5/license", auth, ""); r.status != http.StatusOK {
				t.Fatalf("GET license with %q: %d %s", auth[:6], r.status, r.body)
			}
		}
		if r := f.req(t, "GET", "/api/v5/api_key", admin, ""); r.status != http.StatusOK || len(r.json(t).([]any)) != 2 {
			t.Fatalf("GET api_key: %d %s", r.status, r.body)
		}
	})
}

func TestTokenLifetime(t *testing.T) {
	f := start(t, Options{})
	tok := f.admin(t)
	get := func() reply { return f.req(t, "GET", "/api/v5/cluster", tok, "") }
	// Sliding: every use within the TTL extends it.
	for range 3 {
		f.clock.Advance(50 * time.Minute)
		if r := get(); r.status != http.StatusOK {
			t.Fatalf("after 50 min of idleness: %d %s", r.status, r.body)
		}
	}
	f.clock.Advance(60*time.Minute + time.Millisecond)
	wantError(t, get(), 401, "TOKEN_TIME_OUT", msgTokenTimeout)

	tok2 := f.admin(t)
	wantError(t, f.req(t, "POST", "/api/v5/logout", tok2, `{"username":"other"}`), 401, "WRONG_TOKEN_OR_USERNAME", "")
	if r := f.req(t, "POST", "/api/v5/logout", tok2, `{"username":"admin"}`); r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	wantError(t, f.req(t, "GET", "/api/v5/nodes", tok2, ""), 401, "BAD_TOKEN", msgBadToken)
}

func TestAPIKeyLifecycle(t *testing.T) {
	f := start(t, Options{})
	admin := f.admin(t)
	r := f.req(t, "POST", "/api/v5/api_key", admin, `{"name":"agent1","desc":"ECP agent","role":"viewer"}`)
	m := r.object(t)
	if r.status != 200 || m["name"] != "agent1" || m["expired_at"] != "infinity" || m["role"] != "viewer" || m["expired"] != false {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	auth := basic(m["api_key"].(string), m["api_secret"].(string))
	if r := f.req(t, "GET", "/api/v5/nodes", auth, ""); r.status != 200 {
		t.Fatalf("use key: %d %s", r.status, r.body)
	}
	wantError(t, f.req(t, "PUT", "/api/v5/rules/"+f.sim.rules[0].id, auth, `{"enable":false}`), 403, "UNAUTHORIZED_ROLE", msgRoleAPIKey)
	if r := f.req(t, "GET", "/api/v5/api_key/agent1", admin, ""); r.status != 200 || r.object(t)["api_secret"] != nil {
		t.Fatalf("get key must not return the secret: %s", r.body)
	}
	if r := f.req(t, "PUT", "/api/v5/api_key/agent1", admin, `{"enable":false}`); r.status != 200 {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	wantError(t, f.req(t, "GET", "/api/v5/nodes", auth, ""), 401, "BAD_API_KEY_OR_SECRET", msgBadAPIKey)
	wantError(t, f.req(t, "POST", "/api/v5/api_key", admin, `{"name":"9bad"}`), 400, "BAD_REQUEST", "")
	if r := f.req(t, "DELETE", "/api/v5/api_key/agent1", admin, ""); r.status != 204 {
		t.Fatalf("delete: %d", r.status)
	}
	wantError(t, f.req(t, "GET", "/api/v5/api_key/agent1", admin, ""), 404, "NOT_FOUND", "")
}

func TestSecretsStayOutOfOptionsDump(t *testing.T) {
	o := Options{DashboardPassword: "s3cret-pass", APIKeys: []APIKey{{Key: "k", Secret: secret.String("s3cret-key")}}}
	for _, s := range []string{sprintf("%v", o), sprintf("%+v", o), sprintf("%#v", o)} {
		if containsSub(s, "s3cret") {
			t.Fatalf("options dump leaks a secret: %s", s)
		}
	}
}
