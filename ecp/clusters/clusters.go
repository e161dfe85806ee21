// Package clusters serves the managed-cluster entries of the public API:
// create, list, read, edit, delete and transfer entries, issue their
// registration (with ready-to-paste agent commands), change their max
// connections within the licence and jump into their dashboard.
//
// It writes only the operator-defined record, registry.Spec at
// registry.Key(id), always through registry.Store, whose transactions keep
// the name index and the allocations consistent. What the agent side
// knows (state, version, connections, ...) comes from Fleet and is merged
// into every reply.
//
// The lists are served from memory: registry.Mirror, the replica's one
// mirror of the records, follows every spec through one etcd watch and
// keeps them in (name, id) order per project, and a list request walks it
// once for its filters, counts and page (ListPage), so a project of 10,000
// clusters costs no etcd read per request. Writes made through this
// package are read back into the mirror before the reply, so the caller's
// next list on the same replica shows them.
//
// Access follows tenancy's rule: a caller who cannot see the entry's
// project gets 404 for the entry; a viewer who tries to change it gets 403.
package clusters

import (
	"context"
	"time"

	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/internal/secret"
)

// Fleet is what this package needs from the agent side of ecp. It is
// declared here, by its consumer, so the cluster API can be built and tested
// against a fake; ecp/fleet implements it.
type Fleet interface {
	// IssueRegistration makes a new single-use token for the entry (valid
	// ttl) and revokes the credential of any agent bound to it
	// (re-register). The token is returned once; fleet stores only its hash.
	IssueRegistration(ctx context.Context, clusterID string, ttl time.Duration) (token secret.String, expiresAt time.Time, err error)
	// Status is what the agent side knows of the entry. An entry fleet has
	// no record of is StateCreated.
	Status(ctx context.Context, clusterID string) (Status, error)
	// Forget is called when the entry is deleted: revoke the credential,
	// drop tokens and status, tell the agent to unregister.
	Forget(ctx context.Context, clusterID string) error
	// States fills out[i] with the state of ids[i] ("" for an entry with
	// no record) at once: a list reads the state of every entry in its
	// scope to filter and count, and Status one by one would cost a lock,
	// a clock read and an allocation each.
	States(ctx context.Context, ids, out []string) error
	// StateCounts adds to out, by state, how many entries of project (of
	// every project visible says when project is "") are in each state but
	// StateCreated, from counts kept as states change: a list without a
	// state filter counts its scope's states without reading each.
	StateCounts(ctx context.Context, project string, visible func(project string) bool, out map[string]int) error
	// DashboardSession asks the cluster's agent for a fresh dashboard
	// login of EMQX's dashboard role role, waiting at most wait.
	DashboardSession(ctx context.Context, clusterID, role string, wait time.Duration) (fleet.DashboardLogin, error)
}

// The agent side ecp runs is the whole Fleet: a fake that lacks a method
// fails to compile instead of degrading at run time.
var _ Fleet = (*fleet.Fleet)(nil)

// StateCreated is the state of an entry no agent has registered for.
const StateCreated = fleet.StateCreated

// Status is what the agent side knows of an entry (fleet owns its shape).
type Status = fleet.Status

// Reason says why an entry is not running.
type Reason = fleet.Reason
