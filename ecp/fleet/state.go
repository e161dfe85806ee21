package fleet

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/registry"
)

// entry is everything one replica knows of one cluster. The stored parts
// (spec, agent, status) mirror etcd through the watch and carry the
// revision of their last change, deletions included, so that an older
// event never overwrites a newer one; the live part is fed by reports and
// digests and never stored.
type entry struct {
	id string

	spec    registry.Spec
	hasSpec bool
	specRev int64

	agent    agentRecord
	hasAgent bool
	agentRev int64
	// bindRev is the create revision of the agent key: it names one
	// binding, so a report or digest of a replaced agent is recognised.
	bindRev int64

	status    statusRecord
	hasStatus bool
	statusRev int64

	live live
	// lastHeard is when this replica last learnt that the bound agent was
	// alive (a report, a digest, or registration; load time after a start).
	lastHeard time.Time
	// heard is set when lastHeard came from a report or a digest, not from
	// the binding's arrival: after a start ecp cannot tell how long the
	// agent went unheard (becomeLeader).
	heard bool
	// deadline is when the agent counts as silent: lastHeard plus
	// SilentIntervals of the longer of ecp's interval and the agent's
	// (setDeadlineLocked).
	deadline time.Time
	// heardLocal is set when this replica served a report since its last
	// digest.
	heardLocal bool
	// heapIndex is the entry's place in Fleet.heap, -1 when not in it.
	heapIndex int
	// heapKey is the deadline the heap orders the entry by: its deadline
	// when queued, or moved earlier. A deadline moved later (the agent
	// heard again) leaves it; the sweeper queues the entry again when
	// heapKey comes (liveness.expired).
	heapKey time.Time

	// changed is done (and replaced) whenever a stored part changes;
	// desired-state long-polls of this cluster wait on it. A context
	// because a taken-over poll waits with context.AfterFunc, without a
	// goroutine (package longpoll).
	changed     context.Context
	fireChanged context.CancelFunc

	// dashboard maps pending dashboard request ids to their public key
	// and role; dashRev is the newest request's revision (see dashboard.go).
	dashboard map[string]dashboardRecord
	dashRev   int64

	// idChecked is the identity fingerprint (identity.go) this replica
	// last checked for the binding, idHeldBy the cluster that held it then
	// (empty: this binding holds it). A held identity is checked again at
	// every report, so the entry recovers when the holder goes.
	idChecked string
	idHeldBy  string
	// idBindRev, idName and idNodes are the binding and what its agent
	// reported when idChecked was set: a report saying the same again
	// (nearly every one) skips hashing it into a fingerprint.
	idBindRev int64
	idName    string
	idNodes   []string
	// holdRev is the status revision at which the hold (status HeldBy)
	// last began or ended: it raises the desired revision so the agent
	// hears of it on its long-poll.
	holdRev int64
}

// live is the latest report snapshot, wherever it was served.
type live struct {
	BindRev         int64
	At              time.Time
	Connections     int
	LiveConnections int
	MaxConnections  int
	Nodes           int
	NodesRunning    int
	Version         string
	AgentVersion    string
}

// memory is what this replica knows of every cluster: the entries, kept
// by the watch and by fleet's own writes (Fleet.applyLocked routes each
// key to its owner), and the per-project state tally. Its lock also
// guards the fields of liveness and gossip, which work on the same
// entries (the deadline heap orders them, digests carry their snapshots):
// a report's snapshot, deadline and digest mark move in one step.
type memory struct {
	mu      sync.Mutex
	entries map[string]*entry
	// tally counts, per project, the entries in each state but created
	// (states.go), kept as specs and statuses change.
	tally map[string]*stateTally
	// idHolders maps each identity key to the cluster it names, so that a
	// key moving away tells that cluster to check again (identity.go).
	idHolders map[string]idHolder
	// applied, once a test asked for it (appliedLocked), is closed and
	// cleared when memory next moves: a batch of watch events, the
	// sweeper's lead taken, a poll that must wait. Tests wait on it
	// instead of sleeping; while none does, it is nil and costs nothing
	// (it was a channel made per held report).
	applied chan struct{}
	logger  *slog.Logger
	now     func() time.Time

	// The parts that own keys or follow an entry's binding: applyLocked
	// tells each of what concerns it.
	live    *liveness
	digests *gossip
	ids     *identities
	dash    *dashboards
}

func newMemory(logger *slog.Logger, now func() time.Time) *memory {
	return &memory{entries: map[string]*entry{}, tally: map[string]*stateTally{},
		idHolders: map[string]idHolder{}, logger: logger, now: now}
}

func (m *memory) entryLocked(id string) *entry {
	e := m.entries[id]
	if e == nil {
		e = &entry{id: id, heapIndex: -1}
		e.changed, e.fireChanged = context.WithCancel(context.Background())
		m.entries[id] = e
	}
	return e
}

// announceLocked wakes whoever waits for memory to move (tests).
func (m *memory) announceLocked() {
	if m.applied != nil {
		close(m.applied)
		m.applied = nil
	}
}

// appliedLocked is a channel closed when memory next moves (tests).
func (m *memory) appliedLocked() <-chan struct{} {
	if m.applied == nil {
		m.applied = make(chan struct{})
	}
	return m.applied
}

func (e *entry) notify() {
	e.fireChanged()
	e.changed, e.fireChanged = context.WithCancel(context.Background())
}

// bound reports whether the credential with hash credHash is the one bound
// to e now.
func (e *entry) bound(credHash secretHash) bool {
	return e.hasAgent && credHash.matches(e.agent.CredentialHash)
}

// kv is the part of an etcd key-value fleet applies; deleted marks a
// deletion at modRev.
type kv struct {
	key       string
	value     []byte
	modRev    int64
	createRev int64
	deleted   bool
	// digest is another replica's digest, decoded before memory's lock
	// is taken (gossip.decodeDigests); nil for any other key.
	digest *digest
}

// applyLocked brings memory up to kv, ignoring anything older than what is
// already known. Callers hold m.mu.
func (m *memory) applyLocked(k kv) {
	if k.deleted {
		// A deletion of a cluster memory does not hold changes nothing
		// (its own watch event, if any, comes later and is ignored the same
		// way); creating an entry for it would let made-up credentials grow
		// memory.
		for _, p := range []string{registry.Prefix, agentsPrefix, statusPrefix} {
			if id, ok := strings.CutPrefix(k.key, p); ok && m.entries[id] == nil {
				return
			}
		}
	}
	switch {
	case strings.HasPrefix(k.key, registry.Prefix):
		id := strings.TrimPrefix(k.key, registry.Prefix)
		if id == "" || strings.Contains(id, "/") {
			return
		}
		e := m.entryLocked(id)
		if k.modRev <= e.specRev {
			return
		}
		e.specRev = k.modRev
		spec := e.spec
		if !k.deleted {
			var err error
			if spec, err = registry.Decode(k.value); err != nil {
				m.logger.Warn("ignoring undecodable cluster spec", "key", k.key, "err", err)
				return
			}
		}
		m.tallyLocked(e, -1)
		e.spec, e.hasSpec = spec, !k.deleted
		m.tallyLocked(e, +1)
		e.notify()
	case strings.HasPrefix(k.key, agentsPrefix):
		e := m.entryLocked(strings.TrimPrefix(k.key, agentsPrefix))
		if k.modRev <= e.agentRev {
			return
		}
		e.agentRev = k.modRev
		if k.deleted {
			e.hasAgent, e.agent, e.bindRev = false, agentRecord{}, 0
			e.live = live{}
			m.live.heapRemoveLocked(e)
		} else {
			rec, err := decode[agentRecord](k.value)
			if err != nil {
				m.logger.Warn("ignoring undecodable agent record", "key", k.key, "err", err)
				return
			}
			newBinding := e.bindRev != k.createRev
			if newBinding {
				e.live = live{}
				e.bindRev = k.createRev
			}
			e.agent, e.hasAgent = rec, true
			m.live.boundLocked(e, newBinding)
		}
		e.notify()
	case strings.HasPrefix(k.key, statusPrefix):
		e := m.entryLocked(strings.TrimPrefix(k.key, statusPrefix))
		if k.modRev <= e.statusRev {
			return
		}
		e.statusRev = k.modRev
		wasHeld := e.status.HeldBy != ""
		var rec statusRecord
		if !k.deleted {
			var err error
			if rec, err = decode[statusRecord](k.value); err != nil {
				m.logger.Warn("ignoring undecodable cluster status", "key", k.key, "err", err)
				return
			}
		}
		m.tallyLocked(e, -1)
		e.status, e.hasStatus = rec, !k.deleted
		m.tallyLocked(e, +1)
		if (e.status.HeldBy != "") != wasHeld {
			e.holdRev = k.modRev
		}
		m.live.intervalChangedLocked(e)
		e.notify()
	case strings.HasPrefix(k.key, replicasPrefix):
		m.digests.replicaLocked(strings.TrimPrefix(k.key, replicasPrefix), k.deleted)
	case strings.HasPrefix(k.key, identityPrefix):
		m.ids.applyIdentityLocked(k)
	case strings.HasPrefix(k.key, dashboardPrefix):
		m.dash.applyDashboardLocked(k)
	case strings.HasPrefix(k.key, digestsPrefix):
		m.digests.digestLocked(k)
	}
}

// agentInterval is the interval the bound agent last reported, zero when
// unknown.
func (e *entry) agentInterval() time.Duration {
	return time.Duration(e.status.AgentIntervalSeconds) * time.Second
}

// statusLocked is what Status returns for e.
func (m *memory) statusLocked(e *entry, now time.Time) Status {
	var st Status
	if e.hasStatus {
		r := e.status
		st = Status{State: r.State, Version: r.Version, Nodes: r.Nodes, StartedAt: r.StartedAt,
			ManagedSince: r.ManagedSince, AgentVersion: r.AgentVersion}
		if r.Reason != nil {
			reason := *r.Reason
			st.StateReason = &reason
		}
		if r.State == StateCreated && !r.TokenExpiresAt.IsZero() && !now.Before(r.TokenExpiresAt) {
			st.StateReason = &Reason{Code: ReasonTokenExpired,
				Message: "the registration token expired unused; issue a new one", Since: r.TokenExpiresAt}
		}
	} else {
		st = Status{State: StateCreated, StateReason: &Reason{Code: ReasonNotRegistered,
			Message: "no agent is registered; issue a registration token and run the register command",
			Since:   e.spec.CreatedAt}}
	}
	if st.State == StateCreated || !e.hasAgent {
		return Status{State: st.State, StateReason: st.StateReason}
	}
	st.Hostname, st.DashboardURL = e.agent.Hostname, e.agent.DashboardURL
	st.RegisteredLogCollection = e.agent.LogCollection
	if st.AgentVersion == "" {
		st.AgentVersion = e.agent.AgentVersion
	}
	if l := e.live; l.BindRev == e.bindRev && !l.At.IsZero() {
		st.Connections, st.LiveConnections = l.Connections, l.LiveConnections
		st.MaxConnectionsReported = l.MaxConnections
		st.NodesRunning, st.LastReportAt = l.NodesRunning, l.At
		if l.AgentVersion != "" {
			st.AgentVersion = l.AgentVersion
		}
	}
	return st
}

// desiredLocked is the desired state for the agent holding credHash. Its
// revision is the newest etcd revision of what it derives from (the spec
// and the binding), so a deletion or a revocation also moves it forward.
func desiredLocked(e *entry, credHash secretHash) agentproto.DesiredState {
	d := agentproto.DesiredState{Revision: max(e.specRev, e.agentRev, e.holdRev)}
	if !e.hasSpec || !e.bound(credHash) {
		d.Unregister = true
		return d
	}
	if e.status.HeldBy != "" {
		msg := "the EMQX cluster is managed by another entry's agent; do not enforce on it"
		if r := e.status.Reason; r != nil && r.Code == ReasonClusterManagedElsewhere {
			msg = r.Message
		}
		d.Hold = &agentproto.Problem{Code: agentproto.ProblemClusterManagedElsewhere, Message: msg}
	}
	d.MaxConnections = e.spec.MaxConnections
	d.LogCollection = e.spec.EffectiveLogCollection(e.agent.LogCollection)
	addDashboardLocked(e, &d)
	return d
}

// Status returns what fleet knows of the cluster, from memory. A cluster
// fleet has never heard of is created (the spec may not have reached this
// replica's watch yet). It waits only for the first load after start.
func (f *Fleet) Status(ctx context.Context, clusterID string) (Status, error) {
	if err := f.waitReady(ctx); err != nil {
		return Status{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[clusterID]
	if e == nil {
		return Status{State: StateCreated, StateReason: &Reason{Code: ReasonNotRegistered,
			Message: "no agent is registered; issue a registration token and run the register command"}}, nil
	}
	return f.statusLocked(e, f.now()), nil
}
