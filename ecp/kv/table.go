package kv

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Table is a replica's copy of one key prefix, kept by a Mirror: key
// (without the prefix) to value, in revision order. Every entry keeps the
// revision of its last change, deletions included (as tombstones until the
// watch has passed them), so a change the replica applied itself ahead of
// the watch (Refresh, Set) is never overwritten by an older event.
//
// It is for small, often read prefixes (users, organizations, projects,
// role bindings): values are kept raw and decoded by the reader.
type Table struct {
	prefix string
	mirror *Mirror
	loaded atomic.Bool
	// changed, when set, runs (without mu) after memory changed.
	changed func()

	mu    sync.RWMutex
	items map[string]Entry
	// watched is the revision the load or watch has reached.
	watched int64
}

// Entry is one key as a Table knows it.
type Entry struct {
	// Value is nil for a deleted key (a tombstone).
	Value []byte
	// CreateRevision is the key's create revision.
	CreateRevision int64
	// rev is the revision of the change memory last applied.
	rev int64
}

// NewTable returns an empty copy of prefix; Run fills it and keeps it
// current. changed, when not nil, runs after every change of memory.
func NewTable(cli *clientv3.Client, prefix, name string, changed func()) *Table {
	t := &Table{prefix: prefix, items: map[string]Entry{}, changed: changed}
	t.mirror = &Mirror{Client: cli, From: prefix, Name: name, Reset: t.reset, Apply: t.apply,
		Loaded: func() { t.loaded.Store(true) }}
	return t
}

// Run loads and follows the prefix until ctx ends.
func (t *Table) Run(ctx context.Context, logger *slog.Logger) {
	t.mirror.Logger = logger
	t.mirror.Run(ctx)
}

// Loaded reports whether the first load is done: before it, memory is
// empty and must not be answered from.
func (t *Table) Loaded() bool { return t.loaded.Load() }

func (t *Table) reset(kvs []*mvccpb.KeyValue, rev int64) {
	t.mu.Lock()
	seen := make(map[string]bool, len(kvs))
	for _, p := range kvs {
		k := strings.TrimPrefix(string(p.Key), t.prefix)
		seen[k] = true
		t.setLocked(k, p.Value, p.CreateRevision, p.ModRevision)
	}
	// What memory holds and the load lacks was deleted by rev (unless
	// memory learnt of it after rev, which setLocked checks).
	for k, e := range t.items {
		if !seen[k] && e.Value != nil {
			t.setLocked(k, nil, 0, rev)
		}
	}
	t.passedLocked(rev)
	t.mu.Unlock()
	t.notify()
}

func (t *Table) apply(events []*clientv3.Event) {
	t.mu.Lock()
	last := int64(0)
	for _, ev := range events {
		k := strings.TrimPrefix(string(ev.Kv.Key), t.prefix)
		if ev.Type == clientv3.EventTypeDelete {
			t.setLocked(k, nil, 0, ev.Kv.ModRevision)
		} else {
			t.setLocked(k, ev.Kv.Value, ev.Kv.CreateRevision, ev.Kv.ModRevision)
		}
		last = max(last, ev.Kv.ModRevision)
	}
	t.passedLocked(last)
	t.mu.Unlock()
	t.notify()
}

// Refresh reads key k back from etcd and applies it at its own revision:
// a replica calls it after a write it made, so its next read shows the
// write (read-your-writes) without waiting for the watch.
func (t *Table) Refresh(ctx context.Context, cli *clientv3.Client, k string) error {
	cctx, cancel := WithTimeout(ctx)
	defer cancel()
	resp, err := cli.Get(cctx, t.prefix+k)
	if err != nil {
		return fmt.Errorf("read back %s%s: %w", t.prefix, k, err)
	}
	if len(resp.Kvs) == 0 {
		t.Set(k, nil, 0, resp.Header.Revision)
	} else {
		t.Set(k, resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, resp.Kvs[0].ModRevision)
	}
	return nil
}

// Set applies a change the replica made itself and knows the revision of
// (value nil: deleted).
func (t *Table) Set(k string, value []byte, createRev, rev int64) {
	t.mu.Lock()
	t.setLocked(k, value, createRev, rev)
	t.mu.Unlock()
	t.notify()
}

func (t *Table) notify() {
	if t.changed != nil {
		t.changed()
	}
}

// setLocked records k as of rev, unless memory already knows a newer
// change.
func (t *Table) setLocked(k string, value []byte, createRev, rev int64) {
	if old, ok := t.items[k]; ok && rev <= old.rev {
		return
	}
	t.items[k] = Entry{Value: value, CreateRevision: createRev, rev: rev}
}

// passedLocked records that memory holds every change up to rev and drops
// the tombstones no event can be older than any more.
func (t *Table) passedLocked(rev int64) {
	if rev <= t.watched {
		return
	}
	t.watched = rev
	for k, e := range t.items {
		if e.Value == nil && e.rev <= rev {
			delete(t.items, k)
		}
	}
}

// Get returns the live entry of k.
func (t *Table) Get(k string) (Entry, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.items[k]
	return e, ok && e.Value != nil
}

// Values returns the values of the live keys that start with under, in
// key order (as a range read of that prefix would), with their keys.
func (t *Table) Values(under string) (keys []string, values [][]byte) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, e := range t.items {
		if e.Value != nil && strings.HasPrefix(k, under) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	values = make([][]byte, len(keys))
	for i, k := range keys {
		values[i] = t.items[k].Value
	}
	return keys, values
}
