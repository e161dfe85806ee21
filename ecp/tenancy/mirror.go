package tenancy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/kv"
)

// view is this replica's copy of every organization, project and role
// binding, each prefix a kv.Table, so that a request's access and a
// console page's navigation cost no etcd read.
//
// Correctness rules:
//   - Not loaded, not used: until all three prefixes have loaded once the
//     Authorizer reads etcd as before, so a starting replica never answers
//     from an empty copy.
//   - Read-your-writes: once the view runs, every write Store makes is read
//     back and applied at its own revision before the write returns
//     (Store.wrote), so the replica that revoked a binding refuses at once.
//   - Other replicas apply a change when their watch delivers it, in
//     revision order (kv.Table).
type view struct {
	// bindings follows the per-user index of role bindings.
	orgs, projects, bindings *kv.Table
	// running is set when run starts: from then on writes are read back
	// (a write before it is in the first load).
	running atomic.Bool

	mu sync.Mutex
	// recs caches the organizations and projects as records, rebuilt on
	// the first read after a change of either.
	recs *records
}

func newView(cli *clientv3.Client) *view {
	v := &view{}
	drop := func() {
		v.mu.Lock()
		v.recs = nil
		v.mu.Unlock()
	}
	v.orgs = kv.NewTable(cli, OrgsPrefix, "organizations", drop)
	v.projects = kv.NewTable(cli, ProjectsPrefix, "projects", drop)
	v.bindings = kv.NewTable(cli, UserRolesPrefix, "role bindings", nil)
	return v
}

// run follows every prefix until ctx ends.
func (v *view) run(ctx context.Context, logger *slog.Logger) {
	v.running.Store(true)
	var wg sync.WaitGroup
	for _, t := range []*kv.Table{v.orgs, v.projects, v.bindings} {
		wg.Go(func() { t.Run(ctx, logger) })
	}
	wg.Wait()
}

// ready reports whether every prefix has loaded.
func (v *view) ready() bool {
	return v.orgs.Loaded() && v.projects.Loaded() && v.bindings.Loaded()
}

// decodeTable decodes the live values of t under a key prefix, in key
// order.
func decodeTable[T any](t *kv.Table, under string) ([]T, error) {
	keys, values := t.Values(under)
	out := make([]T, 0, len(values))
	for i, val := range values {
		var v T
		if err := json.Unmarshal(val, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", keys[i], err)
		}
		out = append(out, v)
	}
	return out, nil
}

// records returns the organizations and projects (shared: read only).
func (v *view) records() (*records, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.recs != nil {
		return v.recs, nil
	}
	rec := &records{byOrg: map[string]Org{}, byID: map[string]Project{}, mirrored: true}
	var err error
	if rec.orgs, err = decodeTable[Org](v.orgs, ""); err != nil {
		return nil, err
	}
	if rec.projects, err = decodeTable[Project](v.projects, ""); err != nil {
		return nil, err
	}
	for _, o := range rec.orgs {
		rec.byOrg[o.ID] = o
	}
	for _, pr := range rec.projects {
		rec.byID[pr.ID] = pr
	}
	v.recs = rec
	return rec, nil
}

// userBindings returns username's bindings, from the per-user index as
// Store.UserBindings reads them.
func (v *view) userBindings(username string) ([]Binding, error) {
	return decodeTable[Binding](v.bindings, username+"/")
}
