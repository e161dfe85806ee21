package monitoring

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
)

// Prefix holds, per cluster, the last report snapshot whose counts or
// abnormal list changed: /ecp/monitoring/reports/<cluster>.
const Prefix = "/ecp/monitoring/reports/"

// shareRetry is the pause after a failed etcd write.
const shareRetry = time.Second

// shared is the stored form of a Snapshot.
type shared struct {
	Snapshot
	// Replica names the writer, so a replica ignores its own writes.
	Replica string `json:"replica"`
}

// Share makes the Store exchange snapshots with the other replicas through
// etcd while Run runs: a replica writes a cluster's snapshot only when its
// counts or abnormal list differ from the last one written or seen (not on
// every report: those change rarely, so the cost is an etcd write per
// change, not per report), and every replica watches the others' writes.
// Call it before Run; replica names this replica.
func (s *Store) Share(cli *clientv3.Client, replica string, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cli, s.replica, s.logger = cli, replica, logger
	s.pending = map[string]Snapshot{}
	s.wake = make(chan struct{}, 1)
	s.written = map[string]Snapshot{}
}

// sameContent says whether two snapshots show the same thing to a user
// apart from their times and the abnormal objects' reasons: an agent's
// reason carries counters that grow with every collection ("failed 12,
// actions failed 12", then "failed 15, …"), and writing them would cost an
// etcd write per report of every cluster with a failing rule. An object
// going abnormal, changing status or recovering is written; the fresh
// reason stays in the memory of the replica that took the report.
func sameContent(a, b Snapshot) bool {
	return a.Reachable == b.Reachable && a.Rules == b.Rules && a.Connectors == b.Connectors &&
		a.Actions == b.Actions && a.Sources == b.Sources &&
		slices.EqualFunc(a.Abnormal, b.Abnormal, func(x, y agentproto.Resource) bool {
			return x.Kind == y.Kind && x.ID == y.ID && x.Name == y.Name && x.Status == y.Status
		})
}

// queueLocked schedules sn for writing when its content changed.
func (s *Store) queueLocked(clusterID string, sn Snapshot) {
	if s.cli == nil {
		return
	}
	if prev, ok := s.written[clusterID]; ok && sameContent(prev, sn) {
		return
	}
	s.pending[clusterID] = sn
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run writes changed snapshots and applies the other replicas' until ctx
// ends. Without Share it only waits.
func (s *Store) Run(ctx context.Context) error {
	s.mu.RLock()
	cli := s.cli
	s.mu.RUnlock()
	if cli == nil {
		<-ctx.Done()
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.watchLoop(ctx)
	}()
	s.writeLoop(ctx)
	<-done
	return nil
}

func (s *Store) writeLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		s.mu.Lock()
		batch := s.pending
		s.pending = map[string]Snapshot{}
		// Counted as written while in flight, so an identical report
		// meanwhile queues nothing.
		for id, sn := range batch {
			s.written[id] = sn
		}
		s.mu.Unlock()
		failed := false
		for _, part := range s.putBatch(ctx, batch) {
			if ctx.Err() != nil {
				return
			}
			s.logger.Warn("share monitoring snapshot", "cluster", part.id, "err", part.err)
			failed = true
			s.mu.Lock()
			delete(s.written, part.id)
			if _, newer := s.pending[part.id]; !newer {
				s.pending[part.id] = batch[part.id]
			}
			s.mu.Unlock()
		}
		if failed {
			sleepCtx(ctx, shareRetry)
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
}

// putsPerTxn bounds the snapshots written in one etcd transaction: below
// etcd's default --max-txn-ops (128), and one revision for all of them.
const putsPerTxn = 64

// putFailure is a snapshot that could not be written.
type putFailure struct {
	id  string
	err error
}

// putBatch writes the snapshots of batch, up to putsPerTxn per transaction,
// and returns those it could not write. A burst of registrations queues a
// first snapshot per cluster; one transaction per snapshot drained them at
// etcd's latency each (minutes for tens of thousands) and spent a revision
// on each.
func (s *Store) putBatch(ctx context.Context, batch map[string]Snapshot) []putFailure {
	ids := make([]string, 0, len(batch))
	for id := range batch {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var failed []putFailure
	for part := range slices.Chunk(ids, putsPerTxn) {
		ok, err := s.put(ctx, part, batch)
		if err == nil && !ok && len(part) > 1 {
			// An entry of the part is gone: write the others one by one.
			for _, id := range part {
				if _, err := s.put(ctx, []string{id}, batch); err != nil {
					failed = append(failed, putFailure{id, err})
				}
			}
			continue
		}
		if err != nil {
			for _, id := range part {
				failed = append(failed, putFailure{id, err})
			}
		}
	}
	return failed
}

// put writes the snapshots of ids in one transaction, only if every one's
// entry exists: a report taken before its deletion must not leave a key
// behind it (registry.Delete removes this one). It says whether they did.
func (s *Store) put(ctx context.Context, ids []string, batch map[string]Snapshot) (bool, error) {
	cmps := make([]clientv3.Cmp, 0, len(ids))
	ops := make([]clientv3.Op, 0, len(ids))
	for _, id := range ids {
		b, err := json.Marshal(shared{Snapshot: batch[id], Replica: s.replica})
		if err != nil {
			return false, fmt.Errorf("encode snapshot of cluster %s: %w", id, err)
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(registry.Key(id)), ">", 0))
		ops = append(ops, clientv3.OpPut(Key(id), string(b)))
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := s.cli.Txn(cctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("write snapshots of %d clusters: %w", len(ids), err)
	}
	return resp.Succeeded, nil
}

// Key is where the snapshot of a cluster is shared; registry.Delete
// removes it with the entry.
func Key(clusterID string) string { return Prefix + clusterID }

// Keys lists what the Store keeps in etcd of a cluster; its signature is
// what registry.KeepsKeys takes.
func Keys(clusterID string) []string { return []string{Key(clusterID)} }

// watchLoop loads every stored snapshot, then follows changes
// (kv.Mirror).
func (s *Store) watchLoop(ctx context.Context) {
	m := &kv.Mirror{Client: s.cli, From: Prefix, Name: "monitoring snapshots", Logger: s.logger,
		// A reload only adds: this replica's own snapshots may be newer
		// than their stored copy, and one of a deleted cluster is never
		// shown (the overview lists the project's clusters from the
		// mirror of the specs).
		Reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			for _, p := range kvs {
				s.apply(string(p.Key), p.Value)
			}
		},
		Apply: func(events []*clientv3.Event) {
			for _, ev := range events {
				if ev.Type == clientv3.EventTypeDelete {
					s.Forget(strings.TrimPrefix(string(ev.Kv.Key), Prefix))
					continue
				}
				s.apply(string(ev.Kv.Key), ev.Kv.Value)
			}
		}}
	m.Run(ctx)
}

// apply takes another replica's snapshot unless this replica holds a
// newer report of the cluster.
func (s *Store) apply(key string, value []byte) {
	var sh shared
	if json.Unmarshal(value, &sh) != nil || sh.Replica == s.replica {
		return
	}
	id := strings.TrimPrefix(key, Prefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.snap[id]; ok && !cur.CollectedAt.Before(sh.CollectedAt) {
		return
	}
	s.snap[id] = sh.Snapshot
	// Seen: an identical report here needs no write of its own.
	s.written[id] = sh.Snapshot
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
