package quota

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// Connection quotas of organizations and projects.
//
// Semantics (what a fleet operator relies on):
//   - A quota is a ceiling on the sum of the max connections of the clusters
//     below it. An unset quota (the default, so existing deployments keep
//     working) is bounded only by the level above: project by organization,
//     organization by the licence.
//   - Quotas may be overcommitted: the project quotas of an organization may
//     add up to more than its quota, and the organization quotas to more
//     than the licence. Every level is checked on every allocation, so what
//     is allocated never passes any of them; a system admin who wants each
//     project guaranteed its share keeps the sums within the level above.
//   - Lowering a quota below what is allocated is allowed, as lowering the
//     licence is: nothing is taken from running clusters, the quota shows
//     as over (remaining 0, overBy) and refuses every increase until the
//     allocation is back under it.
//
// Keys: the limits at OrgLimitPrefix+<org> and ProjectLimitPrefix+<project>
// (decimal; absent = unset), and the allocation counters at
// OrgAllocatedPrefix+<org> and ProjectAllocatedPrefix+<project> (decimal;
// absent = 0), which change only together with a spec and AllocatedKey.
const (
	OrgLimitPrefix         = "/ecp/quota/org-limits/"
	ProjectLimitPrefix     = "/ecp/quota/project-limits/"
	OrgAllocatedPrefix     = "/ecp/quota/org-allocated/"
	ProjectAllocatedPrefix = "/ecp/quota/project-allocated/"
)

// MaxQuota bounds a quota: more than the licence's total could never bind.
func (g *Ledger) MaxQuota() int { return g.Licence().TotalConnections }

// scopes is what one transaction read of the quotas above a project.
type scopes struct {
	project, org     string
	projectLimit     *int
	projectAllocated int
	orgLimit         *int
	orgAllocated     int
}

// Prefetch lists the keys the guards read for an entry of project that
// are known without reading the project first (beside AllocatedKey), for
// the registry's transaction to fetch in its first round trip.
func Prefetch(project string) []string {
	return []string{tenancy.ProjectsPrefix + project, ProjectLimitPrefix + project, ProjectAllocatedPrefix + project}
}

// readScopes reads, inside stm, the quotas and counters of project and of
// its organization. A project without a record (entries written by tests
// or before tenancy) has no organization.
func readScopes(stm concurrency.STM, project string) (scopes, error) {
	sc := scopes{project: project}
	// A multi-key Get fetches the keys in one round trip; its return value
	// is not each key's, so the values are read one by one below (from the
	// transaction's cache).
	stm.Get(Prefetch(project)...)
	if v := stm.Get(tenancy.ProjectsPrefix + project); v != "" {
		var p tenancy.Project
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return sc, fmt.Errorf("decode project %s: %w", project, err)
		}
		sc.org = p.Org
	}
	var err error
	if sc.projectLimit, err = readLimit(stm, ProjectLimitPrefix+project); err != nil {
		return sc, err
	}
	if sc.projectAllocated, err = readCounter(stm, ProjectAllocatedPrefix+project); err != nil {
		return sc, err
	}
	if sc.org == "" {
		return sc, nil
	}
	stm.Get(OrgLimitPrefix+sc.org, OrgAllocatedPrefix+sc.org)
	if sc.orgLimit, err = readLimit(stm, OrgLimitPrefix+sc.org); err != nil {
		return sc, err
	}
	if sc.orgAllocated, err = readCounter(stm, OrgAllocatedPrefix+sc.org); err != nil {
		return sc, err
	}
	return sc, nil
}

// add changes the project's and the organization's counters by delta.
func (sc scopes) add(stm concurrency.STM, delta int) {
	putCounter(stm, ProjectAllocatedPrefix+sc.project, sc.projectAllocated+delta)
	if sc.org != "" {
		putCounter(stm, OrgAllocatedPrefix+sc.org, sc.orgAllocated+delta)
	}
}

// projectRefusal is the refusal the project's quota would give to n
// replacing current, nil when the project has no quota.
func (sc scopes) projectRefusal(n, current int) *Refusal {
	if sc.projectLimit == nil {
		return nil
	}
	return &Refusal{Requested: n, Current: current, Quota: QuotaProject, Scope: sc.project,
		Total: *sc.projectLimit, Allocated: sc.projectAllocated, Remaining: max(0, *sc.projectLimit-sc.projectAllocated)}
}

// orgRefusal is projectRefusal for the organization.
func (sc scopes) orgRefusal(n, current int) *Refusal {
	if sc.org == "" || sc.orgLimit == nil {
		return nil
	}
	return &Refusal{Requested: n, Current: current, Quota: QuotaOrg, Scope: sc.org,
		Total: *sc.orgLimit, Allocated: sc.orgAllocated, Remaining: max(0, *sc.orgLimit-sc.orgAllocated)}
}

func readLimit(stm concurrency.STM, key string) (*int, error) {
	v := stm.Get(key)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", key, err)
	}
	return &n, nil
}

func readCounter(stm concurrency.STM, key string) (int, error) {
	v := stm.Get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return n, nil
}

// putCounter writes n, deleting the key at zero so projects without
// clusters leave nothing behind.
func putCounter(stm concurrency.STM, key string, n int) {
	if n <= 0 {
		stm.Del(key)
		return
	}
	stm.Put(key, strconv.Itoa(n))
}

// ScopeUsage is a quota, what is allocated under it and what remains.
type ScopeUsage struct {
	Org     string `json:"org"`
	Project string `json:"project,omitempty"`
	// MaxConnections is the quota; null when unset.
	MaxConnections *int `json:"maxConnections"`
	Allocated      int  `json:"allocated"`
	// Remaining is how many more connections the clusters here may be
	// given: the least of what this quota and every level above leave.
	Remaining int `json:"remaining"`
	// LimitedBy names the quota that bounds Remaining: "project",
	// "organization" or "licence".
	LimitedBy string `json:"limitedBy"`
	// OverBy is how far the allocation is over the quota (after the quota
	// was lowered below it); 0 otherwise.
	OverBy int `json:"overBy"`
}

// ProjectUsage reads the quota of project (of organization org) with the
// organization's and the licence's, at one revision.
func (g *Ledger) ProjectUsage(ctx context.Context, org, project string) (ScopeUsage, error) {
	return g.scopeUsage(ctx, org, project)
}

// OrgUsage reads the quota of org with the licence's, at one revision.
func (g *Ledger) OrgUsage(ctx context.Context, org string) (ScopeUsage, error) {
	return g.scopeUsage(ctx, org, "")
}

func (g *Ledger) scopeUsage(ctx context.Context, org, project string) (ScopeUsage, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	keys := []string{AllocatedKey, OrgLimitPrefix + org, OrgAllocatedPrefix + org}
	if project != "" {
		keys = append(keys, ProjectLimitPrefix+project, ProjectAllocatedPrefix+project)
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := g.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return ScopeUsage{}, fmt.Errorf("read connection quotas: %w", err)
	}
	vals := make([]*int, len(keys))
	for i, r := range resp.Responses {
		if kvs := r.GetResponseRange().Kvs; len(kvs) == 1 {
			n, err := strconv.Atoi(string(kvs[0].Value))
			if err != nil {
				return ScopeUsage{}, fmt.Errorf("decode %s: %w", keys[i], err)
			}
			vals[i] = &n
		}
	}
	val := func(i int) int {
		if vals[i] == nil {
			return 0
		}
		return *vals[i]
	}
	total := g.Licence().TotalConnections
	u := ScopeUsage{Org: org, Project: project, Remaining: max(0, total-val(0)), LimitedBy: QuotaLicence}
	level := func(limit *int, allocated int, name string) {
		u.MaxConnections, u.Allocated, u.OverBy = limit, allocated, 0
		if limit == nil {
			return
		}
		u.OverBy = max(0, allocated-*limit)
		if left := max(0, *limit-allocated); left <= u.Remaining {
			u.Remaining, u.LimitedBy = left, name
		}
	}
	level(vals[1], val(2), QuotaOrg)
	if project != "" {
		level(vals[3], val(4), QuotaProject)
	}
	return u, nil
}

// SetOrgQuota sets org's quota to n, or removes it when n is nil.
func (g *Ledger) SetOrgQuota(ctx context.Context, org string, n *int) error {
	return g.setLimit(ctx, OrgLimitPrefix+org, n)
}

// SetProjectQuota sets project's quota to n, or removes it when n is nil.
func (g *Ledger) SetProjectQuota(ctx context.Context, project string, n *int) error {
	return g.setLimit(ctx, ProjectLimitPrefix+project, n)
}

// setLimit needs no transaction with the allocations: a limit may be set
// below what is allocated (see the semantics above), and an allocation
// that read the old limit fails its compare on commit and runs again on the
// new one.
func (g *Ledger) setLimit(ctx context.Context, key string, n *int) error {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	var err error
	if n == nil {
		_, err = g.cli.Delete(ctx, key)
	} else {
		_, err = g.cli.Put(ctx, key, strconv.Itoa(*n))
	}
	if err != nil {
		return fmt.Errorf("write connection quota %s: %w", key, err)
	}
	return nil
}
