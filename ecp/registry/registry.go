// Package registry owns "a managed cluster" in etcd: its record (Spec,
// record.go), every write of it (Store, store.go: create, edit, transfer,
// max connections, delete, each one transaction with the name check and
// the licence and quota guards of ecp/quota inside it), the replica's one
// mirror of the records (Mirror, mirror.go: the lists and the monitoring
// overview read it, and subscribers hear of each change and deletion), and
// its lifecycle across the packages that keep something of it, above all
// its end: Delete is the one function that runs when a cluster is deleted,
// and it removes every etcd key of the entry.
//
// registry imports quota, never the reverse. The transaction must belong to
// the record's owner: a create, rename or transfer checks the name and the
// quotas and writes the record at one set of revisions, so one function
// has to see all of it. quota keeps the arithmetic (the licence, the
// scopes' limits and counters, the refusals) as guards that run on the
// registry's concurrency.STM and need nothing of the record but a project
// and the numbers, so they take no registry type. The reverse (quota
// calling back into the registry, or guard interfaces declared here)
// would put the record's rules in two places again.
//
// Keys of one entry, by owner (grep the prefixes to check the list):
//
//	/ecp/clusters/<id>                          the record (Spec, record.go; written by Store)
//	/ecp/cluster-names/<project>/<name>         its name key, value <id> (Store)
//	/ecp/fleet/agents/<id>, /ecp/fleet/status/<id>   the agent binding and state (fleet)
//	/ecp/fleet/tokens/<sha256(token)>           its pending registration token (fleet)
//	/ecp/fleet/identity/<sha256(name, node)>    the EMQX cluster identity it holds (fleet)
//	/ecp/fleet/dashboard/<id>/<request>         dashboard-session requests, on a lease (fleet)
//	/ecp/monitoring/reports/<id>                its last shared report (monitoring)
//
// The order is fixed in Delete: the agent is revoked first (so a failure
// leaves the entry in place and the call can be retried; once the record
// is gone its id answers 404), then the record, its name key, its quota
// allocation and every key another package keeps per entry go in one
// transaction, then this replica's Mirror reads the deletion back, so its
// lists drop the entry at once and its subscribers (Mirror.Subscribe) hear
// of it. Other replicas' mirrors learn of the deletion from their watches,
// as of any other change, and tell their subscribers the same way.
//
// The audit log keeps the record of the deletion on purpose: it is
// history, not state of the entry.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
)

// Records is the writer of the record: *Store. Delete removes the entry's
// spec, its name key and the keys in also in one transaction, and returns
// its allocation to the licence (ErrNotFound for an entry that does not
// exist).
type Records interface {
	Delete(ctx context.Context, id string, also ...string) (Spec, error)
}

// Binder is the agent side: *fleet.Fleet. Forget revokes the entry's agent
// and removes its binding, state, pending token and identity keys.
type Binder interface {
	Forget(ctx context.Context, clusterID string) error
}

// Registry runs the deletion of entries. Its zero value is not usable; use
// New.
type Registry struct {
	records Records
	// mirror is this replica's mirror of the records; nil in tests of the
	// order alone.
	mirror *Mirror
	logger *slog.Logger

	mu     sync.RWMutex
	binder Binder
	keys   []func(id string) []string
}

// New returns a Registry over records whose deletions mirror reads back.
// The binder is set apart (SetBinder) because the agent side is built
// after the record store.
func New(records Records, mirror *Mirror, logger *slog.Logger) *Registry {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{records: records, mirror: mirror, logger: logger}
}

// SetBinder names the agent side that Delete revokes first.
func (r *Registry) SetBinder(b Binder) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.binder = b
}

// KeepsKeys declares keys another package stores per entry: fn returns
// them for an id, and Delete removes them in the record's transaction.
func (r *Registry) KeepsKeys(fn func(id string) []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, fn)
}

// Delete is what happens when a cluster is deleted; see the package
// documentation for the keys and the order.
func (r *Registry) Delete(ctx context.Context, id string) (Spec, error) {
	r.mu.RLock()
	binder := r.binder
	var also []string
	for _, fn := range r.keys {
		also = append(also, fn(id)...)
	}
	r.mu.RUnlock()

	// 1. The agent: revoked, told to unregister, its binding, state,
	// pending token and identity keys removed.
	if binder != nil {
		if err := binder.Forget(ctx, id); err != nil {
			return Spec{}, fmt.Errorf("revoke the agent of cluster %s: %w", id, err)
		}
	}
	// 2. The record, its name key, its allocation, and
	// every key others keep per entry, in one transaction.
	spec, err := r.records.Delete(ctx, id, also...)
	if err != nil {
		return Spec{}, err
	}
	// 3. Memory of this replica: the mirror drops the entry and tells its
	// subscribers. The deletion is done either way; a failed read back is
	// logged, and the watch delivers it moments later.
	if r.mirror != nil {
		if err := r.mirror.Refresh(ctx, id); err != nil {
			r.logger.Warn("cluster lists may lag behind a deletion", "cluster", id, "err", err)
		}
	}
	r.logger.Info("cluster entry deleted", "cluster", spec.ID, "project", spec.Project)
	return spec, nil
}
