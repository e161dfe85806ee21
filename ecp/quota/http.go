package quota

import (
	"bytes"
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

// APIError turns a *NameTaken into a 409 naming the field name and the
// entry that has the name ("cluster"), and a *Refusal into the 422 the API
// answers, with the figures
// of the quota that refused as members of the error object ("quota" names
// it: licence, organization or project; "org" or "project" its id; "total"
// its limit); other errors are returned unchanged.
func APIError(err error) error {
	var taken *NameTaken
	if errors.As(err, &taken) {
		e := httpapi.Conflict("%s", taken.Error())
		e.Code = "NameTaken"
		e.Field = "name"
		e.Details = map[string]any{"cluster": taken.Holder, "project": taken.Project}
		return e
	}
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
	r.Handle("/orgs/{org}/quota", a.Handle(s.getOrg)).Methods(http.MethodGet)
	r.Handle("/orgs/{org}/quota", a.Handle(s.putOrg)).Methods(http.MethodPut)
	r.Handle("/projects/{project}/quota", a.Handle(s.getProject)).Methods(http.MethodGet)
	r.Handle("/projects/{project}/quota", a.Handle(s.putProject)).Methods(http.MethodPut)
}

type scopeAPI struct {
	ledger *Ledger
	authz  *tenancy.Authorizer
}

func (s *scopeAPI) getOrg(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	o, err := s.authz.Org(r.Context(), ac, mux.Vars(r)["org"], tenancy.View, "")
	if err != nil {
		return err
	}
	u, err := s.ledger.OrgUsage(r.Context(), o.ID)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, u)
}

func (s *scopeAPI) putOrg(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	o, err := s.authz.Org(r.Context(), ac, mux.Vars(r)["org"], tenancy.View, "")
	if err != nil {
		return err
	}
	if !ac.System {
		return httpapi.Forbidden("setting the connection quota of organization " + o.ID + " needs system-admin")
	}
	audit.Annotate(r.Context(), audit.Note{Org: o.ID, Target: "quota/org/" + o.ID})
	n, err := s.decode(r)
	if err != nil {
		return err
	}
	if err := s.ledger.SetOrgQuota(r.Context(), o.ID, n); err != nil {
		return err
	}
	u, err := s.ledger.OrgUsage(r.Context(), o.ID)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, u)
}

func (s *scopeAPI) getProject(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	p, err := s.authz.Project(r.Context(), ac, mux.Vars(r)["project"], tenancy.View, "")
	if err != nil {
		return err
	}
	u, err := s.ledger.ProjectUsage(r.Context(), p.Org, p.ID)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, u)
}

func (s *scopeAPI) putProject(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	p, err := s.authz.Project(r.Context(), ac, mux.Vars(r)["project"], tenancy.View, "")
	if err != nil {
		return err
	}
	if ac.Org(p.Org) < tenancy.Admin {
		return httpapi.Forbidden("setting the connection quota of project " + p.ID + " needs org-admin of organization " + p.Org + " or system-admin")
	}
	audit.Annotate(r.Context(), audit.Note{Org: p.Org, Project: p.ID, Target: "quota/project/" + p.ID})
	n, err := s.decode(r)
	if err != nil {
		return err
	}
	if err := s.ledger.SetProjectQuota(r.Context(), p.ID, n); err != nil {
		return err
	}
	u, err := s.ledger.ProjectUsage(r.Context(), p.Org, p.ID)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, u)
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
