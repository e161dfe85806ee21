package tenancy

import (
	"context"
	"encoding/json"
	"fmt"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/kv"
)

// records are the organizations and projects as of one read (or of this
// replica's copy), kept by an Access; shared, so read only.
type records struct {
	orgs     []Org
	projects []Project
	byOrg    map[string]Org
	byID     map[string]Project
	// mirrored says they are this replica's copy, which may not have seen
	// a record another replica created a moment ago: a lookup it misses
	// asks etcd.
	mirrored bool
}

// Snapshot loads p's access together with every organization and project
// in one etcd transaction (three ranges, one round trip), for a request
// that asks many tenancy questions: a console page needs its navigation,
// its project and the project's lists. Project, Org, Orgs and Projects
// answer such an Access from the records as of that transaction instead
// of reading again, so keep it for one request only. Once this replica's
// copy has loaded it reads no etcd at all (Access).
func (a *Authorizer) Snapshot(ctx context.Context, p *auth.Principal) (*Access, error) {
	if a.store.view.ready() {
		return a.fromView(p)
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := a.store.cli.Txn(ctx).Then(
		clientv3.OpGet(UserRolesPrefix+p.Username+"/", clientv3.WithPrefix()),
		clientv3.OpGet(OrgsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(ProjectsPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("read bindings, organizations and projects: %w", err)
	}
	bs, err := decodeAll[Binding](resp.Responses[0].GetResponseRange())
	if err != nil {
		return nil, err
	}
	rec := &records{byOrg: map[string]Org{}, byID: map[string]Project{}}
	if rec.orgs, err = decodeAll[Org](resp.Responses[1].GetResponseRange()); err != nil {
		return nil, err
	}
	if rec.projects, err = decodeAll[Project](resp.Responses[2].GetResponseRange()); err != nil {
		return nil, err
	}
	for _, o := range rec.orgs {
		rec.byOrg[o.ID] = o
	}
	for _, pr := range rec.projects {
		rec.byID[pr.ID] = pr
	}
	ac := accessOf(p, bs)
	ac.records = rec
	return ac, nil
}

func decodeAll[T any](rr *etcdserverpb.RangeResponse) ([]T, error) {
	out := make([]T, 0, len(rr.GetKvs()))
	for _, kv := range rr.GetKvs() {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Orgs are the organizations the caller may see.
func (a *Authorizer) Orgs(ctx context.Context, ac *Access) ([]Org, error) {
	orgs, err := a.listOrgs(ctx, ac)
	if err != nil {
		return nil, err
	}
	visible := make([]Org, 0, len(orgs))
	for _, o := range orgs {
		if ac.Org(o.ID) >= View {
			visible = append(visible, o)
		}
	}
	return visible, nil
}

// Projects are the projects the caller may see, of org only unless org is
// "".
func (a *Authorizer) Projects(ctx context.Context, ac *Access, org string) ([]Project, error) {
	ps, err := a.listProjects(ctx, ac)
	if err != nil {
		return nil, err
	}
	visible := make([]Project, 0, len(ps))
	for _, p := range ps {
		if (org == "" || p.Org == org) && ac.Project(p) >= View {
			visible = append(visible, p)
		}
	}
	return visible, nil
}

func (a *Authorizer) listOrgs(ctx context.Context, ac *Access) ([]Org, error) {
	if ac.records != nil {
		return ac.records.orgs, nil
	}
	return a.store.ListOrgs(ctx)
}

func (a *Authorizer) listProjects(ctx context.Context, ac *Access) ([]Project, error) {
	if ac.records != nil {
		return ac.records.projects, nil
	}
	return a.store.ListProjects(ctx)
}

func (a *Authorizer) getOrg(ctx context.Context, ac *Access, id string) (Org, error) {
	if ac.records == nil {
		return a.store.GetOrg(ctx, id)
	}
	o, ok := ac.records.byOrg[id]
	switch {
	case !ok && ac.records.mirrored:
		return a.store.GetOrg(ctx, id)
	case !ok:
		return Org{}, ErrNotFound
	}
	return o, nil
}

func (a *Authorizer) getProject(ctx context.Context, ac *Access, id string) (Project, error) {
	if ac.records == nil {
		return a.store.GetProject(ctx, id)
	}
	p, ok := ac.records.byID[id]
	switch {
	case !ok && ac.records.mirrored:
		return a.store.GetProject(ctx, id)
	case !ok:
		return Project{}, ErrNotFound
	}
	return p, nil
}
