package clusters

import (
	"context"
	"errors"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// The service methods below are the API without HTTP: the routes decode a
// request, call one and encode its result, and the console calls them
// in-process with the access it loaded for its request. Authorization is
// inside them, so both see the same 404/403 rule. Refusals are
// *httpapi.Error.

// ListQuery is a list request as the caller gives it. Limit 0 is
// DefaultListLimit.
type ListQuery struct {
	Q, State, PageToken string
	Limit               int
}

// List is one page of the project's entries (see ListPage): 404 when the
// caller cannot see the project.
func (api *API) List(ctx context.Context, ac *tenancy.Access, project string, in ListQuery) (ListPage, error) {
	p, err := api.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return ListPage{}, err
	}
	q, err := newListQuery(in, "project\x00"+p.ID)
	if err != nil {
		return ListPage{}, err
	}
	if err := api.index.Wait(ctx); err != nil {
		return ListPage{}, err
	}
	return api.page(ctx, p.ID, nil, q)
}

// Get is one entry: 404 when absent or the caller cannot see its project.
func (api *API) Get(ctx context.Context, ac *tenancy.Access, id string) (Cluster, error) {
	e, err := api.loadEntry(ctx, ac, id, tenancy.View)
	if err != nil {
		return Cluster{}, err
	}
	return api.view(ctx, e.spec)
}

// Create adds an entry to project: 404 when the caller cannot see the
// project, 403 when they may not change it.
func (api *API) Create(ctx context.Context, ac *tenancy.Access, project string, req CreateRequest) (Cluster, error) {
	p, err := api.authz.Project(ctx, ac, project, tenancy.Admin, "")
	if err != nil {
		return Cluster{}, err
	}
	return api.createIn(ctx, p, req)
}

// onEntry runs do on entry id for a caller who needs level want on its
// project, as the entry's routes do (withEntry).
func onEntry[Req, Res any](ctx context.Context, api *API, ac *tenancy.Access, id string, want tenancy.Level, req Req, do func(context.Context, entry, Req) (Res, error)) (Res, error) {
	e, err := api.loadEntry(ctx, ac, id, want)
	if err != nil {
		var zero Res
		return zero, err
	}
	return do(ctx, e, req)
}

// Update edits entry id (PATCH /clusters/{id}).
func (api *API) Update(ctx context.Context, ac *tenancy.Access, id string, req PatchRequest) (Cluster, error) {
	return onEntry(ctx, api, ac, id, tenancy.Admin, req, api.update)
}

// Delete removes entry id and everything of it (registry.Delete).
func (api *API) Delete(ctx context.Context, ac *tenancy.Access, id string) error {
	e, err := api.loadEntry(ctx, ac, id, tenancy.Admin)
	if err != nil {
		return err
	}
	return api.remove(ctx, e)
}

// Transfer moves entry id to another project the caller administers.
func (api *API) Transfer(ctx context.Context, ac *tenancy.Access, id string, req TransferRequest) (Cluster, error) {
	return onEntry(ctx, api, ac, id, tenancy.Admin, req, api.transfer)
}

// SetMaxConnections changes entry id's max connections, within the
// licence and the quotas (422 with the figures when refused).
func (api *API) SetMaxConnections(ctx context.Context, ac *tenancy.Access, id string, req MaxConnectionsRequest) (Cluster, error) {
	return onEntry(ctx, api, ac, id, tenancy.Admin, req, api.setMaxConnections)
}

// IssueRegistration issues a new single-use token for entry id and renders
// the guide; it is also the re-register path.
func (api *API) IssueRegistration(ctx context.Context, ac *tenancy.Access, id string) (Registration, error) {
	return onEntry(ctx, api, ac, id, tenancy.Admin, struct{}{}, api.issue)
}

// Dashboard is the login-free jump into entry id's dashboard (see
// dashboard.go), for a caller who may view it.
func (api *API) Dashboard(ctx context.Context, ac *tenancy.Access, id string) (Jump, error) {
	e, err := api.loadEntry(ctx, ac, id, tenancy.View)
	if err != nil {
		return Jump{}, err
	}
	target, role, err := api.target(ctx, e)
	if err != nil {
		return Jump{}, err
	}
	return api.session(ctx, e.spec, target, role)
}

// Limits are what bounds the max connections of project's entries: the
// licence's figures (GET /licence, which any signed-in user may read) and
// the project's quota with its organization's (GET
// /projects/{project}/quota), for a caller who may see project. The
// figures are quota.Ledger's; the cluster page shows them beside the max
// connections form.
func (api *API) Limits(ctx context.Context, ac *tenancy.Access, project string) (quota.Usage, quota.ScopeUsage, error) {
	p, err := api.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return quota.Usage{}, quota.ScopeUsage{}, err
	}
	lic, err := api.store.Ledger().Usage(ctx)
	if err != nil {
		return quota.Usage{}, quota.ScopeUsage{}, err
	}
	scope, err := api.store.Ledger().ProjectUsage(ctx, p.Org, p.ID)
	if err != nil {
		return quota.Usage{}, quota.ScopeUsage{}, err
	}
	return lic, scope, nil
}

// Name is an entry's id and name: what a filter's drop-down shows.
type Name struct {
	ID   string
	Name string
}

// Names are the project's entries in (name, id) order, read from the list
// index: no etcd read and no agent state, whatever the project's size.
func (api *API) Names(ctx context.Context, ac *tenancy.Access, project string) ([]Name, error) {
	p, err := api.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return nil, err
	}
	if err := api.index.Wait(ctx); err != nil {
		return nil, err
	}
	items := api.index.AppendSnapshot(nil, p.ID, nil)
	out := make([]Name, len(items))
	for i, it := range items {
		out[i] = Name{ID: it.Spec.ID, Name: it.Spec.Name}
	}
	return out, nil
}

// loadEntry reads entry id for a caller who needs level want on its
// project: 404 when absent or invisible, 403 when only visible.
func (api *API) loadEntry(ctx context.Context, ac *tenancy.Access, id string, want tenancy.Level) (entry, error) {
	notFound := httpapi.NotFound("no cluster %s", id)
	if !kv.ValidID(id) {
		return entry{}, notFound
	}
	spec, err := api.store.Get(ctx, id)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return entry{}, notFound
		}
		return entry{}, err
	}
	p, err := api.authz.Project(ctx, ac, spec.Project, tenancy.View, "")
	if err != nil {
		var he *httpapi.Error
		if errors.As(err, &he) && he.Status == 404 {
			return entry{}, notFound
		}
		return entry{}, err
	}
	if ac.Project(p) < want {
		return entry{}, httpapi.Forbidden("you may view cluster " + id + " but changing it needs project-admin, org-admin or system-admin on its project")
	}
	if want == tenancy.Admin {
		audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "cluster/" + id})
	}
	return entry{access: ac, spec: spec, project: p}, nil
}
