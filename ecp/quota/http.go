package quota

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// Register mounts GET /licence on r (the /api/v1 router). Every signed-in
// user may read it: project admins need the remaining quota to pick a
// cluster's max connections, and the figures name no tenant.
func (g *Ledger) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/licence", a.Handle(func(w http.ResponseWriter, req *http.Request) error {
		if _, err := auth.Require(req); err != nil {
			return err
		}
		u, err := g.Usage(req.Context())
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, u)
	})).Methods(http.MethodGet)
}

// APIError turns a *Refusal into the 422 the API answers, with the figures
// of the quota that refused as members of the error object ("quota" names
// it: licence, organization or project; "org" or "project" its id; "total"
// its limit); other errors are returned unchanged.
func APIError(err error) error {
	var r *Refusal
	if !errors.As(err, &r) {
		return err
	}
	e := httpapi.Refused("%s", r.Error())
	e.Code = "QuotaExceeded"
	e.Field = "maxConnections"
	if r.Transfer != "" {
		e.Field = "project"
	}
	quota := r.Quota
	if quota == "" {
		quota = QuotaLicence
	}
	e.Details = map[string]any{
		"requested": r.Requested, "current": r.Current, "remaining": r.Remaining,
		"ceiling": r.Ceiling, "total": r.Total, "allocated": r.Allocated, "quota": quota,
	}
	switch r.Quota {
	case QuotaOrg:
		e.Details["org"] = r.Scope
	case QuotaProject:
		e.Details["project"] = r.Scope
	}
	return e
}

// RegisterScopes mounts the organization and project quota routes on r
// (the /api/v1 router) and returns their service methods, for the
// console. Reading needs view rights on the organization or project (any
// member of an organization sees its quota, as they see the licence);
// setting an organization's quota needs system-admin, a project's
// org-admin of its organization or system-admin: a quota is set by the
// admin above it, never by the admin it bounds.
func (g *Ledger) RegisterScopes(r *mux.Router, a *httpapi.Adapter, authz *tenancy.Authorizer) *Scopes {
	s := &Scopes{ledger: g, authz: authz}
	for _, k := range []Kind{KindOrg, KindProject} {
		path := "/" + string(k) + "s/{" + string(k) + "}/quota"
		r.Handle(path, a.Handle(s.get(k))).Methods(http.MethodGet)
		r.Handle(path, a.Handle(s.put(k))).Methods(http.MethodPut)
	}
	return s
}

// Kind names what a connection quota bounds.
type Kind string

// The kinds of quota the routes serve, as their paths name them.
const (
	KindOrg     Kind = "org"
	KindProject Kind = "project"
)

// Scopes serves the organization and project quotas to a caller's access:
// the routes call its methods, and so does the console.
type Scopes struct {
	ledger *Ledger
	authz  *tenancy.Authorizer
}

// scope is one organization or project whose quota a request reads or
// sets, resolved for the caller.
type scope struct {
	usage func(context.Context) (ScopeUsage, error)
	set   func(context.Context, *int) error
	note  audit.Note
	// refused says why the caller may read but not set the quota; nil
	// when it may set it.
	refused error
}

// resolve finds the organization or project id of kind for ac: 404 when
// they cannot see it. An organization is set by a system admin; a project
// by an org admin of its organization or a system admin.
func (s *Scopes) resolve(ctx context.Context, ac *tenancy.Access, kind Kind, id string) (scope, error) {
	if kind == KindOrg {
		o, err := s.authz.Org(ctx, ac, id, tenancy.View, "")
		if err != nil {
			return scope{}, err
		}
		sc := scope{
			usage: func(ctx context.Context) (ScopeUsage, error) { return s.ledger.OrgUsage(ctx, o.ID) },
			set:   func(ctx context.Context, n *int) error { return s.ledger.SetOrgQuota(ctx, o.ID, n) },
			note:  audit.Note{Org: o.ID, Target: "quota/org/" + o.ID},
		}
		if !ac.System {
			sc.refused = httpapi.Forbidden("setting the connection quota of organization " + o.ID + " needs system-admin")
		}
		return sc, nil
	}
	p, err := s.authz.Project(ctx, ac, id, tenancy.View, "")
	if err != nil {
		return scope{}, err
	}
	sc := scope{
		usage: func(ctx context.Context) (ScopeUsage, error) { return s.ledger.ProjectUsage(ctx, p.Org, p.ID) },
		set:   func(ctx context.Context, n *int) error { return s.ledger.SetProjectQuota(ctx, p.ID, n) },
		note:  audit.Note{Org: p.Org, Project: p.ID, Target: "quota/project/" + p.ID},
	}
	if ac.Org(p.Org) < tenancy.Admin {
		sc.refused = httpapi.Forbidden("setting the connection quota of project " + p.ID + " needs org-admin of organization " + p.Org + " or system-admin")
	}
	return sc, nil
}

// Licence is the licence's use; every signed-in user may read it: project
// admins need the remaining quota to pick a cluster's max connections, and
// the figures name no tenant.
func (s *Scopes) Licence(ctx context.Context, _ *tenancy.Access) (Usage, error) {
	return s.ledger.Usage(ctx)
}

// Usage is the quota of the organization or project id and its use.
func (s *Scopes) Usage(ctx context.Context, ac *tenancy.Access, kind Kind, id string) (ScopeUsage, error) {
	sc, err := s.resolve(ctx, ac, kind, id)
	if err != nil {
		return ScopeUsage{}, err
	}
	return sc.usage(ctx)
}

// Set sets the quota of the organization or project id to limit, the JSON
// value of maxConnections as the API takes it: an integer from 0 (which
// freezes the scope) to the licence's total, or null, which removes the
// quota. The caller's right to set it is checked before the value.
func (s *Scopes) Set(ctx context.Context, ac *tenancy.Access, kind Kind, id string, limit json.RawMessage) (ScopeUsage, error) {
	sc, err := s.settable(ctx, ac, kind, id)
	if err != nil {
		return ScopeUsage{}, err
	}
	audit.Annotate(ctx, sc.note)
	n, err := s.parse(limit)
	if err != nil {
		return ScopeUsage{}, err
	}
	if err := sc.set(ctx, n); err != nil {
		return ScopeUsage{}, err
	}
	return sc.usage(ctx)
}

// settable resolves the scope for a caller who may set its quota.
func (s *Scopes) settable(ctx context.Context, ac *tenancy.Access, kind Kind, id string) (scope, error) {
	sc, err := s.resolve(ctx, ac, kind, id)
	if err == nil && sc.refused != nil {
		err = sc.refused
	}
	return sc, err
}

func (s *Scopes) get(kind Kind) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ac, err := s.authz.Caller(r)
		if err != nil {
			return err
		}
		u, err := s.Usage(r.Context(), ac, kind, mux.Vars(r)[string(kind)])
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, u)
	}
}

func (s *Scopes) put(kind Kind) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		ac, err := s.authz.Caller(r)
		if err != nil {
			return err
		}
		id := mux.Vars(r)[string(kind)]
		var req struct {
			MaxConnections json.RawMessage `json:"maxConnections"`
		}
		if err := httpapi.Decode(r, &req); err != nil {
			// A caller who may not set the quota hears that (403 or
			// 404), whatever they sent.
			if _, refused := s.settable(r.Context(), ac, kind, id); refused != nil {
				return refused
			}
			return err
		}
		u, err := s.Set(r.Context(), ac, kind, id, req.MaxConnections)
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, u)
	}
}

// parse reads the JSON value of maxConnections (see Set).
func (s *Scopes) parse(raw json.RawMessage) (*int, error) {
	limit := s.ledger.MaxQuota()
	invalid := httpapi.Invalid("maxConnections", "maxConnections is required: an integer from 0 to the licence's total (%d), or null to remove the quota", limit)
	if len(raw) == 0 {
		return nil, invalid
	}
	if bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var n int
	if err := json.Unmarshal(raw, &n); err != nil || n < 0 || n > limit {
		return nil, invalid
	}
	return &n, nil
}
