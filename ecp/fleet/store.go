package fleet

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// errNoChange tells updateStatus that nothing needs writing.
var errNoChange = errors.New("fleet: no change")

// errNotBound tells updateStatus that the binding it was about changed.
var errNotBound = errors.New("fleet: agent no longer bound")

// maxCASAttempts bounds compare-and-swap retries; each retry first reads
// the fresh record, so it only loops under real contention.
const maxCASAttempts = 5

func agentKey(id string) string  { return agentsPrefix + id }
func statusKey(id string) string { return statusPrefix + id }
func tokenKey(hash string) string {
	return tokensPrefix + hash
}

// statusCmp holds when the stored status is still the one memory knows.
func statusCmp(e *entry) clientv3.Cmp {
	if e.hasStatus {
		return clientv3.Compare(clientv3.ModRevision(statusKey(e.id)), "=", e.statusRev)
	}
	return clientv3.Compare(clientv3.CreateRevision(statusKey(e.id)), "=", 0)
}

// bindCmp holds while the agent bound at bindRev is still bound.
func bindCmp(id string, bindRev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(agentKey(id)), "=", bindRev)
}

// updateStatus writes the status that mutate derives from the entry, with
// a compare-and-swap on the status record and the extra guards; on a lost
// race it reads the fresh status and binding and tries again. mutate runs
// with f.mu held and returns errNoChange when there is nothing to write.
func (f *Fleet) updateStatus(ctx context.Context, id, reason string, guards []clientv3.Cmp,
	mutate func(e *entry) (statusRecord, error),
) error {
	for range maxCASAttempts {
		f.mu.Lock()
		e := f.entryLocked(id)
		prev := e.status.State
		if !e.hasStatus {
			prev = StateCreated
		}
		next, err := mutate(e)
		cmps := append([]clientv3.Cmp{statusCmp(e)}, guards...)
		f.mu.Unlock()
		if errors.Is(err, errNoChange) {
			return nil
		}
		if err != nil {
			return err
		}
		val, err := encode(next)
		if err != nil {
			return err
		}
		cctx, cancel := f.etcdCtx(ctx)
		resp, err := f.cli.Txn(cctx).If(cmps...).
			Then(clientv3.OpPut(statusKey(id), val)).
			Else(clientv3.OpGet(statusKey(id)), clientv3.OpGet(agentKey(id))).
			Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("write status of cluster %s: %w", id, err)
		}
		rev := resp.Header.Revision
		f.mu.Lock()
		if resp.Succeeded {
			f.metrics.etcdWrites.WithLabelValues(reason).Inc()
			f.applyLocked(kv{key: statusKey(id), value: []byte(val), modRev: rev})
			f.mu.Unlock()
			if next.State != prev {
				f.metrics.transitions.WithLabelValues(next.State).Inc()
				f.logger.Info("cluster state changed", "cluster", id, "from", prev, "to", next.State, "reason", reasonCode(next.Reason))
			}
			return nil
		}
		f.applyGetsLocked(resp, 0, statusKey(id), agentKey(id))
		f.mu.Unlock()
	}
	return fmt.Errorf("write status of cluster %s: still conflicting after %d attempts", id, maxCASAttempts)
}

// applyGetsLocked applies the Get responses of a transaction, from the
// skip-th response on, one per key in keys; a key a Get did not find is
// applied as deleted at the transaction's revision.
func (m *memory) applyGetsLocked(resp *clientv3.TxnResponse, skip int, keys ...string) {
	rev := resp.Header.Revision
	for i, key := range keys {
		if skip+i >= len(resp.Responses) {
			return
		}
		rr := resp.Responses[skip+i].GetResponseRange()
		if rr == nil {
			continue
		}
		if len(rr.Kvs) == 0 {
			m.applyLocked(kv{key: key, modRev: rev, deleted: true})
			continue
		}
		p := rr.Kvs[0]
		m.applyLocked(fromPB(p.Key, p.Value, p.ModRevision, p.CreateRevision))
	}
}

// fromPB takes the fields fleet reads of an etcd key-value. Passing the
// fields rather than the mvccpb type keeps fleet on the client module's API.
func fromPB(key, value []byte, modRev, createRev int64) kv {
	return kv{key: string(key), value: value, modRev: modRev, createRev: createRev}
}

func reasonCode(r *Reason) string {
	if r == nil {
		return ""
	}
	return r.Code
}
