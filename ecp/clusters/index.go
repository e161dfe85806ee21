package clusters

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
)

// Index is this replica's copy of every cluster spec, kept in (name, id)
// order overall and per project, so that a list is a walk over memory
// instead of a read of every spec from etcd.
//
// It follows etcd through kv.Mirror, as ecp/fleet does: one load, then one
// watch from the load's revision on; every entry remembers the etcd
// revision of its last change, deletions included (as tombstones until the watch has passed
// them), so nothing older ever overwrites something newer. A write made
// through this replica is read back and applied at its own revision before
// the API answers (Refresh), so the next list on this replica shows it even
// when the watch has not delivered it yet. Other replicas see it within the
// watch's latency.
type Index struct {
	cli    *clientv3.Client
	logger *slog.Logger
	// mirror loads and follows the specs into items (kv.Mirror).
	mirror *kv.Mirror

	readyOnce sync.Once
	ready     chan struct{}

	mu sync.RWMutex
	// items are the live entries by id.
	items map[string]*item
	// all holds every live entry, byProject each project's, in (name, id)
	// order. Items are never changed in place: a change replaces the
	// pointer, so a copy of a slice is a consistent snapshot.
	all       []*item
	byProject map[string][]*item
	// gone holds the revision of each deletion the watch may still
	// deliver older events for.
	gone map[string]int64
	// watched is the revision the watch (or load) has reached.
	watched int64
	// applied is closed and replaced after every load and watch batch;
	// tests wait on it instead of sleeping.
	applied chan struct{}
}

// item is one spec as the index holds it.
type item struct {
	spec registry.Spec
	// lowerName is the name for case-insensitive search, computed once.
	lowerName string
	rev       int64
}

// NewIndex returns an empty index; Run fills it and keeps it current.
func NewIndex(cli *clientv3.Client, logger *slog.Logger) *Index {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	x := &Index{
		cli: cli, logger: logger, ready: make(chan struct{}), applied: make(chan struct{}),
		items: map[string]*item{}, byProject: map[string][]*item{}, gone: map[string]int64{},
	}
	x.mirror = &kv.Mirror{Client: cli, From: registry.Prefix, Name: "cluster specs", Logger: logger,
		Reset: x.reset, Apply: x.apply, Loaded: func() { x.readyOnce.Do(func() { close(x.ready) }) }}
	return x
}

// Ready is closed once the first load from etcd is done.
func (x *Index) Ready() <-chan struct{} { return x.ready }

// wait blocks until the first load is done or ctx ends.
func (x *Index) wait(ctx context.Context) error {
	select {
	case <-x.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the cluster index to load: %w", ctx.Err())
	}
}

// Run loads the specs and follows them with one watch until ctx ends. When
// the watch breaks (compaction, a lost member) it loads again.
func (x *Index) Run(ctx context.Context) error {
	x.mirror.Run(ctx)
	return nil
}

// load reads every spec at one revision and makes memory match it.
func (x *Index) load(ctx context.Context) (int64, error) { return x.mirror.Load(ctx) }

// reset makes memory match the specs as they stood at rev (kv.Mirror).
func (x *Index) reset(kvs []*mvccpb.KeyValue, rev int64) {
	seen := make(map[string]bool, len(kvs))
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range kvs {
		id := strings.TrimPrefix(string(p.Key), registry.Prefix)
		seen[id] = true
		x.putLocked(id, p.Value, p.ModRevision)
	}
	// What memory holds and the snapshot lacks was deleted by rev (unless
	// memory learnt of it after rev, which deleteLocked checks).
	for id := range x.items {
		if !seen[id] {
			x.deleteLocked(id, rev)
		}
	}
	x.passedLocked(rev)
}

// apply applies one batch of watch events (kv.Mirror).
func (x *Index) apply(events []*clientv3.Event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	last := int64(0)
	for _, ev := range events {
		id := strings.TrimPrefix(string(ev.Kv.Key), registry.Prefix)
		if ev.Type == clientv3.EventTypeDelete {
			x.deleteLocked(id, ev.Kv.ModRevision)
		} else {
			x.putLocked(id, ev.Kv.Value, ev.Kv.ModRevision)
		}
		last = max(last, ev.Kv.ModRevision)
	}
	x.passedLocked(last)
}

// Refresh reads the entry id from etcd and applies it at its own revision:
// the API calls it after every write it made, so this replica's next list
// shows the write (read-your-writes) without waiting for the watch.
func (x *Index) Refresh(ctx context.Context, id string) error {
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := x.cli.Get(cctx, registry.Key(id))
	if err != nil {
		return fmt.Errorf("read back cluster %s: %w", id, err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(resp.Kvs) == 0 {
		x.deleteLocked(id, resp.Header.Revision)
		return nil
	}
	x.putLocked(id, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	return nil
}

// passedLocked records that memory holds every change up to rev and drops
// the tombstones no event can be older than any more.
func (x *Index) passedLocked(rev int64) {
	close(x.applied)
	x.applied = make(chan struct{})
	if rev <= x.watched {
		return
	}
	x.watched = rev
	for id, r := range x.gone {
		if r <= rev {
			delete(x.gone, id)
		}
	}
}

// newerLocked reports whether a change of id at rev is newer than what
// memory knows.
func (x *Index) newerLocked(id string, rev int64) bool {
	if it := x.items[id]; it != nil && rev <= it.rev {
		return false
	}
	if r, ok := x.gone[id]; ok && rev <= r {
		return false
	}
	return true
}

func (x *Index) putLocked(id string, value []byte, rev int64) {
	if id == "" || strings.Contains(id, "/") || !x.newerLocked(id, rev) {
		return
	}
	spec, err := registry.Decode(value)
	if err != nil {
		x.logger.Warn("ignoring undecodable cluster spec", "cluster", id, "err", err)
		return
	}
	spec.ID = id
	next := &item{spec: spec, lowerName: strings.ToLower(spec.Name), rev: rev}
	if old := x.items[id]; old != nil {
		x.unlinkLocked(old)
	}
	delete(x.gone, id)
	x.items[id] = next
	x.all = insertSorted(x.all, next)
	x.byProject[spec.Project] = insertSorted(x.byProject[spec.Project], next)
}

func (x *Index) deleteLocked(id string, rev int64) {
	if !x.newerLocked(id, rev) {
		return
	}
	if old := x.items[id]; old != nil {
		x.unlinkLocked(old)
		delete(x.items, id)
	}
	x.gone[id] = rev
}

func (x *Index) unlinkLocked(it *item) {
	x.all = removeSorted(x.all, it)
	p := it.spec.Project
	if rest := removeSorted(x.byProject[p], it); len(rest) > 0 {
		x.byProject[p] = rest
	} else {
		delete(x.byProject, p)
	}
}

// compareItems is the order of every list: name, then id (names need not
// be unique; ids are).
func compareItems(a, b *item) int {
	return cmp.Or(strings.Compare(a.spec.Name, b.spec.Name), strings.Compare(a.spec.ID, b.spec.ID))
}

// insertSorted puts it into s at its place. A change costs a memmove of
// the slice, microseconds at 10,000 entries, and keeps every list free of
// sorting.
func insertSorted(s []*item, it *item) []*item {
	i, _ := slices.BinarySearchFunc(s, it, compareItems)
	return slices.Insert(s, i, it)
}

func removeSorted(s []*item, it *item) []*item {
	if i, ok := slices.BinarySearchFunc(s, it, compareItems); ok && s[i] == it {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// appendSnapshot appends to dst the ordered entries of one project, or of
// every project when project is "", keeping only those of projects visible
// allows when it is not nil. The copy is taken under the lock; the items
// it points to never change, so the caller reads them without it.
func (x *Index) appendSnapshot(dst []*item, project string, visible func(project string) bool) []*item {
	x.mu.RLock()
	defer x.mu.RUnlock()
	src := x.all
	if project != "" {
		src = x.byProject[project]
	}
	if visible == nil {
		return append(dst, src...)
	}
	for _, it := range src {
		if visible(it.spec.Project) {
			dst = append(dst, it)
		}
	}
	return dst
}

// waitFor blocks until cond (called with the lock held) holds or ctx
// ends; it wakes after every load and watch batch.
func (x *Index) waitFor(ctx context.Context, cond func() bool) error {
	for {
		x.mu.RLock()
		ok, applied := cond(), x.applied
		x.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-applied:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ListProject returns the specs of one project's entries in (name, id)
// order, from memory: it is the one answer to "which clusters are in
// project p?" for every package of this replica (the monitoring overview
// implements its Clusters with it).
func (x *Index) ListProject(ctx context.Context, project string) ([]registry.Spec, error) {
	if err := x.wait(ctx); err != nil {
		return nil, err
	}
	items := x.appendSnapshot(nil, project, nil)
	out := make([]registry.Spec, len(items))
	for i, it := range items {
		out[i] = it.spec
	}
	return out, nil
}

// Len is the number of entries memory holds.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.items)
}
