package tenancy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/names"
)

// API serves organizations, projects and role bindings.
type API struct {
	authz *Authorizer
	store *Store
	users *auth.Store
}

// NewAPI returns the API.
func NewAPI(authz *Authorizer, users *auth.Store) *API {
	return &API{authz: authz, store: authz.store, users: users}
}

// Register mounts the routes on r (the /api/v1 router).
func (api *API) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/orgs", a.Handle(api.listOrgs)).Methods(http.MethodGet)
	r.Handle("/orgs", a.Handle(api.createOrg)).Methods(http.MethodPost)
	r.Handle("/orgs/{org}", a.Handle(api.getOrg)).Methods(http.MethodGet)
	r.Handle("/orgs/{org}/projects", a.Handle(api.listOrgProjects)).Methods(http.MethodGet)
	r.Handle("/orgs/{org}/projects", a.Handle(api.createProject)).Methods(http.MethodPost)
	r.Handle("/projects", a.Handle(api.listProjects)).Methods(http.MethodGet)
	r.Handle("/projects/{project}", a.Handle(api.getProject)).Methods(http.MethodGet)
	r.Handle("/role-bindings", a.Handle(api.listBindings)).Methods(http.MethodGet)
	r.Handle("/role-bindings", a.Handle(api.createBinding)).Methods(http.MethodPost)
	r.Handle("/role-bindings", a.Handle(api.deleteBindingByBody)).Methods(http.MethodDelete)
	r.Handle("/role-bindings/{id}", a.Handle(api.deleteBindingByID)).Methods(http.MethodDelete)
}

// MaxNameRunes bounds the names of organizations and projects.
const MaxNameRunes = 100

// ValidateName returns what a display name must be, or "" when name is
// fine: the rule of package names with at most MaxNameRunes characters, and
// no slash (names appear in etcd keys of the name index and in URLs of the
// console).
func ValidateName(name string) string {
	if strings.ContainsRune(name, '/') {
		return "name must not contain a slash"
	}
	return names.Validate(name, MaxNameRunes)
}

type nameRequest struct {
	Name string `json:"name"`
}

func (api *API) listOrgs(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	orgs, err := api.authz.Orgs(r.Context(), ac)
	if err != nil {
		return err
	}
	return httpapi.List(w, orgs)
}

func (api *API) createOrg(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	if err := mayCreateOrg(ac); err != nil {
		return err
	}
	var req nameRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	o, err := api.newOrg(r.Context(), req.Name)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusCreated, o)
}

// CreateOrg creates an organization named name (POST /orgs): system
// admins only.
func (api *API) CreateOrg(ctx context.Context, ac *Access, name string) (Org, error) {
	if err := mayCreateOrg(ac); err != nil {
		return Org{}, err
	}
	return api.newOrg(ctx, name)
}

func mayCreateOrg(ac *Access) error {
	if !ac.System {
		return httpapi.Forbidden("only a system admin may create organizations")
	}
	return nil
}

func (api *API) newOrg(ctx context.Context, name string) (Org, error) {
	if msg := ValidateName(name); msg != "" {
		return Org{}, httpapi.Invalid("name", "%s", msg)
	}
	o, err := api.store.CreateOrg(ctx, name)
	if errors.Is(err, ErrExists) {
		return Org{}, httpapi.Conflict("an organization named %q exists", name)
	}
	if err != nil {
		return Org{}, err
	}
	audit.Annotate(ctx, audit.Note{Org: o.ID, Target: "org/" + o.ID})
	return o, nil
}

func (api *API) getOrg(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	o, err := api.authz.Org(r.Context(), ac, mux.Vars(r)["org"], View, "")
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, o)
}

func (api *API) getProject(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	p, err := api.authz.Project(r.Context(), ac, mux.Vars(r)["project"], View, "")
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, p)
}

func (api *API) listOrgProjects(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	o, err := api.authz.Org(r.Context(), ac, mux.Vars(r)["org"], View, "")
	if err != nil {
		return err
	}
	return api.writeProjects(w, r, ac, o.ID)
}

func (api *API) listProjects(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	return api.writeProjects(w, r, ac, "")
}

func (api *API) writeProjects(w http.ResponseWriter, r *http.Request, ac *Access, org string) error {
	ps, err := api.authz.Projects(r.Context(), ac, org)
	if err != nil {
		return err
	}
	return httpapi.List(w, ps)
}

func (api *API) createProject(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	o, err := api.authz.Org(r.Context(), ac, mux.Vars(r)["org"], Admin, "")
	if err != nil {
		return err
	}
	var req nameRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	p, err := api.newProject(r.Context(), o, req.Name)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusCreated, p)
}

// CreateProject creates a project named name in org (POST
// /orgs/{org}/projects): 404 when the caller cannot see org, 403 when they
// do not administer it.
func (api *API) CreateProject(ctx context.Context, ac *Access, org, name string) (Project, error) {
	o, err := api.authz.Org(ctx, ac, org, Admin, "")
	if err != nil {
		return Project{}, err
	}
	return api.newProject(ctx, o, name)
}

func (api *API) newProject(ctx context.Context, o Org, name string) (Project, error) {
	if msg := ValidateName(name); msg != "" {
		return Project{}, httpapi.Invalid("name", "%s", msg)
	}
	p, err := api.store.CreateProject(ctx, o.ID, name)
	if errors.Is(err, ErrExists) {
		return Project{}, httpapi.Conflict("organization %s already has a project named %q", o.ID, name)
	}
	if err != nil {
		return Project{}, err
	}
	audit.Annotate(ctx, audit.Note{Org: o.ID, Project: p.ID, Target: "project/" + p.ID})
	return p, nil
}

// BindingRequest names a role binding to grant or revoke.
type BindingRequest struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Org      string `json:"org"`
	Project  string `json:"project"`
}

func (api *API) listBindings(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	bs, err := api.Bindings(r.Context(), ac)
	if err != nil {
		return err
	}
	return httpapi.List(w, bs)
}

// Bindings lists the role bindings ac may see (GET /role-bindings).
func (api *API) Bindings(ctx context.Context, ac *Access) ([]Binding, error) {
	bs, err := api.store.ListBindings(ctx)
	if err != nil {
		return nil, err
	}
	visible := bs[:0]
	for _, b := range bs {
		if ac.canSeeBinding(b) {
			visible = append(visible, b)
		}
	}
	return visible, nil
}

// canSeeBinding: everyone sees their own bindings, and the bindings on
// whatever they can see (a project's viewers see who else holds a role on
// it); system-admin bindings only system admins. Seeing is not changing:
// that needs canManageBinding, and the difference is the 404/403 rule.
func (ac *Access) canSeeBinding(b Binding) bool {
	if b.Username == ac.Username {
		return true
	}
	switch b.Role {
	case RoleSystemAdmin:
		return ac.System
	case RoleOrgAdmin:
		return ac.Org(b.Org) >= View
	default:
		return ac.Project(Project{ID: b.Project, Org: b.Org}) >= View
	}
}

func (ac *Access) canManageBinding(b Binding) bool {
	switch b.Role {
	case RoleSystemAdmin:
		return ac.System
	case RoleOrgAdmin:
		return ac.Org(b.Org) == Admin
	default:
		return ac.Project(Project{ID: b.Project, Org: b.Org}) == Admin
	}
}

// resolveBinding validates req and checks the caller may grant or revoke
// it, with the 404/403 rule for the org or project it names.
func (api *API) resolveBinding(ctx context.Context, ac *Access, req BindingRequest) (Binding, error) {
	if req.Username == "" {
		return Binding{}, httpapi.Invalid("username", "username is required")
	}
	b := Binding{Username: req.Username, Role: req.Role}
	switch req.Role {
	case RoleSystemAdmin:
		if req.Org != "" || req.Project != "" {
			return Binding{}, httpapi.Invalid("role", "role system-admin takes neither org nor project")
		}
		if !ac.System {
			return Binding{}, httpapi.Forbidden("only a system admin may grant or revoke system-admin")
		}
	case RoleOrgAdmin:
		if req.Org == "" || req.Project != "" {
			return Binding{}, httpapi.Invalid("org", "role org-admin needs org (an organization id) and no project")
		}
		o, err := api.authz.Org(ctx, ac, req.Org, Admin, "org")
		if err != nil {
			return Binding{}, err
		}
		b.Org = o.ID
	case RoleProjectAdmin, RoleProjectViewer:
		if req.Project == "" {
			return Binding{}, httpapi.Invalid("project", "role %s needs project (a project id)", req.Role)
		}
		p, err := api.authz.Project(ctx, ac, req.Project, Admin, "project")
		if err != nil {
			return Binding{}, err
		}
		if req.Org != "" && req.Org != p.Org {
			return Binding{}, httpapi.Invalid("org", "project %s belongs to organization %s, not %s; leave org out for project roles", p.ID, p.Org, req.Org)
		}
		b.Org, b.Project = p.Org, p.ID
	default:
		return Binding{}, httpapi.Invalid("role", "role must be one of system-admin, org-admin, project-admin, project-viewer")
	}
	return b, nil
}

func (api *API) createBinding(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	var req BindingRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	b, err := api.Grant(r.Context(), ac, req)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusCreated, b)
}

// Grant creates the role binding req names (POST /role-bindings), for a
// caller who administers its scope, to a user the caller may grant roles
// to (grantee).
func (api *API) Grant(ctx context.Context, ac *Access, req BindingRequest) (Binding, error) {
	b, err := api.resolveBinding(ctx, ac, req)
	if err != nil {
		return Binding{}, err
	}
	audit.Annotate(ctx, audit.Note{Org: b.Org, Project: b.Project, Target: "user/" + b.Username})
	if b.UserGeneration, err = api.grantee(ctx, ac, b.Username); err != nil {
		return Binding{}, err
	}
	b, err = api.store.CreateBinding(ctx, b)
	switch {
	case errors.Is(err, ErrExists):
		return Binding{}, httpapi.Conflict("user %q already holds this role", req.Username)
	case errors.Is(err, ErrUserGone):
		return Binding{}, granteeNotFound(b.Username)
	case err != nil:
		return Binding{}, err
	}
	return b, nil
}

// grantee returns the generation of the user a role is granted to.
//
// Who may be granted a role follows the visibility rule: a system admin
// (who lists every user) may grant one to any user; anyone else only to
// themselves or to a user who already holds a role they can see (in GET
// /role-bindings), such as a viewer of their project. Any other username,
// existing or not, is answered with the same 404, so that a project admin
// cannot probe which usernames exist. New users get their first role from
// a system admin, who creates them.
func (api *API) grantee(ctx context.Context, ac *Access, username string) (int64, error) {
	u, err := api.users.GetUser(ctx, username)
	if errors.Is(err, kv.ErrNotFound) {
		return 0, granteeNotFound(username)
	}
	if err != nil || ac.System || username == ac.Username {
		return u.Generation, err
	}
	bs, err := api.store.UserBindings(ctx, username)
	if err != nil {
		return 0, err
	}
	visible := func(b Binding) bool {
		return (b.UserGeneration == 0 || b.UserGeneration == u.Generation) && ac.canSeeBinding(b)
	}
	if !slices.ContainsFunc(bs, visible) {
		return 0, granteeNotFound(username)
	}
	return u.Generation, nil
}

// granteeNotFound is the one answer for a user who does not exist and for
// one the caller may not grant roles to: the same status, code, field and
// message, whoever asks (a system admin gets it only for users that do not
// exist).
func granteeNotFound(username string) error {
	return &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound, Field: "username",
		Message: fmt.Sprintf("no user %q that you may grant roles to; a system admin creates users and grants their first role", username)}
}

func (api *API) deleteBindingByBody(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	var req BindingRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	b, err := api.resolveBinding(r.Context(), ac, req)
	if err != nil {
		return err
	}
	return api.revokeRoute(r.Context(), w, ac, BindingID(b.Username, b.Role, b.Org, b.Project))
}

func (api *API) deleteBindingByID(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	return api.revokeRoute(r.Context(), w, ac, mux.Vars(r)["id"])
}

func (api *API) revokeRoute(ctx context.Context, w http.ResponseWriter, ac *Access, id string) error {
	if err := api.Revoke(ctx, ac, id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Revoke deletes role binding id (DELETE /role-bindings/{id}): 404 when
// the caller cannot see it, 403 when they may not manage its scope, 409
// for the last system-admin binding.
func (api *API) Revoke(ctx context.Context, ac *Access, id string) error {
	b, err := api.store.GetBinding(ctx, id)
	notFound := httpapi.NotFound("no role binding %s", id)
	if errors.Is(err, ErrNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	switch {
	case !ac.canSeeBinding(b):
		return notFound
	case !ac.canManageBinding(b):
		return httpapi.Forbidden("revoking a " + b.Role + " binding needs an admin role over its scope")
	}
	audit.Annotate(ctx, audit.Note{Org: b.Org, Project: b.Project, Target: "user/" + b.Username})
	// Without a system admin nobody could create organizations or users
	// again: the last one stays.
	err = api.store.DeleteBindingKeepingAdmin(ctx, b)
	switch {
	case errors.Is(err, ErrLastSystemAdmin):
		return httpapi.Conflict("this is the last system-admin binding; grant system-admin to another user first")
	case errors.Is(err, ErrNotFound):
		return notFound
	case err != nil:
		return err
	}
	return nil
}

// AuditScope is the audit.Scope of ecp: system admins read every record,
// org and project admins the records of what they administer, everyone else
// none (403).
func (a *Authorizer) AuditScope(r *http.Request) (func(audit.Record) bool, error) {
	ac, err := a.Caller(r)
	if err != nil {
		return nil, err
	}
	return AuditVisible(ac)
}

// AuditVisible is AuditScope for the caller of ac.
func AuditVisible(ac *Access) (func(audit.Record) bool, error) {
	if ac.System {
		return func(audit.Record) bool { return true }, nil
	}
	admin := len(ac.orgAdmin) > 0
	for _, l := range ac.projectLevel {
		admin = admin || l == Admin
	}
	if !admin {
		return nil, httpapi.Forbidden("reading the audit log needs an admin role")
	}
	return func(rec audit.Record) bool {
		if rec.Org != "" && ac.orgAdmin[rec.Org] {
			return true
		}
		return rec.Project != "" && ac.projectLevel[rec.Project] == Admin
	}, nil
}
