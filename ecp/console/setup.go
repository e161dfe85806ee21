package console

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

// The Setup page: organizations, projects, users, role bindings, API
// tokens and the licence, so that a fresh ecp is set up without the API.
// Like every page it reads and changes through /api/v1 only; what the
// caller may do (asked of the authorizer, as projectBase does) decides
// only which controls are left out. A forced POST is refused by the API.

// registerSetup mounts the Setup page and its forms.
func (c *Console) registerSetup(r *mux.Router) {
	r.Handle("/setup", c.page(c.setup)).Methods(http.MethodGet)
	r.Handle("/setup/orgs", c.page(c.audited(c.setupCreateOrg))).Methods(http.MethodPost)
	r.Handle("/setup/projects", c.page(c.audited(c.setupCreateProject))).Methods(http.MethodPost)
	r.Handle("/setup/users", c.page(c.audited(c.setupCreateUser))).Methods(http.MethodPost)
	r.Handle("/setup/role-bindings", c.page(c.audited(c.setupGrant))).Methods(http.MethodPost)
	r.Handle("/setup/role-bindings/revoke", c.page(c.audited(c.setupRevoke))).Methods(http.MethodPost)
	r.Handle("/setup/api-tokens", c.page(c.audited(c.setupCreateToken))).Methods(http.MethodPost)
	r.Handle("/setup/api-tokens/revoke", c.page(c.audited(c.setupRevokeToken))).Methods(http.MethodPost)
}

// projectCookie remembers the project the caller last opened, so that the
// pages outside a project (System, Setup) keep its navigation. It holds an
// id only; the project is read through the API, which answers 404 for one
// the caller may no longer see, and the navigation then shows none.
const projectCookie = "ecp_project"

// rememberProject notes the project of a project page for the pages
// outside projects.
func (c *Console) rememberProject(w http.ResponseWriter, r *http.Request) {
	p := mux.Vars(r)["project"]
	if p == "" || !kv.ValidID(p) || r.Method != http.MethodGet || r.Header.Get("HX-Request") != "" {
		return
	}
	if ck, err := r.Cookie(projectCookie); err == nil && ck.Value == p {
		return
	}
	c.setCookie(w, projectCookie, p, time.Time{})
}

// lastProject puts the remembered project into b, when the caller may
// still see it; call it before nav, which names its organization.
func (c *Console) lastProject(r *http.Request, b *base) {
	ck, err := r.Cookie(projectCookie)
	if err != nil || !kv.ValidID(ck.Value) {
		return
	}
	ac, err := c.access(r)
	if err != nil {
		return
	}
	if p, err := c.opts.Authz.Project(r.Context(), ac, ck.Value, tenancy.View, ""); err == nil {
		b.Project = &p
	}
}

// setupOrg is an organization with its projects and whether the caller
// administers it.
type setupOrg struct {
	tenancy.Org
	Projects []tenancy.Project
	Admin    bool
}

// bindingRow is a role binding as the page shows it.
type bindingRow struct {
	tenancy.Binding
	RoleLabel string
	Scope     string
	CanRevoke bool
}

// option is one choice of a select.
type option struct{ Value, Label string }

// setupForm is what was typed into the form the API refused; it is shown
// again as typed. Passwords are never among it.
type setupForm struct {
	OrgName, ProjectOrg, ProjectName string
	Username                         string
	GrantUser, GrantRole, GrantScope string
	TokenName, TokenExpires          string
}

type setupData struct {
	base
	Orgs       []setupOrg
	AdminOrgs  []option // organizations the caller may add projects to
	Users      []auth.UserView
	Known      []string // usernames for the grant form's suggestions
	Bindings   []bindingRow
	Roles      []option // roles the caller may grant somewhere
	Scopes     []option // where the caller may grant them
	Tokens     []auth.APIToken
	Licence    *quota.Usage
	Form       setupForm
	Errors     fieldErrors // keyed "<form>.<field>"
	NewToken   string      // the token just created, shown this once
	NewTokenOf string
}

// Roles in the words of the page.
var roleLabels = map[string]string{
	tenancy.RoleSystemAdmin:   "System admin",
	tenancy.RoleOrgAdmin:      "Org admin",
	tenancy.RoleProjectAdmin:  "Project admin",
	tenancy.RoleProjectViewer: "Project viewer",
}

var setupFlashes = map[string]string{
	"org":           "Organization created. Add a project to it below.",
	"project":       "Project created.",
	"user":          "User created. Grant it a role below, or it sees no project.",
	"granted":       "Role granted.",
	"revoked":       "Role revoked.",
	"token-revoked": "API token revoked; requests with it are refused from now on.",
}

func (c *Console) setupData(r *http.Request) (setupData, error) {
	d := setupData{base: c.base(r, "Setup"), Errors: fieldErrors{}}
	d.Active = "setup"
	c.lastProject(r, &d.base)
	if err := c.nav(r, &d.base); err != nil {
		return d, err
	}
	ac, err := c.access(r)
	if err != nil {
		return d, err
	}
	d.System = ac.System
	if d.Project != nil {
		d.CanAdmin = ac.Project(*d.Project) >= tenancy.Admin
	}
	d.Flash = setupFlashes[r.URL.Query().Get("done")]

	// As GET /orgs and GET /projects answer them: what the caller may see.
	orgs, err := c.opts.Authz.Orgs(r.Context(), ac)
	if err != nil {
		return d, err
	}
	projects, err := c.opts.Authz.Projects(r.Context(), ac, "")
	if err != nil {
		return d, err
	}
	bindings, err := c.opts.Tenancy.Bindings(r.Context(), ac)
	if err != nil {
		return d, err
	}
	p := sessionFrom(r.Context()).principal
	tokens, err := c.opts.Auth.Tokens(r.Context(), p)
	if err != nil {
		return d, err
	}
	orgName, projectName := map[string]string{}, map[string]string{}
	slices.SortFunc(orgs, func(a, b tenancy.Org) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(projects, func(a, b tenancy.Project) int { return strings.Compare(a.Name, b.Name) })
	var orgScopes, projectScopes []option
	for _, o := range orgs {
		so := setupOrg{Org: o, Admin: ac.Org(o.ID) >= tenancy.Admin}
		orgName[o.ID] = o.Name
		if so.Admin {
			d.AdminOrgs = append(d.AdminOrgs, option{o.ID, o.Name})
			orgScopes = append(orgScopes, option{"org:" + o.ID, "Organization " + o.Name})
		}
		for _, p := range projects {
			if p.Org != o.ID {
				continue
			}
			so.Projects = append(so.Projects, p)
			projectName[p.ID] = o.Name + " / " + p.Name
			if ac.Project(p) >= tenancy.Admin {
				projectScopes = append(projectScopes, option{"project:" + p.ID, "Project " + o.Name + " / " + p.Name})
			}
		}
		d.Orgs = append(d.Orgs, so)
	}
	// Least power first: the form's default is the smallest grant.
	if len(projectScopes) > 0 {
		d.Roles = append(d.Roles,
			option{tenancy.RoleProjectViewer, roleLabels[tenancy.RoleProjectViewer]},
			option{tenancy.RoleProjectAdmin, roleLabels[tenancy.RoleProjectAdmin]})
	}
	if len(orgScopes) > 0 {
		d.Roles = append(d.Roles, option{tenancy.RoleOrgAdmin, roleLabels[tenancy.RoleOrgAdmin]})
	}
	d.Scopes = slices.Concat(projectScopes, orgScopes)
	if ac.System {
		d.Roles = append(d.Roles, option{tenancy.RoleSystemAdmin, roleLabels[tenancy.RoleSystemAdmin]})
		d.Scopes = append(d.Scopes, option{"system", "Whole system"})
	}

	known := map[string]bool{}
	for _, b := range bindings {
		row := bindingRow{Binding: b, RoleLabel: roleLabels[b.Role]}
		switch b.Role {
		case tenancy.RoleSystemAdmin:
			row.Scope, row.CanRevoke = "Whole system", ac.System
		case tenancy.RoleOrgAdmin:
			row.Scope, row.CanRevoke = "Organization "+orID(orgName[b.Org], b.Org), ac.Org(b.Org) >= tenancy.Admin
		default:
			row.Scope = "Project " + orID(projectName[b.Project], b.Project)
			row.CanRevoke = ac.Project(tenancy.Project{ID: b.Project, Org: b.Org}) >= tenancy.Admin
		}
		d.Bindings = append(d.Bindings, row)
		known[b.Username] = true
	}
	slices.SortFunc(d.Bindings, func(a, b bindingRow) int {
		return strings.Compare(a.Username+"\x00"+a.Scope+"\x00"+a.Role, b.Username+"\x00"+b.Scope+"\x00"+b.Role)
	})
	d.Tokens = tokens
	slices.SortFunc(d.Tokens, func(a, b auth.APIToken) int { return a.CreatedAt.Compare(b.CreatedAt) })

	if ac.System {
		if d.Users, err = c.opts.Auth.Users(r.Context(), p); err != nil {
			return d, err
		}
		lic, err := c.opts.Quota.Licence(r.Context(), ac)
		if err != nil {
			return d, err
		}
		d.Licence = &lic
		slices.SortFunc(d.Users, func(a, b auth.UserView) int { return strings.Compare(a.Username, b.Username) })
		for _, u := range d.Users {
			known[u.Username] = true
		}
	}
	for u := range known {
		d.Known = append(d.Known, u)
	}
	slices.Sort(d.Known)

	// Links from the previous step fill in the next form.
	q := r.URL.Query()
	if u := q.Get("grant"); auth.ValidateUsername(u) == "" {
		d.Form.GrantUser = u
	}
	if o := q.Get("org"); kv.ValidID(o) {
		d.Form.ProjectOrg = o
	}
	return d, nil
}

// orID is the name when known, else the id.
func orID(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

func (c *Console) setup(w http.ResponseWriter, r *http.Request) error {
	d, err := c.setupData(r)
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "setup", "", d)
	return nil
}

// formWords says, for one form, which of its fields an API field belongs
// to and, for a 400 (invalid input), what to say in the form's words; a
// refusal of another kind (404, 409, 403) keeps the API's message, which
// names the thing rather than a field. A refusal that names no field is
// looked up by its status ("409"), and its message replaced when the entry
// has one.
type formWords map[string]struct{ field, invalid string }

var (
	orgWords = formWords{
		"name": {"org.name", "Name: 1 to 100 characters, no slash, no leading or trailing spaces and no invisible characters."},
		"409":  {"org.name", ""},
	}
	projectWords = formWords{
		"name": {"project.name", "Name: 1 to 100 characters, no slash, no leading or trailing spaces and no invisible characters."},
		"org":  {"project.org", "Choose the organization the project belongs to."},
		"404":  {"project.org", "You administer no such organization: choose one from the list."},
		"409":  {"project.name", "The organization already has a project of that name."},
	}
	userWords = formWords{
		"username": {"user.username", "Username: 1 to 64 letters, digits and . _ @ -, starting with a letter or digit."},
		"password": {"user.password", fmt.Sprintf("Password: %d to %d bytes.", auth.MinPasswordLen, auth.MaxPasswordLen)},
		"409":      {"user.username", ""},
	}
	grantWords = formWords{
		"username": {"grant.username", "Type the username of the user to grant the role to."},
		"role": {"grant.role", "Choose a role from the list. System admin is granted on the whole system, " +
			"Org admin on an organization, Project admin and Project viewer on a project."},
		"org":     {"grant.scope", "Org admin is granted on an organization: choose one under “On”."},
		"project": {"grant.scope", "Project admin and Project viewer are granted on a project: choose one under “On”."},
	}
	tokenWords = formWords{
		"name":      {"token.name", "Name: 1 to 100 characters, no leading or trailing spaces and no invisible characters."},
		"expiresAt": {"token.expires", "Choose a day after today, or leave it empty for a token that does not expire."},
	}
)

// refusal turns an API refusal of form input into the message beside its
// field; false for errors that are not the form's (401, 403, 5xx).
func (fw formWords) refusal(err error, form string) (fieldErrors, int, bool) {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return nil, 0, false
	}
	// A 403 comes only from a form the page did not offer the caller: it
	// is shown as the error page, with the API's reason.
	switch apiErr.Status {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity:
	default:
		return nil, 0, false
	}
	key, msg := form+".", apiErr.Message
	if w, ok := fw[apiErr.Field]; ok && apiErr.Field != "" {
		key = w.field
		if apiErr.Status == http.StatusBadRequest && w.invalid != "" {
			msg = w.invalid
		}
	} else if w, ok := fw[strconv.Itoa(apiErr.Status)]; ok && apiErr.Field == "" {
		key = w.field
		if w.invalid != "" {
			msg = w.invalid
		}
	}
	return fieldErrors{key: msg}, apiErr.Status, true
}

// setupChange makes one form's change, do, with the caller's access; a
// refusal renders the page with what was typed and the message beside its
// field, success redirects to done.
func (c *Console) setupChange(w http.ResponseWriter, r *http.Request, do func(*tenancy.Access) error, form string, words formWords, fill func(*setupForm), done string) error {
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	err = serviceError(do(ac))
	if fe, status, ok := words.refusal(err, form); ok {
		return c.setupRefused(w, r, status, fe, fill)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, done, http.StatusSeeOther)
	return nil
}

// setupRefused renders the page again with the form as typed.
func (c *Console) setupRefused(w http.ResponseWriter, r *http.Request, status int, fe fieldErrors, fill func(*setupForm)) error {
	d, err := c.setupData(r)
	if err != nil {
		return err
	}
	if fill != nil {
		fill(&d.Form)
	}
	d.Errors = fe
	c.render(w, status, "setup", "", d)
	return nil
}

func (c *Console) setupCreateOrg(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimSpace(r.PostFormValue("name"))
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	o, err := c.opts.Tenancy.CreateOrg(r.Context(), ac, name)
	err = serviceError(err)
	if fe, status, ok := orgWords.refusal(err, "org"); ok {
		return c.setupRefused(w, r, status, fe, func(f *setupForm) { f.OrgName = name })
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/setup?done=org&org="+urlQueryEscape(o.ID)+"#orgs", http.StatusSeeOther)
	return nil
}

func (c *Console) setupCreateProject(w http.ResponseWriter, r *http.Request) error {
	org, name := r.PostFormValue("org"), strings.TrimSpace(r.PostFormValue("name"))
	fill := func(f *setupForm) { f.ProjectOrg, f.ProjectName = org, name }
	if org == "" {
		return c.setupRefused(w, r, http.StatusBadRequest, fieldErrors{"project.org": projectWords["org"].invalid}, fill)
	}
	create := func(ac *tenancy.Access) error {
		_, err := c.opts.Tenancy.CreateProject(r.Context(), ac, org, name)
		return err
	}
	return c.setupChange(w, r, create, "project", projectWords, fill, "/setup?done=project#orgs")
}

func (c *Console) setupCreateUser(w http.ResponseWriter, r *http.Request) error {
	username := strings.TrimSpace(r.PostFormValue("username"))
	password := secret.String(r.PostFormValue("password"))
	fill := func(f *setupForm) { f.Username = username }
	if r.PostFormValue("password2") != password.Reveal() {
		return c.setupRefused(w, r, http.StatusBadRequest, fieldErrors{"user.password2": "The two passwords differ: type the same password twice."}, fill)
	}
	create := func(*tenancy.Access) error {
		_, err := c.opts.Auth.CreateUser(r.Context(), sessionFrom(r.Context()).principal, username, password)
		return err
	}
	return c.setupChange(w, r, create, "user", userWords, fill, "/setup?done=user&grant="+urlQueryEscape(username)+"#roles")
}

// grantBody is the role binding the grant and revoke forms name: the
// scope select says "system", "org:ID" or "project:ID".
func grantBody(r *http.Request) (tenancy.BindingRequest, setupForm) {
	f := setupForm{GrantUser: strings.TrimSpace(r.PostFormValue("username")), GrantRole: r.PostFormValue("role"), GrantScope: r.PostFormValue("scope")}
	body := tenancy.BindingRequest{Username: f.GrantUser, Role: f.GrantRole}
	switch kind, id, _ := strings.Cut(f.GrantScope, ":"); kind {
	case "org":
		body.Org = id
	case "project":
		body.Project = id
	}
	return body, f
}

func (c *Console) setupGrant(w http.ResponseWriter, r *http.Request) error {
	body, typed := grantBody(r)
	fill := func(f *setupForm) {
		f.GrantUser, f.GrantRole, f.GrantScope = typed.GrantUser, typed.GrantRole, typed.GrantScope
	}
	grant := func(ac *tenancy.Access) error {
		_, err := c.opts.Tenancy.Grant(r.Context(), ac, body)
		return err
	}
	return c.setupChange(w, r, grant, "grant", grantWords, fill, "/setup?done=granted#roles")
}

func (c *Console) setupRevoke(w http.ResponseWriter, r *http.Request) error {
	id := r.PostFormValue("id")
	if id == "" {
		return c.setupRefused(w, r, http.StatusBadRequest, fieldErrors{"revoke.": "The form named no role binding; reload the page and try again."}, nil)
	}
	revoke := func(ac *tenancy.Access) error { return c.opts.Tenancy.Revoke(r.Context(), ac, id) }
	return c.setupChange(w, r, revoke, "revoke", nil, nil, "/setup?done=revoked#roles")
}

// tokenDateLayout is the value of an <input type=date>.
const tokenDateLayout = "2006-01-02"

func (c *Console) setupCreateToken(w http.ResponseWriter, r *http.Request) error {
	name, expires := strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("expires"))
	fill := func(f *setupForm) { f.TokenName, f.TokenExpires = name, expires }
	var expiresAt *time.Time
	if expires != "" {
		day, err := time.Parse(tokenDateLayout, expires)
		if err != nil {
			return c.setupRefused(w, r, http.StatusBadRequest, fieldErrors{"token.expires": "Expires: a day such as 2030-01-31, or empty for a token that does not expire."}, fill)
		}
		// Valid through the day chosen (UTC).
		end := day.AddDate(0, 0, 1)
		expiresAt = &end
	}
	tok, value, err := c.opts.Auth.CreateToken(r.Context(), sessionFrom(r.Context()).principal, name, expiresAt)
	err = serviceError(err)
	if fe, status, ok := tokenWords.refusal(err, "token"); ok {
		return c.setupRefused(w, r, status, fe, fill)
	}
	if err != nil {
		return err
	}
	// The one time the token is shown: in the answer to this POST, never
	// in a URL, and the page asks the browser to keep no copy (no-store).
	d, err := c.setupData(r)
	if err != nil {
		return err
	}
	d.NewToken, d.NewTokenOf = value.Reveal(), tok.Name
	c.render(w, http.StatusOK, "setup", "", d)
	return nil
}

func (c *Console) setupRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PostFormValue("id")
	if id == "" {
		return c.setupRefused(w, r, http.StatusBadRequest, fieldErrors{"tokens.": "The form named no API token; reload the page and try again."}, nil)
	}
	revoke := func(*tenancy.Access) error {
		return c.opts.Auth.DeleteToken(r.Context(), sessionFrom(r.Context()).principal, id)
	}
	return c.setupChange(w, r, revoke, "tokens", nil, nil, "/setup?done=token-revoked#tokens")
}
