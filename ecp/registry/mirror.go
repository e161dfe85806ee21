package registry

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
)

// Mirror is this replica's one copy of every cluster record, kept in
// (name, id) order overall and per project: the lists, "which clusters
// are in project p?" (the monitoring overview) and whoever subscribes to
// its changes read it, so a list is a walk over memory instead of a read
// of every spec from etcd.
//
// It follows etcd through kv.Mirror: one load, then one watch from the
// load's revision on; every entry remembers the etcd revision of its last
// change, deletions included (as tombstones until the watch has passed
// them), so nothing older ever overwrites something newer. A write made
// through this replica is read back and applied at its own revision before
// the API answers (Refresh), so the next list on this replica shows it even
// when the watch has not delivered it yet. Other replicas see it within the
// watch's latency.
//
// Subscribers (Subscribe) hear of every change the mirror applies, from
// the watch, a reload or Refresh, once each, after the lock is released,
// in the order applied; they run on the goroutine that applied the change
// and must not block nor subscribe. A reload tells them of what changed
// while the watch was down, the first load of every record. A part that
// needs its own keys in one revision order with the records (fleet)
// follows them through the same load and watch instead (Follow).
type Mirror struct {
	cli    *clientv3.Client
	logger *slog.Logger
	// follow loads and follows the specs into items (kv.Mirror).
	follow *kv.Mirror

	// subscribers hear of each change in pending once the lock is
	// released (flush).
	subMu       sync.Mutex
	subscribers []func(Change)

	readyOnce sync.Once
	ready     chan struct{}

	mu sync.RWMutex
	// items are the live entries by id.
	items map[string]*Entry
	// all holds every live entry, byProject each project's, in (name, id)
	// order. Items are never changed in place: a change replaces the
	// pointer, so a copy of a slice is a consistent snapshot.
	all       []*Entry
	byProject map[string][]*Entry
	// gone holds the revision of each deletion the watch may still
	// deliver older events for.
	gone map[string]int64
	// watched is the revision the watch (or load) has reached.
	watched int64
	// applied is closed and replaced after every load and watch batch;
	// tests wait on it instead of sleeping.
	applied chan struct{}
	// pending holds the changes applied and not yet delivered (flush).
	pending []Change
}

// Entry is one spec as the mirror holds it. Entries are never changed in
// place, so a reader may keep one without the lock.
type Entry struct {
	Spec Spec
	// LowerName is the name for case-insensitive search, computed once.
	LowerName string
	rev       int64
}

// Change is one change of a record as this replica's mirror applied it:
// Old is nil for an entry new to the mirror, New is nil for a deletion.
type Change struct {
	Old, New *Spec
}

// NewMirror returns an empty mirror; Run fills it and keeps it current.
func NewMirror(cli *clientv3.Client, logger *slog.Logger) *Mirror {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	x := &Mirror{
		cli: cli, logger: logger, ready: make(chan struct{}), applied: make(chan struct{}),
		items: map[string]*Entry{}, byProject: map[string][]*Entry{}, gone: map[string]int64{},
	}
	x.follow = &kv.Mirror{Client: cli, From: Prefix, Name: "cluster specs", Logger: logger,
		Reset: x.reset, Apply: x.Apply, Loaded: func() { x.readyOnce.Do(func() { close(x.ready) }) }}
	return x
}

// Follow makes the mirror's one load and one watch also cover the keys
// [from, to) of a part that must see them and the records in one revision
// order: fleet, whose memory must never hold a binding before the record
// it was made for, and whose desired-state revision is the newest of a
// record's and a binding's (an older record change arriving after a newer
// binding through a second watch would never reach an agent that already
// saw the binding's revision). The range followed becomes the smallest
// one holding both; reset and apply get every key-value and event of it,
// the records' included, in revision order, each right after the mirror
// applied its own part and told its subscribers. name says what is
// followed, in log messages. Call it once, before Run.
func (x *Mirror) Follow(name, from, to string, reset func(kvs []*mvccpb.KeyValue, rev int64), apply func(events []*clientv3.Event)) {
	f := x.follow
	f.From, f.To = min(f.From, from), max(clientv3.GetPrefixRangeEnd(Prefix), to)
	f.Name += " and " + name
	f.Reset = func(kvs []*mvccpb.KeyValue, rev int64) {
		x.reset(kvs, rev)
		reset(kvs, rev)
	}
	f.Apply = func(events []*clientv3.Event) {
		x.Apply(events)
		apply(events)
	}
}

// Subscribe makes fn hear of every change this mirror applies from now on
// (see Mirror).
func (x *Mirror) Subscribe(fn func(Change)) {
	x.subMu.Lock()
	defer x.subMu.Unlock()
	x.subscribers = append(x.subscribers, fn)
}

// flush delivers the pending changes; called after mu is released.
func (x *Mirror) flush() {
	x.subMu.Lock()
	defer x.subMu.Unlock()
	x.mu.Lock()
	pending := x.pending
	x.pending = nil
	x.mu.Unlock()
	for _, c := range pending {
		for _, fn := range x.subscribers {
			fn(c)
		}
	}
}

// noteLocked queues a change for the subscribers.
func (x *Mirror) noteLocked(old, next *Entry) {
	c := Change{}
	if old != nil {
		c.Old = &old.Spec
	}
	if next != nil {
		c.New = &next.Spec
	}
	x.pending = append(x.pending, c)
}

// Ready is closed once the first load from etcd is done.
func (x *Mirror) Ready() <-chan struct{} { return x.ready }

// Wait blocks until the first load is done or ctx ends.
func (x *Mirror) Wait(ctx context.Context) error {
	select {
	case <-x.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the cluster mirror to load: %w", ctx.Err())
	}
}

// Run loads the specs and follows them with one watch until ctx ends. When
// the watch breaks (compaction, a lost member) it loads again.
func (x *Mirror) Run(ctx context.Context) error {
	x.follow.Run(ctx)
	return nil
}

// Load reads every spec (and what Follow added) at one revision, makes
// memory match it and returns the revision. Run calls it; tests call it
// to reload without a watch.
func (x *Mirror) Load(ctx context.Context) (int64, error) { return x.follow.Load(ctx) }

// reset makes memory match the specs as they stood at rev (kv.Mirror).
func (x *Mirror) reset(kvs []*mvccpb.KeyValue, rev int64) {
	defer x.flush()
	seen := make(map[string]bool, len(kvs))
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range kvs {
		id, ok := strings.CutPrefix(string(p.Key), Prefix)
		if !ok {
			continue // a key Follow added
		}
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

// Apply applies one batch of watch events (kv.Mirror calls it; tests fill
// a mirror without etcd with it).
func (x *Mirror) Apply(events []*clientv3.Event) {
	defer x.flush()
	x.mu.Lock()
	defer x.mu.Unlock()
	last := int64(0)
	for _, ev := range events {
		last = max(last, ev.Kv.ModRevision)
		id, ok := strings.CutPrefix(string(ev.Kv.Key), Prefix)
		if !ok {
			continue // a key Follow added
		}
		if ev.Type == clientv3.EventTypeDelete {
			x.deleteLocked(id, ev.Kv.ModRevision)
		} else {
			x.putLocked(id, ev.Kv.Value, ev.Kv.ModRevision)
		}
	}
	x.passedLocked(last)
}

// Refresh reads the entry id from etcd and applies it at its own revision:
// the API calls it after every write it made, so this replica's next list
// shows the write (read-your-writes) without waiting for the watch.
func (x *Mirror) Refresh(ctx context.Context, id string) error {
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := x.cli.Get(cctx, Key(id))
	if err != nil {
		return fmt.Errorf("read back cluster %s: %w", id, err)
	}
	defer x.flush()
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
func (x *Mirror) passedLocked(rev int64) {
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
func (x *Mirror) newerLocked(id string, rev int64) bool {
	if it := x.items[id]; it != nil && rev <= it.rev {
		return false
	}
	if r, ok := x.gone[id]; ok && rev <= r {
		return false
	}
	return true
}

func (x *Mirror) putLocked(id string, value []byte, rev int64) {
	if id == "" || strings.Contains(id, "/") || !x.newerLocked(id, rev) {
		return
	}
	spec, err := Decode(value)
	if err != nil {
		x.logger.Warn("ignoring undecodable cluster spec", "cluster", id, "err", err)
		return
	}
	spec.ID = id
	next := &Entry{Spec: spec, LowerName: strings.ToLower(spec.Name), rev: rev}
	old := x.items[id]
	if old != nil {
		x.unlinkLocked(old)
	}
	x.noteLocked(old, next)
	delete(x.gone, id)
	x.items[id] = next
	x.all = insertSorted(x.all, next)
	x.byProject[spec.Project] = insertSorted(x.byProject[spec.Project], next)
}

func (x *Mirror) deleteLocked(id string, rev int64) {
	if !x.newerLocked(id, rev) {
		return
	}
	if old := x.items[id]; old != nil {
		x.unlinkLocked(old)
		delete(x.items, id)
		x.noteLocked(old, nil)
	}
	x.gone[id] = rev
}

func (x *Mirror) unlinkLocked(it *Entry) {
	x.all = removeSorted(x.all, it)
	p := it.Spec.Project
	if rest := removeSorted(x.byProject[p], it); len(rest) > 0 {
		x.byProject[p] = rest
	} else {
		delete(x.byProject, p)
	}
}

// CompareEntries is the order of every list: name, then id (names need
// not be unique; ids are).
func CompareEntries(a, b *Entry) int {
	return cmp.Or(strings.Compare(a.Spec.Name, b.Spec.Name), strings.Compare(a.Spec.ID, b.Spec.ID))
}

// insertSorted puts it into s at its place. A change costs a memmove of
// the slice, microseconds at 10,000 entries, and keeps every list free of
// sorting.
func insertSorted(s []*Entry, it *Entry) []*Entry {
	i, _ := slices.BinarySearchFunc(s, it, CompareEntries)
	return slices.Insert(s, i, it)
}

func removeSorted(s []*Entry, it *Entry) []*Entry {
	if i, ok := slices.BinarySearchFunc(s, it, CompareEntries); ok && s[i] == it {
		return slices.Delete(s, i, i+1)
	}
	return s
}

// AppendSnapshot appends to dst the ordered entries of one project, or of
// every project when project is "", keeping only those of projects visible
// allows when it is not nil. The copy is taken under the lock; the items
// it points to never change, so the caller reads them without it.
func (x *Mirror) AppendSnapshot(dst []*Entry, project string, visible func(project string) bool) []*Entry {
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
		if visible(it.Spec.Project) {
			dst = append(dst, it)
		}
	}
	return dst
}

// waitFor blocks until cond (called with the lock held) holds or ctx
// ends; it wakes after every load and watch batch.
func (x *Mirror) waitFor(ctx context.Context, cond func() bool) error {
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
func (x *Mirror) ListProject(ctx context.Context, project string) ([]Spec, error) {
	if err := x.Wait(ctx); err != nil {
		return nil, err
	}
	items := x.AppendSnapshot(nil, project, nil)
	out := make([]Spec, len(items))
	for i, it := range items {
		out[i] = it.Spec
	}
	return out, nil
}

// Len is the number of entries memory holds.
func (x *Mirror) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.items)
}
