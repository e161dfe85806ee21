package fleet

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/registry"
)

// follow has the replica's mirror of the records (registry.Mirror) carry
// fleet's keys too: one load, then one watch shared by the cluster lists,
// every long-poll and every Status call, over one key range, so that the
// events of a record and of its binding, state and tokens reach memory in
// revision order (registry.Mirror.Follow says why that matters). When the
// watch breaks (compaction, a lost member) the mirror loads again from
// scratch and reset makes memory match.
func (f *Fleet) follow() {
	f.records.Follow("fleet state", Prefix, clientv3.GetPrefixRangeEnd(Prefix), f.reset, f.applyEvents)
}

// load reads the records and fleet's keys at one revision and makes memory
// match it.
func (f *Fleet) load(ctx context.Context) (int64, error) { return f.records.Load(ctx) }

// reset makes memory match both prefixes as they stood at rev, keeping
// what only memory knows (live snapshots, long-poll channels).
func (f *Fleet) reset(pbs []*mvccpb.KeyValue, rev int64) {
	kvs := make([]kv, len(pbs))
	for i, p := range pbs {
		kvs[i] = fromPB(p.Key, p.Value, p.ModRevision, p.CreateRevision)
	}
	f.digests.decodeDigests(kvs)
	seen := map[string]bool{}
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.peers)
	clear(f.told)
	// Identity keys may have moved while the watch was down: every
	// cluster checks its identity again at its next report.
	clear(f.idHolders)
	for _, e := range f.entries {
		e.idChecked = ""
	}
	for _, k := range kvs {
		seen[k.key] = true
		f.applyLocked(k)
	}
	// Whatever memory holds that the snapshot lacks was deleted meanwhile.
	for id, e := range f.entries {
		for _, key := range []string{registry.Key(id), agentKey(id), statusKey(id)} {
			if !seen[key] {
				f.applyLocked(kv{key: key, modRev: rev, deleted: true})
			}
		}
		// A dashboard request whose expiry the broken watch missed.
		for req := range e.dashboard {
			if !seen[dashboardPrefix+id+"/"+req] {
				delete(e.dashboard, req)
			}
		}
		if !e.hasSpec && !e.hasAgent && !e.hasStatus {
			delete(f.entries, id)
		}
	}
	f.announceLocked()
	f.markReady()
}

// applyEvents applies one batch of watch events (registry.Mirror.Follow).
func (f *Fleet) applyEvents(events []*clientv3.Event) {
	kvs := make([]kv, len(events))
	for i, ev := range events {
		kvs[i] = fromPB(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.CreateRevision)
		kvs[i].deleted = ev.Type == clientv3.EventTypeDelete
	}
	f.digests.decodeDigests(kvs)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range kvs {
		f.applyLocked(k)
	}
	f.announceLocked()
}
