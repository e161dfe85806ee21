package tenancy

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// Level is what a caller may do with a project or organization.
type Level int

// Levels, ordered: a higher level includes the lower ones.
const (
	// None: the caller may not even know it exists (answered 404).
	None Level = iota
	// View: read only (project viewer; a member of any project of an org
	// sees the org).
	View
	// Admin: change it.
	Admin
)

// Access is everything a caller's bindings grant, loaded once per request.
type Access struct {
	Username     string
	System       bool
	orgAdmin     map[string]bool
	orgMember    map[string]bool
	projectLevel map[string]Level
	// records, when set (Snapshot), answer the Authorizer's reads of
	// organizations and projects for this Access.
	records *records
}

// Authorizer answers "may this caller do that" for every route.
type Authorizer struct {
	store *Store
}

// NewAuthorizer returns an Authorizer reading bindings from store.
func NewAuthorizer(store *Store) *Authorizer { return &Authorizer{store: store} }

// Store returns the tenancy store the authorizer reads.
func (a *Authorizer) Store() *Store { return a.store }

// Access loads p's bindings: from this replica's copy once it has loaded
// (then the Access also answers the reads of organizations and projects
// from it), else from etcd.
func (a *Authorizer) Access(ctx context.Context, p *auth.Principal) (*Access, error) {
	if a.store.view.ready() {
		return a.fromView(p)
	}
	bs, err := a.store.UserBindings(ctx, p.Username)
	if err != nil {
		return nil, err
	}
	return accessOf(p, bs), nil
}

// fromView is p's Access from this replica's copy, with its records.
func (a *Authorizer) fromView(p *auth.Principal) (*Access, error) {
	bs, err := a.store.view.userBindings(p.Username)
	if err != nil {
		return nil, err
	}
	rec, err := a.store.view.records()
	if err != nil {
		return nil, err
	}
	ac := accessOf(p, bs)
	ac.records = rec
	return ac, nil
}

// accessOf is what bindings bs of p grant.
func accessOf(p *auth.Principal, bs []Binding) *Access {
	ac := &Access{Username: p.Username, orgAdmin: map[string]bool{}, orgMember: map[string]bool{}, projectLevel: map[string]Level{}}
	for _, b := range bs {
		if b.UserGeneration != 0 && b.UserGeneration != p.Generation {
			continue // granted to an earlier user of this name
		}
		switch b.Role {
		case RoleSystemAdmin:
			ac.System = true
		case RoleOrgAdmin:
			ac.orgAdmin[b.Org] = true
			ac.orgMember[b.Org] = true
		case RoleProjectAdmin:
			ac.projectLevel[b.Project] = Admin
			ac.orgMember[b.Org] = true
		case RoleProjectViewer:
			ac.projectLevel[b.Project] = max(ac.projectLevel[b.Project], View)
			ac.orgMember[b.Org] = true
		}
	}
	return ac
}

// SystemAdmin implements auth.Authorizer.
func (a *Authorizer) SystemAdmin(ctx context.Context, p *auth.Principal) (bool, error) {
	ac, err := a.Access(ctx, p)
	if err != nil {
		return false, err
	}
	return ac.System, nil
}

// ForgetUser implements auth.Authorizer: it removes every binding of
// username granted to generation or an earlier one (those of a user created
// again meanwhile stay); when one of them is the last system-admin binding
// it returns auth.ErrLastSystemAdmin, having removed that one last.
func (a *Authorizer) ForgetUser(ctx context.Context, username string, generation int64) error {
	all, err := a.store.UserBindings(ctx, username)
	if err != nil {
		return err
	}
	bs := slices.DeleteFunc(all, func(b Binding) bool { return b.UserGeneration > generation })
	// System-admin bindings go first: if one cannot go, nothing else has.
	slices.SortStableFunc(bs, func(x, y Binding) int {
		return cmp.Compare(boolInt(y.Role == RoleSystemAdmin), boolInt(x.Role == RoleSystemAdmin))
	})
	for _, b := range bs {
		err := a.store.DeleteBindingKeepingAdmin(ctx, b)
		switch {
		case errors.Is(err, ErrLastSystemAdmin):
			return auth.ErrLastSystemAdmin
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Org is the caller's level on an organization.
func (ac *Access) Org(org string) Level {
	switch {
	case ac.System, ac.orgAdmin[org]:
		return Admin
	case ac.orgMember[org]:
		return View
	}
	return None
}

// Project is the caller's level on p.
func (ac *Access) Project(p Project) Level {
	if ac.System || ac.orgAdmin[p.Org] {
		return Admin
	}
	return ac.projectLevel[p.ID]
}

// Caller authenticates r and loads the caller's access: 401 when anonymous.
func (a *Authorizer) Caller(r *http.Request) (*Access, error) {
	p, err := auth.Require(r)
	if err != nil {
		return nil, err
	}
	return a.Access(r.Context(), p)
}

// Project loads the project id for a caller who needs at least level want
// on it: 404 when it does not exist or the caller cannot see it, 403 when
// they see it but hold less than want. field names the request field the
// id came from ("" when it came from the path), so a refused reference in
// a body says which field it was.
func (a *Authorizer) Project(ctx context.Context, ac *Access, id string, want Level, field string) (Project, error) {
	p, err := a.getProject(ctx, ac, id)
	if errors.Is(err, ErrNotFound) {
		return Project{}, projectNotFound(id, field)
	}
	if err != nil {
		return Project{}, err
	}
	switch got := ac.Project(p); {
	case got == None:
		return Project{}, projectNotFound(id, field)
	case got < want:
		return Project{}, httpapi.Forbidden("you may view project " + id + " but changing it needs project-admin, org-admin or system-admin")
	}
	return p, nil
}

// Org loads the org id for a caller who needs at least level want on it,
// with the same 404/403 rule as Project.
func (a *Authorizer) Org(ctx context.Context, ac *Access, id string, want Level, field string) (Org, error) {
	o, err := a.getOrg(ctx, ac, id)
	notFound := &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound, Field: field, Message: "no organization " + id}
	if errors.Is(err, ErrNotFound) {
		return Org{}, notFound
	}
	if err != nil {
		return Org{}, err
	}
	switch got := ac.Org(o.ID); {
	case got == None:
		return Org{}, notFound
	case got < want:
		return Org{}, httpapi.Forbidden("you may view organization " + id + " but changing it needs org-admin or system-admin")
	}
	return o, nil
}

func projectNotFound(id, field string) error {
	return &httpapi.Error{Status: http.StatusNotFound, Code: httpapi.CodeNotFound, Field: field, Message: "no project " + id}
}
