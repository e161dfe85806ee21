package fleet

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	ecpkv "github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
)

// watchLoop mirrors the cluster specs and fleet's own keys into memory
// through kv.Mirror: one load, then one watch shared by every long-poll
// and every Status call. When the watch breaks (compaction, a lost member)
// it loads again from scratch.
func (f *Fleet) watchLoop(ctx context.Context) { f.mirror().Run(ctx) }

// mirror follows watchRange into memory (reset, applyEvents).
func (f *Fleet) mirror() *ecpkv.Mirror {
	from, to := watchRange()
	return &ecpkv.Mirror{Client: f.cli, From: from, To: to, LoadTimeout: 4 * f.opts.EtcdTimeout,
		Name: "fleet state", Logger: f.logger, Reset: f.reset, Apply: f.applyEvents, Loaded: f.markReady}
}

// load reads both prefixes at one revision and makes memory match it.
func (f *Fleet) load(ctx context.Context) (int64, error) { return f.mirror().Load(ctx) }

// reset makes memory match both prefixes as they stood at rev, keeping
// what only memory knows (live snapshots, long-poll channels).
func (f *Fleet) reset(kvs []*mvccpb.KeyValue, rev int64) {
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
	for _, p := range kvs {
		k := fromPB(p.Key, p.Value, p.ModRevision, p.CreateRevision)
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
}

// watchRange is the one key range fleet loads and watches: from the spec
// prefix to the end of its own. One range keeps the events of both in
// revision order, so memory never sees a binding before the spec it was
// made for; keys of others that sort in between are ignored.
func watchRange() (from, to string) {
	from, to = registry.Prefix, clientv3.GetPrefixRangeEnd(Prefix)
	if Prefix < from {
		from = Prefix
	}
	if end := clientv3.GetPrefixRangeEnd(registry.Prefix); end > to {
		to = end
	}
	return from, to
}

// applyEvents applies one batch of watch events (kv.Mirror).
func (f *Fleet) applyEvents(events []*clientv3.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range events {
		k := fromPB(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.CreateRevision)
		k.deleted = ev.Type == clientv3.EventTypeDelete
		f.applyLocked(k)
	}
	f.announceLocked()
}
