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
// (the /api/v1 router). Reading needs view rights on the organization or
// project (any member of an organization sees its quota, as they see the
// licence); setting an organization's quota needs system-admin, a
// project's org-admin of its organization or system-admin: a quota is set
// by the admin above it, never by the admin it bounds.
func (g *Ledger) RegisterScopes(r *mux.Router, a *httpapi.Adapter, authz *tenancy.Authorizer) {
	s := &scopeAPI{ledger: g, authz: authz}
	r.Handle("/orgs/{org}/quota", a.Handle(s.get(s.org))).Methods(http.MethodGet)
	r.Handle("/orgs/{org}/quota", a.Handle(s.put(s.org))).Methods(http.MethodPut)
	r.Handle("/projects/{project}/quota", a.Handle(s.get(s.project))).Methods(http.MethodGet)
	r.Handle("/projects/{project}/quota", a.Handle(s.put(s.project))).Methods(http.MethodPut)
}

type scopeAPI struct {
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

// org resolves the organization in the path: visible to its members,
// set by a system admin.
func (s *scopeAPI) org(r *http.Request) (scope, error) {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return scope{}, err
	}
	o, err := s.authz.Org(r.Context(), ac, mux.Vars(r)["org"], tenancy.View, "")
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

// project resolves the project in the path: visible to its members, set
// by an org admin of its organization or a system admin.
func (s *scopeAPI) project(r *http.Request) (scope, error) {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return scope{}, err
	}
	p, err := s.authz.Project(r.Context(), ac, mux.Vars(r)["project"], tenancy.View, "")
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

func (s *scopeAPI) get(resolve func(*http.Request) (scope, error)) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		sc, err := resolve(r)
		if err != nil {
			return err
		}
		u, err := sc.usage(r.Context())
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, u)
	}
}

func (s *scopeAPI) put(resolve func(*http.Request) (scope, error)) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		sc, err := resolve(r)
		if err != nil {
			return err
		}
		if sc.refused != nil {
			return sc.refused
		}
		audit.Annotate(r.Context(), sc.note)
		n, err := s.decode(r)
		if err != nil {
			return err
		}
		if err := sc.set(r.Context(), n); err != nil {
			return err
		}
		u, err := sc.usage(r.Context())
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, u)
	}
}

// decode reads {"maxConnections": N} (N from 0, which freezes the scope,
// to the licence's total) or {"maxConnections": null}, which removes the
// quota.
func (s *scopeAPI) decode(r *http.Request) (*int, error) {
	var req struct {
		MaxConnections json.RawMessage `json:"maxConnections"`
	}
	if err := httpapi.Decode(r, &req); err != nil {
		return nil, err
	}
	limit := s.ledger.MaxQuota()
	invalid := httpapi.Invalid("maxConnections", "maxConnections is required: an integer from 0 to the licence's total (%d), or null to remove the quota", limit)
	if len(req.MaxConnections) == 0 {
		return nil, invalid
	}
	if bytes.Equal(req.MaxConnections, []byte("null")) {
		return nil, nil
	}
	var n int
	if err := json.Unmarshal(req.MaxConnections, &n); err != nil || n < 0 || n > limit {
		return nil, invalid
	}
	return &n, nil
}
