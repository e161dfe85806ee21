package fleet

import (
	"container/heap"
	"context"
	"fmt"
	"time"

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

// joined announces this replica on its new session's lease, on which its
// digests live too.
func (f *Fleet) joined(ctx context.Context, s *concurrency.Session) error {
	cctx, cancel := f.etcdCtx(ctx)
	_, err := f.cli.Put(cctx, replicasPrefix+f.opts.ReplicaID, "", clientv3.WithLease(s.Lease()))
	cancel()
	if err != nil {
		return fmt.Errorf("announce replica: %w", err)
	}
	f.mu.Lock()
	f.session = s
	f.digestChunks = 0
	f.mu.Unlock()
	return nil
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
func (f *Fleet) becomeLeader(el *concurrency.Election) {
	f.mu.Lock()
	f.leader = el
	now := f.now()
	grace := f.silentAfter
	for _, e := range f.entries {
		g := f.silentAfterLocked(e)
		switch {
		case !e.hasAgent || e.status.State == StateAbnormal && reasonCode(e.status.Reason) == ReasonAgentSilent:
		case !e.heard:
			g += agentproto.ReconnectBackoffMax
		default:
			g += min(agentproto.ReconnectBackoffMax, max(0, now.Sub(e.lastHeard)))
		}
		grace = max(grace, g)
	}
	f.graceUntil = now.Add(grace)
	f.announceLocked()
	f.mu.Unlock()
	f.metrics.leader.Set(1)
	f.logger.Info("leading the liveness sweeper", "replica", f.opts.ReplicaID, "graceUntil", f.graceUntil)
}

// isLeader reports whether this replica runs the sweeper.
func (f *Fleet) isLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader != nil
}

// due is an agent whose deadline passed, as the sweeper saw it.
type due struct {
	id      string
	bindRev int64
	heard   time.Time
	allowed time.Duration
}

// sweep marks silent agents abnormal. Only the leader acts, and only once
// its grace is over; it pops the expired deadlines off the heap, so its
// cost follows the number of silent agents, not the fleet's size. Each
// write is guarded by the leader key, so a deposed leader cannot write.
func (f *Fleet) sweep(ctx context.Context) {
	now := f.now()
	f.mu.Lock()
	el := f.leader
	if el == nil || now.Before(f.graceUntil) {
		f.mu.Unlock()
		return
	}
	var expired []due
	var unsure []*entry
	covered := f.coveredLocked(now)
	for len(f.heap) > 0 && !f.heap[0].deadline.After(now) {
		e := heap.Pop(&f.heap).(*entry)
		allowed := f.silentAfterLocked(e)
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
		f.heapPushLocked(e)
	}
	f.mu.Unlock()
	if len(unsure) > 0 {
		f.logger.Debug("silence not yet certain: a replica has not published what it heard", "clusters", len(unsure), "toldUntil", covered)
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
			// Put it back so the next sweep tries again.
			f.mu.Lock()
			if e := f.entries[d.id]; e != nil && e.hasAgent && e.bindRev == d.bindRev {
				f.heapPushLocked(e)
			}
			f.mu.Unlock()
		}
	}
}
