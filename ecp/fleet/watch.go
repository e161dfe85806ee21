package fleet

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/clusterspec"
)

// watchLoop mirrors the cluster specs and fleet's own keys into memory:
// one load, then one watch shared by every long-poll and every Status call. When the watch breaks (compaction, a lost member) it loads
// again from scratch.
func (f *Fleet) watchLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		rev, err := f.load(ctx)
		if err == nil {
			f.markReady()
			backoff = 100 * time.Millisecond
			err = f.watch(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return
		}
		f.logger.Warn("fleet watch interrupted; reloading", "err", err, "retryIn", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// load reads both prefixes at one revision and makes memory match it,
// keeping what only memory knows (live snapshots, long-poll channels).
func (f *Fleet) load(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 4*f.opts.EtcdTimeout)
	defer cancel()
	from, to := watchRange()
	resp, err := f.cli.Get(cctx, from, clientv3.WithRange(to))
	if err != nil {
		return 0, fmt.Errorf("load fleet state: %w", err)
	}
	rev := resp.Header.Revision
	seen := map[string]bool{}
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.peers)
	// Identity keys may have moved while the watch was down: every
	// cluster checks its identity again at its next report.
	clear(f.idHolders)
	for _, e := range f.entries {
		e.idChecked = ""
	}
	for _, p := range resp.Kvs {
		k := fromPB(p.Key, p.Value, p.ModRevision, p.CreateRevision)
		seen[k.key] = true
		f.applyLocked(k)
	}
	// Whatever memory holds that the snapshot lacks was deleted meanwhile.
	for id, e := range f.entries {
		for _, key := range []string{clusterspec.Key(id), agentKey(id), statusKey(id)} {
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
	return rev, nil
}

// announceLocked wakes whoever waits for memory to move (tests).
func (f *Fleet) announceLocked() {
	close(f.applied)
	f.applied = make(chan struct{})
}

// watchRange is the one key range fleet loads and watches: from the spec
// prefix to the end of its own. One range keeps the events of both in
// revision order, so memory never sees a binding before the spec it was
// made for; keys of others that sort in between are ignored.
func watchRange() (from, to string) {
	from, to = clusterspec.Prefix, clientv3.GetPrefixRangeEnd(Prefix)
	if Prefix < from {
		from = Prefix
	}
	if end := clientv3.GetPrefixRangeEnd(clusterspec.Prefix); end > to {
		to = end
	}
	return from, to
}

// watch applies events from rev on until the watch fails or ctx ends.
func (f *Fleet) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	from, to := watchRange()
	events := f.cli.Watch(wctx, from, clientv3.WithRange(to), clientv3.WithRev(rev))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case wr, ok = <-events:
		}
		if !ok {
			return fmt.Errorf("watch closed")
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch: %w", err)
		}
		f.mu.Lock()
		for _, ev := range wr.Events {
			k := fromPB(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.CreateRevision)
			k.deleted = ev.Type == clientv3.EventTypeDelete
			f.applyLocked(k)
		}
		f.announceLocked()
		f.mu.Unlock()
	}
}
