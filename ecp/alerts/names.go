package alerts

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// loadNames reads, for every project, the names its alerts carry and the
// clusters it holds now. The leader calls it on every apply and whenever a
// cluster or a project changes, so the rules follow an edit, a transfer
// or a deletion.
func (s *Service) loadNames(ctx context.Context) (map[string]alerting.Names, error) {
	orgs, err := kv.List[tenancy.Org](ctx, s.cli, tenancy.OrgsPrefix)
	if err != nil {
		return nil, err
	}
	projects, err := kv.List[tenancy.Project](ctx, s.cli, tenancy.ProjectsPrefix)
	if err != nil {
		return nil, err
	}
	specs, err := kv.List[registry.Spec](ctx, s.cli, registry.Prefix)
	if err != nil {
		return nil, err
	}
	orgName := make(map[string]string, len(orgs))
	for _, o := range orgs {
		orgName[o.ID] = o.Name
	}
	out := make(map[string]alerting.Names, len(projects))
	for _, p := range projects {
		// Not nil: a project without clusters selects none.
		out[p.ID] = alerting.Names{Organization: orgName[p.Org], Project: p.Name, Clusters: []rules.Cluster{}}
	}
	for _, c := range specs {
		n, ok := out[c.Project]
		if !ok {
			continue
		}
		n.Clusters = append(n.Clusters, rules.Cluster{ID: c.ID, Name: c.Name})
		out[c.Project] = n
	}
	for _, n := range out {
		// Stable files: unchanged names write no file and reload nothing.
		slices.SortFunc(n.Clusters, func(a, b rules.Cluster) int { return strings.Compare(a.ID, b.ID) })
	}
	return out, nil
}

// endRemoved moves to history, with EndRemoved, every active alert of a
// cluster that is no longer in the alert's project (deleted, or
// transferred to another project): the project's list stops showing it
// at once, rather than when the rules, rewritten without the cluster,
// resolve it. It returns the alerts moved, for Alertmanager to resolve
// too. Only the leader calls it.
func (s *Service) endRemoved(ctx context.Context, names map[string]alerting.Names) ([]alerting.Resolution, error) {
	all, err := kv.List[Alert](ctx, s.cli, activePrefix)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	var errs []error
	var moved []alerting.Resolution
	for _, a := range all {
		if a.Cluster == "" || slices.ContainsFunc(names[a.Project].Clusters, func(c rules.Cluster) bool { return c.ID == a.Cluster }) {
			continue
		}
		if _, err := s.end(ctx, Alert{ID: a.ID, Project: a.Project}, now, EndRemoved); err != nil {
			errs = append(errs, err)
			continue
		}
		s.logger.Info("alert of a cluster no longer in its project moved to history", "alert", a.ID, "name", a.Name, "project", a.Project, "cluster", a.Cluster)
		moved = append(moved, resolution(a, names[a.Project]))
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
