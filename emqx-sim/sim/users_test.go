package sim

import (
	"net/http"
	"testing"
)

// TestSec01ViewerSessionIsReadOnly: issue #11 finding 1 was found with a
// dashboard session used for POST /api/v5/api_key. The tests of the fix
// rely on the simulator refusing a viewer's writes as EMQX's
// emqx_dashboard_rbac does (403 UNAUTHORIZED_ROLE), and on its dashboard
// user API behaving as emqx_dashboard_api's.
func TestSec01ViewerSessionIsReadOnly(t *testing.T) {
	f := start(t, Options{})
	admin := f.admin(t)

	r := f.req(t, http.MethodPost, "/api/v5/users", admin, `{"username":"ecp_viewer","password":"Viewer-pass1","role":"viewer","description":"jump"}`)
	if m := r.object(t); r.status != http.StatusOK || m["username"] != "ecp_viewer" || m["role"] != "viewer" || m["backend"] != "local" {
		t.Fatalf("create viewer: %d %s", r.status, r.body)
	}
	viewer := f.login(t, "ecp_viewer", "Viewer-pass1")

	for _, c := range []struct{ name, method, path, body string }{
		{"api key", http.MethodPost, "/api/v5/api_key", `{"name":"escalate","enable":true}`},
		{"new user", http.MethodPost, "/api/v5/users", `{"username":"root2","password":"Root-pass1","role":"administrator"}`},
		{"raise itself", http.MethodPut, "/api/v5/users/ecp_viewer", `{"role":"administrator","description":"x"}`},
		{"delete admin", http.MethodDelete, "/api/v5/users/admin", ""},
		{"admin's password", http.MethodPost, "/api/v5/users/admin/change_pwd", `{"old_pwd":"public","new_pwd":"Owned-pass1"}`},
		{"licence setting", http.MethodPut, "/api/v5/license/setting", `{"dynamic_max_connections":1}`},
	} {
		t.Run("viewer may not: "+c.name, func(t *testing.T) {
			wantError(t, f.req(t, c.method, c.path, viewer, c.body), http.StatusForbidden, "UNAUTHORIZED_ROLE", msgRoleUser)
		})
	}
	t.Run("viewer reads", func(t *testing.T) {
		if r := f.req(t, http.MethodGet, "/api/v5/users", viewer, ""); r.status != http.StatusOK {
			t.Fatalf("GET /users as viewer: %d %s", r.status, r.body)
		}
	})
	t.Run("EMQX's user rules", func(t *testing.T) {
		wantError(t, f.req(t, http.MethodPost, "/api/v5/users", admin, `{"username":"ecp_viewer","password":"Viewer-pass1","role":"viewer"}`),
			http.StatusBadRequest, "BAD_REQUEST", "username_already_exists")
		wantError(t, f.req(t, http.MethodPost, "/api/v5/users", admin, `{"username":"bad-name","password":"Viewer-pass1"}`),
			http.StatusBadRequest, "BAD_REQUEST", "")
		wantError(t, f.req(t, http.MethodPost, "/api/v5/users", admin, `{"username":"weak","password":"onlyletters"}`),
			http.StatusBadRequest, "BAD_REQUEST", "")
		wantError(t, f.req(t, http.MethodPost, "/api/v5/users", admin, `{"username":"x","password":"Viewer-pass1","role":"owner"}`),
			http.StatusBadRequest, "BAD_REQUEST", "Role does not exist")
		wantError(t, f.req(t, http.MethodDelete, "/api/v5/users/nobody", admin, ""), http.StatusNotFound, "USER_NOT_FOUND", "username_not_found")
		wantError(t, f.req(t, http.MethodDelete, "/api/v5/users/admin", admin, ""), http.StatusBadRequest, "NOT_ALLOWED", "")
		wantError(t, f.req(t, http.MethodGet, "/api/v5/users", basic("k", "s"), ""), http.StatusUnauthorized, "API_KEY_NOT_ALLOW", "")
	})
	t.Run("the viewer changes its own password; its sessions end", func(t *testing.T) {
		if r := f.req(t, http.MethodPost, "/api/v5/users/ecp_viewer/change_pwd", viewer, `{"old_pwd":"Viewer-pass1","new_pwd":"Viewer-pass2"}`); r.status != http.StatusNoContent {
			t.Fatalf("change own password: %d %s", r.status, r.body)
		}
		wantError(t, f.req(t, http.MethodGet, "/api/v5/nodes", viewer, ""), http.StatusUnauthorized, "BAD_TOKEN", msgBadToken)
		f.login(t, "ecp_viewer", "Viewer-pass2")
	})
	t.Run("a role change or a delete ends the user's sessions", func(t *testing.T) {
		v := f.login(t, "ecp_viewer", "Viewer-pass2")
		if r := f.req(t, http.MethodPut, "/api/v5/users/ecp_viewer", admin, `{"role":"administrator","description":"raised"}`); r.status != http.StatusOK {
			t.Fatalf("raise: %d %s", r.status, r.body)
		}
		wantError(t, f.req(t, http.MethodGet, "/api/v5/nodes", v, ""), http.StatusUnauthorized, "BAD_TOKEN", msgBadToken)
		v = f.login(t, "ecp_viewer", "Viewer-pass2")
		if r := f.req(t, http.MethodDelete, "/api/v5/users/ecp_viewer", admin, ""); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		wantError(t, f.req(t, http.MethodGet, "/api/v5/nodes", v, ""), http.StatusUnauthorized, "BAD_TOKEN", msgBadToken)
	})
}
