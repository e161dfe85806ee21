// Package quota owns ecp's connection licence: the total connection quota,
// the per-cluster ceiling, and the ledger of what is allocated to managed
// clusters.
//
// Every change to a cluster's allocation (creating an entry, changing its
// max connections, deleting it) is one etcd transaction over the entry's
// spec (registry.Key) and the allocation counter (AllocatedKey), both
// compared at the revision they were read at. Concurrent changes, from one
// replica or several, therefore serialise in etcd, and the sum of the
// allocations can never exceed the total, whatever the interleaving.
//
// Organizations and projects may carry their own connection quota (see
// scopes.go): the same transactions keep a per-project and a per-org
// allocation counter beside AllocatedKey and check every level at once, so
// no interleaving lets a project or an organization pass its quota either.
package quota

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
)

// NameIndexPrefix holds one key per entry name in a project,
// NameIndexPrefix+<project>/<name>, whose value is the id of the entry that
// has the name. It changes in the same transactions as the specs, so two
// creates, renames or transfers to one name in one project serialise in etcd
// and only one wins. Entries that shared a name before the index existed
// keep it; only the oldest holds the key (see ReindexNames). The prefix
// sorts outside the range the fleet watches, which need not see it.
const NameIndexPrefix = "/ecp/cluster-names/"

// NameKey is the name index key of name in project.
func NameKey(project, name string) string { return NameIndexPrefix + project + "/" + name }

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

// Sentinel errors.
var (
	ErrNotFound = errors.New("quota: cluster entry not found")
	ErrExists   = errors.New("quota: cluster entry exists")
)

// NameTaken refuses a name another entry of the same project has.
type NameTaken struct {
	Name, Project string
	// Holder is the id of the entry that has the name.
	Holder string
	// Transfer names the cluster whose move into Project was refused.
	Transfer string
}

func (e *NameTaken) Error() string {
	if e.Transfer != "" {
		return fmt.Sprintf("project %s already has a cluster named %q (cluster %s): rename one of them before moving cluster %s there",
			e.Project, e.Name, e.Holder, e.Transfer)
	}
	return fmt.Sprintf("name %q is already used by cluster %s in this project; cluster names are unique within a project", e.Name, e.Holder)
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

// Ledger allocates connections to cluster entries.
type Ledger struct {
	cli *clientv3.Client
	now func() time.Time

	mu      sync.RWMutex
	licence Licence

	// txnMu serialises this replica's own transactions: they all meet on
	// AllocatedKey, so running them at once would only make etcd refuse
	// all but one and the rest retry. Correctness does not rest on it
	// (other replicas are not behind it): the compares in etcd do that.
	txnMu sync.Mutex

	conflicts prometheus.Counter
	refusals  *prometheus.CounterVec
}

// NewLedger returns a Ledger enforcing l; its metrics are registered on reg.
func NewLedger(cli *clientv3.Client, l Licence, reg prometheus.Registerer) (*Ledger, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	g := &Ledger{
		cli: cli, now: time.Now, licence: l,
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

// Create stores a new entry with spec.MaxConnections allocated from the
// licence; a *Refusal when it does not fit, ErrExists when the id is taken.
func (g *Ledger) Create(ctx context.Context, spec registry.Spec) error {
	return g.txn(ctx, spec.ID, func(stm concurrency.STM) error {
		if stm.Rev(registry.Key(spec.ID)) != 0 {
			return ErrExists
		}
		if err := claimName(stm, spec, ""); err != nil {
			return err
		}
		allocated, err := readAllocated(stm)
		if err != nil {
			return err
		}
		sc, err := readScopes(stm, spec.Project)
		if err != nil {
			return err
		}
		if err := g.check(spec.MaxConnections, 0, allocated, sc); err != nil {
			return err
		}
		sc.add(stm, spec.MaxConnections)
		return g.put(stm, spec, allocated+spec.MaxConnections)
	}, scopePrefetch(spec.Project)...)
}

// SetMaxConnections changes one entry's allocation; a *Refusal when n is
// over the ceiling or needs more than the licence, the entry's organization
// or its project has remaining.
func (g *Ledger) SetMaxConnections(ctx context.Context, id string, n int) (registry.Spec, error) {
	var out registry.Spec
	err := g.txn(ctx, id, func(stm concurrency.STM) error {
		spec, err := readSpec(stm, id)
		if err != nil {
			return err
		}
		allocated, err := readAllocated(stm)
		if err != nil {
			return err
		}
		sc, err := readScopes(stm, spec.Project)
		if err != nil {
			return err
		}
		if err := g.check(n, spec.MaxConnections, allocated, sc); err != nil {
			return err
		}
		sc.add(stm, n-spec.MaxConnections)
		next := allocated - spec.MaxConnections + n
		spec.MaxConnections = n
		spec.UpdatedAt = g.now().UTC()
		out = spec
		return g.put(stm, spec, next)
	})
	return out, err
}

// Update changes fields of an entry that do not touch its allocation
// (name, service URL, project), in a transaction so it never undoes a
// concurrent max-connections change. fn must not change MaxConnections.
// A change of project moves the entry's allocation with it: a *Refusal
// when the target project or its organization has not that much remaining.
func (g *Ledger) Update(ctx context.Context, id string, fn func(*registry.Spec) error) (registry.Spec, error) {
	var out registry.Spec
	err := g.txn(ctx, id, func(stm concurrency.STM) error {
		spec, err := readSpec(stm, id)
		if err != nil {
			return err
		}
		before, project, name := spec.MaxConnections, spec.Project, spec.Name
		if err := fn(&spec); err != nil {
			return err
		}
		spec.MaxConnections = before
		if spec.Project != project || spec.Name != name {
			transfer := ""
			if spec.Project != project {
				transfer = id
			}
			if err := claimName(stm, spec, transfer); err != nil {
				return err
			}
			releaseName(stm, registry.Spec{ID: id, Project: project, Name: name})
		}
		if spec.Project != project {
			if err := g.move(stm, spec, project); err != nil {
				return err
			}
		}
		spec.UpdatedAt = g.now().UTC()
		b, err := spec.Encode()
		if err != nil {
			return err
		}
		stm.Put(registry.Key(id), string(b))
		out = spec
		return nil
	})
	return out, err
}

// move takes spec's allocation from project from to spec.Project, checking
// the target's quotas (the licence total does not change).
func (g *Ledger) move(stm concurrency.STM, spec registry.Spec, from string) error {
	src, err := readScopes(stm, from)
	if err != nil {
		return err
	}
	dst, err := readScopes(stm, spec.Project)
	if err != nil {
		return err
	}
	n := spec.MaxConnections
	var orgRefusal *Refusal
	if dst.org != src.org {
		orgRefusal = dst.orgRefusal(n, 0)
	}
	if r := g.tightest(orgRefusal, dst.projectRefusal(n, 0)); r != nil {
		r.Transfer = spec.ID
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

// Delete removes the entry and returns its allocation to the licence. The
// keys in also (what other packages keep of the entry, see ecp/registry)
// go in the same transaction.
func (g *Ledger) Delete(ctx context.Context, id string, also ...string) (registry.Spec, error) {
	var out registry.Spec
	err := g.txn(ctx, id, func(stm concurrency.STM) error {
		spec, err := readSpec(stm, id)
		if err != nil {
			return err
		}
		allocated, err := readAllocated(stm)
		if err != nil {
			return err
		}
		sc, err := readScopes(stm, spec.Project)
		if err != nil {
			return err
		}
		sc.add(stm, -spec.MaxConnections)
		stm.Del(registry.Key(id))
		releaseName(stm, spec)
		for _, k := range also {
			stm.Del(k)
		}
		stm.Put(AllocatedKey, strconv.Itoa(max(0, allocated-spec.MaxConnections)))
		out = spec
		return nil
	})
	return out, err
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

func (g *Ledger) put(stm concurrency.STM, spec registry.Spec, allocated int) error {
	b, err := spec.Encode()
	if err != nil {
		return err
	}
	stm.Put(registry.Key(spec.ID), string(b))
	stm.Put(AllocatedKey, strconv.Itoa(allocated))
	return nil
}

// txn runs apply in an etcd software transaction: every key read is
// compared at its read revision on commit, and apply is run again on a
// conflict, so a decision is always taken on current values.
func (g *Ledger) txn(ctx context.Context, id string, apply func(concurrency.STM) error, prefetch ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 4*kv.CallTimeout)
	defer cancel()
	g.txnMu.Lock()
	defer g.txnMu.Unlock()
	attempts := 0
	_, err := concurrency.NewSTM(g.cli, func(stm concurrency.STM) error {
		attempts++
		return apply(stm)
	}, concurrency.WithAbortContext(ctx),
		// The keys known up front in one read instead of one round trip
		// each.
		concurrency.WithPrefetch(append([]string{registry.Key(id), AllocatedKey}, prefetch...)...))
	if attempts > 1 {
		g.conflicts.Add(float64(attempts - 1))
	}
	var refusal *Refusal
	var taken *NameTaken
	if err != nil && !errors.As(err, &refusal) && !errors.As(err, &taken) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) {
		var passthrough passError
		if errors.As(err, &passthrough) {
			return passthrough.err
		}
		return fmt.Errorf("quota transaction: %w", err)
	}
	return err
}

// Pass wraps an error returned by an Update callback so it reaches the
// caller as is (for example an *httpapi.Error).
func Pass(err error) error { return passError{err: err} }

type passError struct{ err error }

func (p passError) Error() string { return p.err.Error() }
func (p passError) Unwrap() error { return p.err }

// claimName takes spec's name in spec's project for spec.ID, or returns a
// *NameTaken naming the entry that has it (transfer, when set, is the
// cluster being moved). A key whose holder is gone or has another name by
// now is stale and taken over. Reading the key and the holder's spec in the
// transaction makes etcd refuse the commit if either changed meanwhile.
func claimName(stm concurrency.STM, spec registry.Spec, transfer string) error {
	k := NameKey(spec.Project, spec.Name)
	if holder := stm.Get(k); holder != "" && holder != spec.ID {
		other, err := readSpec(stm, holder)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		case other.Project == spec.Project && other.Name == spec.Name:
			return &NameTaken{Name: spec.Name, Project: spec.Project, Holder: holder, Transfer: transfer}
		}
	}
	stm.Put(k, spec.ID)
	return nil
}

// releaseName drops the name key of spec's old name and project if spec
// holds it (an entry that shares a name from before the index holds none).
func releaseName(stm concurrency.STM, old registry.Spec) {
	k := NameKey(old.Project, old.Name)
	if stm.Get(k) == old.ID {
		stm.Del(k)
	}
}

func readSpec(stm concurrency.STM, id string) (registry.Spec, error) {
	key := registry.Key(id)
	if stm.Rev(key) == 0 {
		return registry.Spec{}, ErrNotFound
	}
	return registry.Decode([]byte(stm.Get(key)))
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

// Get reads one entry's spec; ErrNotFound when there is none.
func (g *Ledger) Get(ctx context.Context, id string) (registry.Spec, error) {
	var s registry.Spec
	_, err := kv.Get(ctx, g.cli, registry.Key(id), &s)
	if errors.Is(err, kv.ErrNotFound) {
		return s, ErrNotFound
	}
	return s, err
}

// List reads every entry's spec.
func (g *Ledger) List(ctx context.Context) ([]registry.Spec, error) {
	return kv.List[registry.Spec](ctx, g.cli, registry.Prefix)
}

// maxTxnOps stays under etcd's default limit of operations per transaction.
const maxTxnOps = 100

// retiredProjectIndexPrefix held one key per entry by project
// (<prefix><project>/<id>). Nothing reads it any more: the lists answer
// from the replica's in-memory index (clusters.Index), so its keys are
// dropped at start rather than left behind when their entries go.
const retiredProjectIndexPrefix = "/ecp/project-clusters/"

// DropProjectIndex deletes the keys of the retired project index and
// returns how many there were. It runs once at start.
func (g *Ledger) DropProjectIndex(ctx context.Context) (int64, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := g.cli.Delete(ctx, retiredProjectIndexPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("drop the retired project index: %w", err)
	}
	return resp.Deleted, nil
}

// ReindexNames gives every name in use a key in the name index, held by the
// entry that holds it already or else by the oldest entry with that name,
// and drops keys no entry's name matches. It runs once at start, after
// which every write keeps the index. Entries that shared a name before the
// index existed keep working; only new duplicates are refused. Each fix
// applies only if the key and its holder's spec did not change since the
// snapshot.
func (g *Ledger) ReindexNames(ctx context.Context) (added, removed int, err error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	snap, err := g.cli.Txn(ctx).Then(
		clientv3.OpGet(registry.Prefix, clientv3.WithPrefix()),
		clientv3.OpGet(NameIndexPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, 0, fmt.Errorf("read specs and name index: %w", err)
	}
	rev := snap.Header.Revision
	var specs []registry.Spec
	byID := map[string]registry.Spec{}
	for _, item := range snap.Responses[0].GetResponseRange().Kvs {
		s, err := registry.Decode(item.Value)
		if err != nil {
			return 0, 0, err
		}
		specs = append(specs, s)
		byID[s.ID] = s
	}
	have := map[string]string{} // name key -> holder id
	for _, item := range snap.Responses[1].GetResponseRange().Kvs {
		have[string(item.Key)] = string(item.Value)
	}
	want := map[string]string{}
	for k, id := range have {
		if s, ok := byID[id]; ok && NameKey(s.Project, s.Name) == k {
			want[k] = id
		}
	}
	slices.SortFunc(specs, func(a, b registry.Spec) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	for _, s := range specs {
		if k := NameKey(s.Project, s.Name); want[k] == "" {
			want[k] = s.ID
		}
	}
	unchanged := func(key string) clientv3.Cmp {
		return clientv3.Compare(clientv3.ModRevision(key), "<", rev+1)
	}
	for k, id := range have {
		if _, ok := want[k]; ok {
			continue
		}
		resp, err := g.cli.Txn(ctx).If(unchanged(k), unchanged(registry.Key(id))).Then(clientv3.OpDelete(k)).Commit()
		if err != nil {
			return added, removed, fmt.Errorf("drop stale name key: %w", err)
		}
		if resp.Succeeded {
			removed++
		}
	}
	for k, id := range want {
		if have[k] == id {
			continue
		}
		resp, err := g.cli.Txn(ctx).If(unchanged(k), unchanged(registry.Key(id))).Then(clientv3.OpPut(k, id)).Commit()
		if err != nil {
			return added, removed, fmt.Errorf("add name key: %w", err)
		}
		if resp.Succeeded {
			added++
		}
	}
	return added, removed, nil
}
