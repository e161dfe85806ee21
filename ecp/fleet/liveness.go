package fleet

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/agentproto"
	ecpkv "github.com/ecpio/ecp/ecp/kv"
)

// sessionLoop keeps an etcd session for this replica: it announces the
// replica's presence, carries its digests and campaigns for the sweeper's
// leadership. When the session's lease is lost it starts over.
func (f *Fleet) sessionLoop(ctx context.Context) {
	l := ecpkv.Leadership{Client: f.cli, Prefix: leaderPrefix, Value: f.opts.ReplicaID, TTL: f.opts.SessionTTL,
		Logger: f.logger, Name: "the liveness sweeper", Joined: f.joined, Left: f.left}
	_ = l.Run(ctx, func(ctx context.Context, el *concurrency.Election) error {
		f.becomeLeader(el)
		<-ctx.Done()
		return nil
	})
}

// left forgets the ended session; revoking its lease then removes
// presence and digests, and another replica may lead at once instead of
// after the TTL.
func (f *Fleet) left() {
	f.mu.Lock()
	f.session, f.leader = nil, nil
	f.mu.Unlock()
	f.metrics.leader.Set(0)
}

// liveness is the silence detector: one deadline per bound agent in a
// heap, the sweeper's leadership and its grace after taking over. It
// decides who is silent; Fleet.sweep writes the consequence. Its fields
// are guarded by memory's lock: the heap orders the entries themselves.
type liveness struct {
	*memory
	// interval is ecp's report interval; silentAfter is SilentIntervals
	// of it.
	interval    time.Duration
	silentAfter time.Duration
	// covered is gossip's coveredLocked: until when every other replica
	// told what it heard.
	covered     func(now time.Time) time.Time
	replicaID   string
	leaderGauge prometheus.Gauge

	// heap orders bound agents by when they were last heard of.
	heap deadlineHeap
	// leader is set while this replica leads, graceUntil is when its
	// sweeper may first act.
	leader     *concurrency.Election
	graceUntil time.Time
}

// heardLocked records that the bound agent of e was alive at t.
func (l *liveness) heardLocked(e *entry, t time.Time) {
	if t.After(e.lastHeard) {
		e.lastHeard = t
	}
	e.heard = true
	l.setDeadlineLocked(e)
	// A report moves the deadline later: the entry keeps its place, and
	// the sweeper queues it again when that place comes up, about once
	// per SilentIntervals reports instead of a heap fix on each one (1 %
	// of ecp's CPU at 10,000 agents).
	if e.heapIndex >= 0 && !e.deadline.Before(e.heapKey) {
		return
	}
	l.heapPushLocked(e)
}

// silentAfterLocked is how long the bound agent of e may stay silent:
// SilentIntervals of ecp's interval, or of the agent's own when it runs
// slower (an operator pinned --collect.interval).
func (l *liveness) silentAfterLocked(e *entry) time.Duration {
	return agentproto.SilentIntervals * max(l.interval, e.agentInterval())
}

func (l *liveness) setDeadlineLocked(e *entry) {
	e.deadline = e.lastHeard.Add(l.silentAfterLocked(e))
}

// boundLocked starts or moves e's deadline: a new binding counts as heard
// now and gets a full grace to send its first report.
func (l *liveness) boundLocked(e *entry, newBinding bool) {
	if newBinding {
		e.lastHeard, e.heard = l.now(), false
		l.setDeadlineLocked(e)
	}
	l.heapPushLocked(e)
}

// intervalChangedLocked moves e's deadline after its status changed: the
// agent's interval may be another.
func (l *liveness) intervalChangedLocked(e *entry) {
	if e.heapIndex >= 0 {
		l.setDeadlineLocked(e)
		l.heapPushLocked(e)
	}
}

// heapPushLocked queues e at its deadline, or moves it there.
func (l *liveness) heapPushLocked(e *entry) {
	e.heapKey = e.deadline
	if e.heapIndex >= 0 {
		heap.Fix(&l.heap, e.heapIndex)
		return
	}
	heap.Push(&l.heap, e)
}

func (l *liveness) heapRemoveLocked(e *entry) {
	if e.heapIndex >= 0 {
		heap.Remove(&l.heap, e.heapIndex)
	}
}

// deadlineHeap orders entries by deadline (heapKey): the sweeper pops only
// those whose deadline passed, so its work follows events, not fleet size.
type deadlineHeap []*entry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].heapKey.Before(h[j].heapKey) }
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

// becomeLeader starts the sweeper's grace: every agent gets a full
// SilentIntervals × interval from now (its own interval when it runs
// slower than ecp's), whatever this replica heard before, because it may
// have missed reports served while no one led. On top of that an agent
// may be in its reconnect backoff (ecp or its replica was down): one this
// replica has not heard since it started gets agentproto.ReconnectBackoffMax,
// since the outage's length is unknown; one unheard for a while gets that
// while again, up to the same maximum, since a doubling backoff never waits
// longer than it has already been failing. Without it every cluster was
// marked AgentSilent, alerts and all, a few intervals after an ecp outage
// longer than about three intervals.
func (l *liveness) becomeLeader(el *concurrency.Election) {
	l.mu.Lock()
	l.leader = el
	now := l.now()
	grace := l.silentAfter
	for _, e := range l.entries {
		g := l.silentAfterLocked(e)
		switch {
		case !e.hasAgent || e.status.State == StateAbnormal && reasonCode(e.status.Reason) == ReasonAgentSilent:
		case !e.heard:
			g += agentproto.ReconnectBackoffMax
		default:
			g += min(agentproto.ReconnectBackoffMax, max(0, now.Sub(e.lastHeard)))
		}
		grace = max(grace, g)
	}
	l.graceUntil = now.Add(grace)
	l.announceLocked()
	l.mu.Unlock()
	l.leaderGauge.Set(1)
	l.logger.Info("leading the liveness sweeper", "replica", l.replicaID, "graceUntil", l.graceUntil)
}

// isLeader reports whether this replica runs the sweeper.
func (l *liveness) isLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader != nil
}

// due is an agent whose deadline passed, as the sweeper saw it.
type due struct {
	id      string
	bindRev int64
	heard   time.Time
	allowed time.Duration
}

// expired pops the agents whose deadline passed by now, when this replica
// leads and its grace is over (el is nil otherwise). It pops only expired
// deadlines off the heap and queues again the agents heard since they were
// queued, so its cost follows the number of silent agents and reports
// (one move per agent per SilentIntervals), not the fleet's size.
func (l *liveness) expired(now time.Time) (el *concurrency.Election, expired []due) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el = l.leader
	if el == nil || now.Before(l.graceUntil) {
		return nil, nil
	}
	var unsure []*entry
	covered := l.covered(now)
	for len(l.heap) > 0 && !l.heap[0].heapKey.After(now) {
		if e := l.heap[0]; e.deadline.After(now) {
			// Heard since it was queued (heardLocked).
			l.heapPushLocked(e)
			continue
		}
		e := heap.Pop(&l.heap).(*entry)
		allowed := l.silentAfterLocked(e)
		// The agent's later reports may have landed on a replica that
		// could not publish them (etcd lost its leader or quorum, or the
		// replica died and its lease has not expired yet): silence counts
		// only once every replica has told what it heard up to one
		// interval before the deadline, by which the agent reported again
		// if it was alive. Otherwise an outage of ecp's own store would
		// be counted against the clusters.
		if covered.Before(e.deadline.Add(-allowed / agentproto.SilentIntervals)) {
			unsure = append(unsure, e)
			continue
		}
		expired = append(expired, due{id: e.id, bindRev: e.bindRev, heard: e.lastHeard, allowed: allowed})
	}
	for _, e := range unsure {
		l.heapPushLocked(e)
	}
	if len(unsure) > 0 {
		l.logger.Debug("silence not yet certain: a replica has not published what it heard", "clusters", len(unsure), "toldUntil", covered)
	}
	return el, expired
}

// requeue puts back an agent the sweeper could not mark, so the next
// sweep tries again.
func (l *liveness) requeue(d due) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.entries[d.id]; e != nil && e.hasAgent && e.bindRev == d.bindRev {
		l.heapPushLocked(e)
	}
}

// sweep marks the agents liveness found silent abnormal. Only the leader
// acts, and only once its grace is over. Each write is guarded by the
// leader key, so a deposed leader cannot write.
func (f *Fleet) sweep(ctx context.Context) {
	now := f.now()
	el, expired := f.expired(now)
	if el == nil {
		return
	}
	guard := clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())
	for _, d := range expired {
		err := f.updateStatus(ctx, d.id, "silent", []clientv3.Cmp{guard, bindCmp(d.id, d.bindRev)},
			func(e *entry) (statusRecord, error) {
				if !e.hasAgent || e.bindRev != d.bindRev || e.deadline.After(now) {
					return statusRecord{}, errNoChange
				}
				cur := e.status
				if cur.State == StateCreated || (cur.State == StateAbnormal && reasonCode(cur.Reason) == ReasonAgentSilent) {
					return statusRecord{}, errNoChange
				}
				next := cur
				next.State = StateAbnormal
				next.Reason = &Reason{Code: ReasonAgentSilent, Since: now, Message: fmt.Sprintf(
					"no report from the agent for %s (%d report intervals of %s); last heard at %s",
					now.Sub(d.heard).Round(time.Second), agentproto.SilentIntervals, d.allowed/agentproto.SilentIntervals, d.heard.UTC().Format(time.RFC3339))}
				next.UpdatedAt = now
				return next, nil
			})
		if err != nil {
			f.logger.Warn("could not mark a silent agent abnormal", "cluster", d.id, "err", err)
			f.requeue(d)
		}
	}
}
