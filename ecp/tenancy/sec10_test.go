package tenancy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/internal/secret"
)

// TestSec10GrantDoesNotRevealWhichUsersExist: issue #11 finding 10: POST
// /role-bindings answered a project admin 400 "no user X" for unknown
// names and 201 otherwise, a directory of usernames to probe. Now a
// caller who may not list users gets one answer (status, code, field and
// message but for the name) for a user that does not exist and for one
// they cannot see, and can still grant roles to users they can see.
func TestSec10GrantDoesNotRevealWhichUsersExist(t *testing.T) {
	cli := etcdtest.Client(t)
	users, err := auth.NewStore(cli, auth.StoreOptions{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore(cli)
	authz := NewAuthorizer(store)
	reg := prometheus.NewRegistry()
	adapter := httpapi.NewAdapter(slog.New(slog.DiscardHandler), reg)
	router := mux.NewRouter()
	v1 := router.PathPrefix("/api/v1").Subrouter()
	v1.Use(users.Middleware(adapter))
	NewAPI(authz, users).Register(v1, adapter)

	ctx := t.Context()
	org, err := store.CreateOrg(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	p, err := store.CreateProject(ctx, org.ID, "p")
	if err != nil {
		t.Fatal(err)
	}
	q, err := store.CreateProject(ctx, org.ID, "q")
	if err != nil {
		t.Fatal(err)
	}
	token := map[string]string{}
	for _, u := range []struct{ name, role, org, project string }{
		{"root", RoleSystemAdmin, "", ""},
		{"orgadmin", RoleOrgAdmin, org.ID, ""},
		{"padmin", RoleProjectAdmin, org.ID, p.ID},
		{"pviewer", RoleProjectViewer, org.ID, p.ID},
		{"qviewer", RoleProjectViewer, org.ID, q.ID}, // exists, unseen by padmin
		{"stranger", "", "", ""},                     // exists, no role at all
	} {
		created, err := users.CreateUser(ctx, u.name, secret.String("password-"+u.name))
		if err != nil {
			t.Fatal(err)
		}
		if u.role != "" {
			if _, err := store.CreateBinding(ctx, Binding{Username: u.name, Role: u.role, Org: u.org, Project: u.project, UserGeneration: created.Generation}); err != nil {
				t.Fatal(err)
			}
		}
		tok, _, err := users.Login(ctx, u.name, secret.String("password-"+u.name))
		if err != nil {
			t.Fatal(err)
		}
		token[u.name] = tok.Reveal()
	}
	grant := func(caller, username, role string) (int, string) {
		body, _ := json.Marshal(map[string]string{"username": username, "role": role, "project": p.ID})
		req := httptest.NewRequest(http.MethodPost, "/api/v1/role-bindings", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token[caller])
		w := httptest.NewRecorder()
		router.ServeHTTP(w, req)
		// The name itself is the one thing allowed to differ.
		return w.Code, strings.ReplaceAll(w.Body.String(), `\"`+username+`\"`, `\"NAME\"`)
	}

	for _, caller := range []string{"padmin", "pviewer"} {
		ghostStatus, ghost := grant(caller, "ghost", RoleProjectViewer)
		for _, existing := range []string{"qviewer", "stranger"} {
			status, body := grant(caller, existing, RoleProjectViewer)
			if status != ghostStatus || body != ghost {
				t.Errorf("%s granting a role to %s, who exists: %d %s; to ghost, who does not: %d %s; want the same answer",
					caller, existing, status, body, ghostStatus, ghost)
			}
		}
		t.Logf("%s: %d %s", caller, ghostStatus, ghost)
	}
	if status, body := grant("padmin", "ghost", RoleProjectViewer); status != http.StatusNotFound || !strings.Contains(body, `"field":"username"`) {
		t.Errorf("unknown user: %d %s, want 404 naming the field username, as for an unknown project", status, body)
	}
	// Users the caller can see can still be granted roles: the project's
	// own viewer, by its admin; anyone of the org, by the org admin;
	// anyone, by a system admin (for whom an unknown name is the same 404).
	for _, g := range []struct{ caller, username, role string }{
		{"padmin", "pviewer", RoleProjectAdmin},
		{"orgadmin", "qviewer", RoleProjectViewer},
		{"root", "stranger", RoleProjectViewer},
	} {
		if status, body := grant(g.caller, g.username, g.role); status != http.StatusCreated {
			t.Errorf("%s granting %s to %s: %d %s, want 201", g.caller, g.role, g.username, status, body)
		}
	}
	if status, _ := grant("root", "ghost", RoleProjectViewer); status != http.StatusNotFound {
		t.Errorf("system admin granting to an unknown user: %d, want 404", status)
	}
}
