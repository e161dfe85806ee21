// Package quota owns ecp's connection licence and its arithmetic: the total
// connection quota, the per-cluster ceiling, the organization and project
// quotas, what is allocated under each, and the refusals.
//
// It does not write a cluster's record: ecp/registry does, and every
// change of an allocation (creating an entry, changing its max
// connections, moving it between projects, deleting it) is one etcd
// transaction of the registry's over the record, its name key and the
// allocation counters. The quota side of that transaction is the guards
// here (Allocate, Move, Release): they read the counters and limits through
// the registry's concurrency.STM, refuse with a *Refusal, or write the
// counters, so each key read is compared at the revision it was read at on
// commit. Concurrent changes, from one replica or several, therefore
// serialise in etcd, and the sum of the allocations can never exceed any
// quota, whatever the interleaving.
//
// The import goes one way, registry → quota: the registry owns the record
// and its transaction and calls the guards; the guards know nothing of the
// record but the project and the numbers they are given, so quota imports
// neither the registry nor etcd beyond the STM interface.
//
// Organizations and projects may carry their own connection quota (see
// scopes.go): the guards keep a per-project and a per-org allocation
// counter beside AllocatedKey and check every level at once, so no
// interleaving lets a project or an organization pass its quota either.
package quota

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/ecp/kv"
)

// AllocatedKey holds the sum of every entry's MaxConnections, as a decimal
// integer; it changes only together with a spec, in one transaction.
const AllocatedKey = "/ecp/quota/allocated"

// Licence defaults.
const (
	DefaultTotalConnections = 10000
	DefaultMaxPerCluster    = 5000
)

// Licence is the connection quota ecp may split between clusters.
type Licence struct {
	// TotalConnections is the sum all clusters' max connections may reach.
	TotalConnections int `json:"totalConnections" yaml:"totalConnections"`
	// MaxPerCluster is the most one cluster may be given.
	MaxPerCluster int `json:"maxPerCluster" yaml:"maxPerCluster"`
}

// Validate says what is wrong with l, naming the field.
func (l Licence) Validate() error {
	switch {
	case l.TotalConnections < 1:
		return fmt.Errorf("licence.totalConnections must be at least 1, got %d", l.TotalConnections)
	case l.MaxPerCluster < 1:
		return fmt.Errorf("licence.maxPerCluster must be at least 1, got %d", l.MaxPerCluster)
	case l.MaxPerCluster > l.TotalConnections:
		return fmt.Errorf("licence.maxPerCluster (%d) must not exceed licence.totalConnections (%d)", l.MaxPerCluster, l.TotalConnections)
	}
	return nil
}

// Quotas a Refusal can name.
const (
	QuotaLicence = "licence"
	QuotaOrg     = "organization"
	QuotaProject = "project"
)

// Refusal says why an allocation was refused: which quota and what it has
// left.
type Refusal struct {
	Requested int
	// Current is what the cluster had before (0 for a new entry and for
	// the target of a transfer).
	Current int
	Ceiling int
	// Quota is the quota that refused (QuotaLicence, QuotaOrg or
	// QuotaProject); Scope is the id of the organization or project.
	Quota string
	Scope string
	// Total, Allocated and Remaining are that quota's figures: its limit,
	// what is allocated under it, and what may still be allocated on top of
	// Current.
	Total     int
	Allocated int
	Remaining int
	// OverCeiling is true when the per-cluster ceiling, not a remaining
	// quota, refused it.
	OverCeiling bool
	// Transfer names the cluster whose move into Scope was refused.
	Transfer string
}

func (r *Refusal) Error() string {
	if r.OverCeiling {
		return fmt.Sprintf("maxConnections %d exceeds the licence's per-cluster ceiling of %d", r.Requested, r.Ceiling)
	}
	if r.Quota == QuotaLicence || r.Quota == "" {
		return fmt.Sprintf("maxConnections %d needs %d more connections but the licence has %d remaining (total %d, allocated %d)",
			r.Requested, r.Requested-r.Current, r.Remaining, r.Total, r.Allocated)
	}
	whose := fmt.Sprintf("%s %s's connection quota", r.Quota, r.Scope)
	if r.Transfer != "" {
		return fmt.Sprintf("moving cluster %s (maxConnections %d) needs %d connections in %s but it has %d remaining (quota %d, allocated %d)",
			r.Transfer, r.Requested, r.Requested, whose, r.Remaining, r.Total, r.Allocated)
	}
	return fmt.Sprintf("maxConnections %d needs %d more connections but %s has %d remaining (quota %d, allocated %d)",
		r.Requested, r.Requested-r.Current, whose, r.Remaining, r.Total, r.Allocated)
}

// Usage is the licence and what is allocated.
type Usage struct {
	Licence
	Allocated int `json:"allocated"`
	Remaining int `json:"remaining"`
}

// Ledger holds the licence in force and guards the allocations of
// cluster entries (inside the registry's transactions).
type Ledger struct {
	cli *clientv3.Client

	mu      sync.RWMutex
	licence Licence

	conflicts prometheus.Counter
	refusals  *prometheus.CounterVec
}

// NewLedger returns a Ledger enforcing l; its metrics are registered on reg.
func NewLedger(cli *clientv3.Client, l Licence, reg prometheus.Registerer) (*Ledger, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	g := &Ledger{
		cli: cli, licence: l,
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecp_quota_transaction_retries_total",
			Help: "Quota transactions retried because another change touched the same keys first.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_quota_refusals_total",
			Help: "Allocations refused, by reason: ceiling or remaining (the licence's), organization or project (their connection quota).",
		}, []string{"reason"}),
	}
	reg.MustRegister(g.conflicts, g.refusals)
	g.refusals.WithLabelValues("ceiling")
	g.refusals.WithLabelValues("remaining")
	g.refusals.WithLabelValues(QuotaOrg)
	g.refusals.WithLabelValues(QuotaProject)
	return g, nil
}

// Licence returns the licence in force.
func (g *Ledger) Licence() Licence {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.licence
}

// SetLicence replaces the licence (on reload). Lowering the total below
// what is allocated takes nothing away; it only refuses further increases.
func (g *Ledger) SetLicence(l Licence) error {
	if err := l.Validate(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.licence = l
	return nil
}

// Usage reads the allocation counter.
func (g *Ledger) Usage(ctx context.Context) (Usage, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := g.cli.Get(ctx, AllocatedKey)
	if err != nil {
		return Usage{}, fmt.Errorf("read allocated connections: %w", err)
	}
	allocated := 0
	if len(resp.Kvs) == 1 {
		if allocated, err = strconv.Atoi(string(resp.Kvs[0].Value)); err != nil {
			return Usage{}, fmt.Errorf("decode %s: %w", AllocatedKey, err)
		}
	}
	l := g.Licence()
	return Usage{Licence: l, Allocated: allocated, Remaining: max(0, l.TotalConnections-allocated)}, nil
}

// Allocate is the guard of every change of one entry's allocation, run
// inside the store's transaction stm: n replacing current for an entry of
// project, refused with a *Refusal when n is over the ceiling or needs more
// than the licence, the project's organization or the project has
// remaining; otherwise the counters move by n-current.
func (g *Ledger) Allocate(stm concurrency.STM, project string, n, current int) error {
	allocated, err := readAllocated(stm)
	if err != nil {
		return err
	}
	sc, err := readScopes(stm, project)
	if err != nil {
		return err
	}
	if err := g.check(n, current, allocated, sc); err != nil {
		return err
	}
	sc.add(stm, n-current)
	// Never below 0, even if the counter drifted under the specs' sum
	// (Recount repairs it at the next start).
	stm.Put(AllocatedKey, strconv.Itoa(max(0, allocated-current+n)))
	return nil
}

// Release returns the n connections of an entry of project to the
// licence and its scopes (the entry is deleted in stm): an allocation
// lowered to 0, which is never refused.
func (g *Ledger) Release(stm concurrency.STM, project string, n int) error {
	return g.Allocate(stm, project, 0, n)
}

// Move takes the n connections of entry id from project from to project
// to, checking the target's quotas (the licence total does not change); a
// *Refusal naming id as the transfer when they have not n remaining.
func (g *Ledger) Move(stm concurrency.STM, id string, n int, from, to string) error {
	src, err := readScopes(stm, from)
	if err != nil {
		return err
	}
	dst, err := readScopes(stm, to)
	if err != nil {
		return err
	}
	var orgRefusal *Refusal
	if dst.org != src.org {
		orgRefusal = dst.orgRefusal(n, 0)
	}
	if r := g.tightest(orgRefusal, dst.projectRefusal(n, 0)); r != nil {
		r.Transfer = id
		return r
	}
	if src.org == dst.org {
		// Within one organization its counter stays as it is.
		src.org, dst.org = "", ""
	}
	src.add(stm, -n)
	dst.add(stm, n)
	// Every change of an allocation writes AllocatedKey, even one that
	// leaves the total as it is, so Recount's compare on it sees them all.
	allocated, err := readAllocated(stm)
	if err != nil {
		return err
	}
	stm.Put(AllocatedKey, strconv.Itoa(allocated))
	return nil
}

// Retried counts transactions the store ran again because another change
// touched the same keys first.
func (g *Ledger) Retried(n int) {
	if n > 0 {
		g.conflicts.Add(float64(n))
	}
}

// check refuses n (replacing current) against the licence's ceiling, then
// against every quota above the entry: the licence, its organization's and
// its project's.
func (g *Ledger) check(n, current, allocated int, sc scopes) error {
	l := g.Licence()
	if n > l.MaxPerCluster {
		remaining := max(0, l.TotalConnections-allocated)
		g.refusals.WithLabelValues("ceiling").Inc()
		return &Refusal{Requested: n, Current: current, Ceiling: l.MaxPerCluster, Quota: QuotaLicence,
			Total: l.TotalConnections, Allocated: allocated, Remaining: remaining, OverCeiling: true}
	}
	// Lowering is always allowed, even when a quota shrank below what is
	// allocated: it is how an operator gets back under it.
	if n <= current {
		return nil
	}
	lic := &Refusal{Requested: n, Current: current, Quota: QuotaLicence,
		Total: l.TotalConnections, Allocated: allocated, Remaining: max(0, l.TotalConnections-allocated)}
	r := g.tightest(lic, sc.orgRefusal(n, current), sc.projectRefusal(n, current))
	if r == nil {
		return nil // not a nil *Refusal: that would be a non-nil error
	}
	r.Ceiling = l.MaxPerCluster
	return r
}

// tightest returns, of the candidates that refuse (a nil candidate is a
// quota that is not set), the one with the least remaining, so the caller
// hears of the quota that binds first; on a tie the most specific one
// (the later in the list). It counts the refusal by reason.
func (g *Ledger) tightest(candidates ...*Refusal) *Refusal {
	var out *Refusal
	for _, r := range candidates {
		if r == nil || r.Requested-r.Current <= r.Remaining {
			continue
		}
		if out == nil || r.Remaining <= out.Remaining {
			out = r
		}
	}
	if out != nil {
		reason := "remaining"
		if out.Quota != QuotaLicence {
			reason = out.Quota
		}
		g.refusals.WithLabelValues(reason).Inc()
	}
	return out
}

func readAllocated(stm concurrency.STM) (int, error) {
	v := stm.Get(AllocatedKey)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("decode %s: %w", AllocatedKey, err)
	}
	return n, nil
}
