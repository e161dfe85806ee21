package fleet

import (
	"container/heap"
	"context"
	"strings"
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

	// changed is closed (and replaced) whenever a stored part changes;
	// desired-state long-polls of this cluster wait on it.
	changed chan struct{}

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

func (f *Fleet) entryLocked(id string) *entry {
	e := f.entries[id]
	if e == nil {
		e = &entry{id: id, heapIndex: -1, changed: make(chan struct{})}
		f.entries[id] = e
	}
	return e
}

func (e *entry) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// bound reports whether the credential with hash credHash is the one bound
// to e now.
func (e *entry) bound(credHash string) bool {
	return e.hasAgent && sameHash(e.agent.CredentialHash, credHash)
}

// kv is the part of an etcd key-value fleet applies; deleted marks a
// deletion at modRev.
type kv struct {
	key       string
	value     []byte
	modRev    int64
	createRev int64
	deleted   bool
}

// applyLocked brings memory up to kv, ignoring anything older than what is
// already known. Callers hold f.mu.
func (f *Fleet) applyLocked(k kv) {
	now := f.now()
	if k.deleted {
		// A deletion of a cluster memory does not hold changes nothing
		// (its own watch event, if any, comes later and is ignored the same
		// way); creating an entry for it would let made-up credentials grow
		// memory.
		for _, p := range []string{registry.Prefix, agentsPrefix, statusPrefix} {
			if id, ok := strings.CutPrefix(k.key, p); ok && f.entries[id] == nil {
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
		e := f.entryLocked(id)
		if k.modRev <= e.specRev {
			return
		}
		e.specRev = k.modRev
		spec := e.spec
		if !k.deleted {
			var err error
			if spec, err = registry.Decode(k.value); err != nil {
				f.logger.Warn("ignoring undecodable cluster spec", "key", k.key, "err", err)
				return
			}
		}
		f.tallyLocked(e, -1)
		e.spec, e.hasSpec = spec, !k.deleted
		f.tallyLocked(e, +1)
		e.notify()
	case strings.HasPrefix(k.key, agentsPrefix):
		e := f.entryLocked(strings.TrimPrefix(k.key, agentsPrefix))
		if k.modRev <= e.agentRev {
			return
		}
		e.agentRev = k.modRev
		if k.deleted {
			e.hasAgent, e.agent, e.bindRev = false, agentRecord{}, 0
			e.live = live{}
			f.heapRemoveLocked(e)
		} else {
			rec, err := decode[agentRecord](k.value)
			if err != nil {
				f.logger.Warn("ignoring undecodable agent record", "key", k.key, "err", err)
				return
			}
			if e.bindRev != k.createRev {
				// A new binding: it counts as heard now, and gets a full
				// grace to send its first report.
				e.live = live{}
				e.bindRev = k.createRev
				e.lastHeard, e.heard = now, false
				f.setDeadlineLocked(e)
			}
			e.agent, e.hasAgent = rec, true
			f.heapPushLocked(e)
		}
		e.notify()
	case strings.HasPrefix(k.key, statusPrefix):
		e := f.entryLocked(strings.TrimPrefix(k.key, statusPrefix))
		if k.modRev <= e.statusRev {
			return
		}
		e.statusRev = k.modRev
		wasHeld := e.status.HeldBy != ""
		var rec statusRecord
		if !k.deleted {
			var err error
			if rec, err = decode[statusRecord](k.value); err != nil {
				f.logger.Warn("ignoring undecodable cluster status", "key", k.key, "err", err)
				return
			}
		}
		f.tallyLocked(e, -1)
		e.status, e.hasStatus = rec, !k.deleted
		f.tallyLocked(e, +1)
		if (e.status.HeldBy != "") != wasHeld {
			e.holdRev = k.modRev
		}
		// The agent's interval may have changed its deadline.
		if e.heapIndex >= 0 {
			f.setDeadlineLocked(e)
			heap.Fix(&f.heap, e.heapIndex)
		}
		e.notify()
	case strings.HasPrefix(k.key, replicasPrefix):
		id := strings.TrimPrefix(k.key, replicasPrefix)
		if id == f.opts.ReplicaID {
			return
		}
		if k.deleted {
			delete(f.peers, id)
			delete(f.told, id)
		} else {
			f.peers[id] = struct{}{}
		}
	case strings.HasPrefix(k.key, identityPrefix):
		f.applyIdentityLocked(k)
	case strings.HasPrefix(k.key, dashboardPrefix):
		f.applyDashboardLocked(k)
	case strings.HasPrefix(k.key, digestsPrefix):
		if k.deleted || strings.HasPrefix(k.key, digestsPrefix+f.opts.ReplicaID+"/") {
			return
		}
		f.applyDigestLocked(k.key, k.value, now)
	}
}

// heard records that the bound agent of e was alive at t.
func (f *Fleet) heardLocked(e *entry, t time.Time) {
	if t.After(e.lastHeard) {
		e.lastHeard = t
	}
	e.heard = true
	f.setDeadlineLocked(e)
	if e.heapIndex >= 0 {
		heap.Fix(&f.heap, e.heapIndex)
	} else {
		f.heapPushLocked(e)
	}
}

// silentAfterLocked is how long the bound agent of e may stay silent:
// SilentIntervals of ecp's interval, or of the agent's own when it runs
// slower (an operator pinned --collect.interval).
func (f *Fleet) silentAfterLocked(e *entry) time.Duration {
	return agentproto.SilentIntervals * max(f.opts.ReportInterval, e.agentInterval())
}

func (f *Fleet) setDeadlineLocked(e *entry) {
	e.deadline = e.lastHeard.Add(f.silentAfterLocked(e))
}

// agentInterval is the interval the bound agent last reported, zero when
// unknown.
func (e *entry) agentInterval() time.Duration {
	return time.Duration(e.status.AgentIntervalSeconds) * time.Second
}

func (f *Fleet) heapPushLocked(e *entry) {
	if e.heapIndex >= 0 {
		heap.Fix(&f.heap, e.heapIndex)
		return
	}
	heap.Push(&f.heap, e)
}

func (f *Fleet) heapRemoveLocked(e *entry) {
	if e.heapIndex >= 0 {
		heap.Remove(&f.heap, e.heapIndex)
	}
}

// deadlineHeap orders entries by deadline: the sweeper pops only those
// whose deadline passed, so its work follows events, not fleet size.
type deadlineHeap []*entry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex = i
	h[j].heapIndex = j
}

func (h *deadlineHeap) Push(x any) {
	e := x.(*entry)
	e.heapIndex = len(*h)
	*h = append(*h, e)
}

func (h *deadlineHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	e.heapIndex = -1
	*h = old[:n-1]
	return e
}

// statusLocked is what Status returns for e.
func (f *Fleet) statusLocked(e *entry, now time.Time) Status {
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
func desiredLocked(e *entry, credHash string) agentproto.DesiredState {
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
