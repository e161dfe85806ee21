package alerts

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// clusterIndex is this replica's list of every project's clusters as the
// rules name them (id and name, in id order), kept up to date from the
// changes of the replica's cluster mirror (registry.Mirror.Subscribe)
// rather than read from etcd at every apply: reading and decoding every
// spec on each change made creating N clusters cost N² (9.7 GB allocated
// while a 10,000-agent fleet was provisioned). A change costs a binary
// search and a copy of one project's list; a change that touches neither
// name nor project (max connections, log collection, the service URL) is
// no change here and applies nothing.
//
// Every replica keeps it, so a new leader has it at once: the mirror
// tells its subscribers of every record it loads and of whatever changed
// while its watch was down, so the index converges with etcd as the
// mirror does.
//
// While this replica leads, it also remembers the clusters that left a
// project (deleted or transferred away), for apply to move their active
// alerts to history without reading every active alert. The first apply
// of a term reads them all instead (full), as does the apply after a
// failed move.
type clusterIndex struct {
	// changed holds one signal: the leader's loop applies once for any
	// number of changes made while it applied.
	changed chan struct{}

	mu        sync.Mutex
	byProject map[string]*projectClusters
	leading   bool
	full      bool
	removed   []removal
}

// projectClusters is one project's clusters in id order. snapshot is the
// last copy handed out, nil once list changed since: an apply copies only
// the projects that changed.
type projectClusters struct {
	list, snapshot []rules.Cluster
}

// removal is a cluster that left project.
type removal struct{ project, cluster string }

func newClusterIndex(mirror *registry.Mirror) *clusterIndex {
	x := &clusterIndex{changed: make(chan struct{}, 1), byProject: map[string]*projectClusters{}}
	mirror.Subscribe(x.apply)
	return x
}

func compareClusterID(c rules.Cluster, id string) int { return strings.Compare(c.ID, id) }

// apply follows one change of the mirror.
func (x *clusterIndex) apply(c registry.Change) {
	if c.Old != nil && c.New != nil && c.Old.Name == c.New.Name && c.Old.Project == c.New.Project {
		return
	}
	x.mu.Lock()
	if c.Old != nil {
		x.removeLocked(c.Old.Project, c.Old.ID)
		if x.leading && (c.New == nil || c.New.Project != c.Old.Project) {
			x.removed = append(x.removed, removal{project: c.Old.Project, cluster: c.Old.ID})
		}
	}
	if c.New != nil {
		p := x.byProject[c.New.Project]
		if p == nil {
			p = &projectClusters{}
			x.byProject[c.New.Project] = p
		}
		next := rules.Cluster{ID: c.New.ID, Name: c.New.Name}
		if i, ok := slices.BinarySearchFunc(p.list, c.New.ID, compareClusterID); ok {
			p.list[i] = next // the mirror said new what it held: keep one
		} else {
			p.list = slices.Insert(p.list, i, next)
		}
		p.snapshot = nil
	}
	x.mu.Unlock()
	select {
	case x.changed <- struct{}{}:
	default: // a signal is already waiting
	}
}

func (x *clusterIndex) removeLocked(project, id string) {
	p := x.byProject[project]
	if p == nil {
		return
	}
	if i, ok := slices.BinarySearchFunc(p.list, id, compareClusterID); ok {
		p.list, p.snapshot = slices.Delete(p.list, i, i+1), nil
	}
	if len(p.list) == 0 {
		delete(x.byProject, project)
	}
}

// lead starts (true) or ends a term: a term starts with a full move of
// the removed clusters' alerts, and only a leader collects removals.
func (x *clusterIndex) lead(on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.leading, x.full, x.removed = on, on, nil
}

// clusters returns project's clusters in id order; never nil (a project
// without clusters selects none). The caller must not change it.
func (x *clusterIndex) clusters(project string) []rules.Cluster {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.byProject[project]
	if p == nil {
		return []rules.Cluster{}
	}
	if p.snapshot == nil {
		p.snapshot = slices.Clone(p.list)
	}
	return p.snapshot
}

// holds reports whether cluster is in project now.
func (x *clusterIndex) holds(project, cluster string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := x.byProject[project]
	if p == nil {
		return false
	}
	_, ok := slices.BinarySearchFunc(p.list, cluster, compareClusterID)
	return ok
}

// takeRemoved returns, and forgets, the clusters that left a project
// since the last call, or full when every active alert must be checked.
func (x *clusterIndex) takeRemoved() (removed []removal, full bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	removed, full = x.removed, x.full
	x.removed, x.full = nil, false
	return removed, full
}

// checkAll makes the next takeRemoved ask for a full check: a move failed
// and is retried.
func (x *clusterIndex) checkAll() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.full = x.leading
}

// projectNames are the names every project's alerts carry besides its
// clusters' (see clusterIndex): its organization's and its own.
type projectNames map[string]alerting.Names

// loadProjectNames reads every project's and organization's name; few
// next to the clusters, they are read at each apply.
func (s *Service) loadProjectNames(ctx context.Context) (projectNames, error) {
	orgs, err := kv.List[tenancy.Org](ctx, s.cli, tenancy.OrgsPrefix)
	if err != nil {
		return nil, err
	}
	projects, err := kv.List[tenancy.Project](ctx, s.cli, tenancy.ProjectsPrefix)
	if err != nil {
		return nil, err
	}
	orgName := make(map[string]string, len(orgs))
	for _, o := range orgs {
		orgName[o.ID] = o.Name
	}
	out := make(projectNames, len(projects))
	for _, p := range projects {
		out[p.ID] = alerting.Names{Organization: orgName[p.Org], Project: p.Name}
	}
	return out, nil
}

// names are the names project's alerts carry: its organization's, its own
// and its clusters now. A project deleted since has no cluster to select.
func (s *Service) names(pn projectNames, project string) alerting.Names {
	n, ok := pn[project]
	if !ok {
		return alerting.Names{Clusters: []rules.Cluster{}}
	}
	n.Clusters = s.index.clusters(project)
	return n
}

// endRemoved moves to history, with EndRemoved, every active alert of a
// cluster that is no longer in the alert's project (deleted, or
// transferred to another project): the project's list stops showing it
// at once, rather than when the rules, rewritten without the cluster,
// resolve it. It reads the active alerts of the projects clusters left
// since the last call, or every active alert at the start of a term and
// after a failure. It returns the alerts moved, for Alertmanager to
// resolve too. Only the leader calls it.
func (s *Service) endRemoved(ctx context.Context, pn projectNames) ([]alerting.Resolution, error) {
	removed, full := s.index.takeRemoved()
	prefixes := []string{activePrefix}
	if !full {
		prefixes = prefixes[:0]
		for _, r := range removed {
			prefixes = append(prefixes, activePrefix+r.project+"/")
		}
		slices.Sort(prefixes)
		prefixes = slices.Compact(prefixes)
	}
	now := s.opts.Now()
	var errs []error
	var moved []alerting.Resolution
	for _, prefix := range prefixes {
		all, err := kv.List[Alert](ctx, s.cli, prefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, a := range all {
			// Projects are never deleted; one missing is read as having
			// no cluster, as the rules render it.
			if _, ok := pn[a.Project]; a.Cluster == "" || ok && s.index.holds(a.Project, a.Cluster) {
				continue
			}
			if _, err := s.end(ctx, Alert{ID: a.ID, Project: a.Project}, now, EndRemoved); err != nil {
				errs = append(errs, err)
				continue
			}
			s.logger.Info("alert of a cluster no longer in its project moved to history", "alert", a.ID, "name", a.Name, "project", a.Project, "cluster", a.Cluster)
			moved = append(moved, resolution(a, pn[a.Project]))
		}
	}
	if len(errs) > 0 {
		s.index.checkAll()
	}
	return moved, errors.Join(errs...)
}

// resolution is a as Alertmanager holds it: its labels and start, and
// annotations that keep naming it in the resolution's notification.
func resolution(a Alert, n alerting.Names) alerting.Resolution {
	an := map[string]string{}
	for k, v := range map[string]string{
		rules.AnnotationSummary: a.Summary, rules.AnnotationDescription: a.Description, rules.AnnotationLink: a.Link,
		rules.AnnotationClusterName: a.ClusterName, rules.AnnotationProjectName: n.Project, rules.AnnotationOrganizationName: n.Organization,
	} {
		if v != "" {
			an[k] = v
		}
	}
	return alerting.Resolution{Labels: a.Labels, Annotations: an, StartsAt: a.StartsAt}
}
