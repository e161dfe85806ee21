package auth

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/kv"
)

// generations is this replica's copy of every user's generation, followed
// through kv.Mirror, so that checking a credential's user costs no etcd
// read on the hot path of every request.
//
// Memory only ever confirms: a credential is accepted from memory when
// memory holds its user alive at exactly the credential's generation.
// Everything else (a user memory has not seen yet, a mirror not loaded
// yet, a legacy credential without generation, a mismatch) is asked of
// etcd, as before. So an empty or lagging mirror never refuses a good
// credential, and never accepts one etcd would refuse unless the deletion
// has not reached this replica yet: a deletion takes effect when the watch
// delivers it, and at once on the replica that made it (DeleteUser applies
// it locally at its own revision).
type generations struct {
	mirror *kv.Mirror

	mu sync.RWMutex
	// users holds each user memory knows of, alive or deleted (a
	// tombstone, until the watch has passed its revision).
	users map[string]generation
	// watched is the revision the load or watch has reached.
	watched int64
}

// generation is one user's state as memory knows it.
type generation struct {
	// gen is the user key's create revision (0 for a tombstone).
	gen int64
	// rev is the revision of the change memory last applied.
	rev int64
}

func newGenerations(cli *clientv3.Client) *generations {
	g := &generations{users: map[string]generation{}}
	g.mirror = &kv.Mirror{Client: cli, From: UsersPrefix, Name: "user generations", Reset: g.reset, Apply: g.apply}
	return g
}

// reset makes memory match the users as they stood at rev (kv.Mirror).
func (g *generations) reset(kvs []*mvccpb.KeyValue, rev int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := make(map[string]bool, len(kvs))
	for _, p := range kvs {
		name := strings.TrimPrefix(string(p.Key), UsersPrefix)
		seen[name] = true
		g.setLocked(name, p.CreateRevision, p.ModRevision)
	}
	for name := range g.users {
		if !seen[name] {
			g.setLocked(name, 0, rev)
		}
	}
	g.passedLocked(rev)
}

// apply applies one batch of watch events (kv.Mirror).
func (g *generations) apply(events []*clientv3.Event) {
	g.mu.Lock()
	defer g.mu.Unlock()
	last := int64(0)
	for _, ev := range events {
		name := strings.TrimPrefix(string(ev.Kv.Key), UsersPrefix)
		gen := ev.Kv.CreateRevision
		if ev.Type == clientv3.EventTypeDelete {
			gen = 0
		}
		g.setLocked(name, gen, ev.Kv.ModRevision)
		last = max(last, ev.Kv.ModRevision)
	}
	g.passedLocked(last)
}

// set applies one change this replica made itself, at its own revision.
func (g *generations) set(name string, gen, rev int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(name, gen, rev)
}

// setLocked records name's generation (0: deleted) as of rev, unless
// memory already knows a newer change.
func (g *generations) setLocked(name string, gen, rev int64) {
	if old, ok := g.users[name]; ok && rev <= old.rev {
		return
	}
	g.users[name] = generation{gen: gen, rev: rev}
}

// passedLocked records that memory holds every change up to rev and drops
// the tombstones no event can be older than any more.
func (g *generations) passedLocked(rev int64) {
	if rev <= g.watched {
		return
	}
	g.watched = rev
	for name, u := range g.users {
		if u.gen == 0 && u.rev <= rev {
			delete(g.users, name)
		}
	}
}

// alive reports whether memory holds username alive at generation gen.
func (g *generations) alive(username string, gen int64) bool {
	if gen == 0 {
		return false
	}
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.users[username].gen == gen
}

// RunMirror loads every user's generation and follows them with one watch
// until ctx ends, so Authenticate checks a credential's user in memory.
// Without it (or before its first load) Authenticate reads etcd.
func (s *Store) RunMirror(ctx context.Context, logger *slog.Logger) {
	s.gens.mirror.Logger = logger
	s.gens.mirror.Run(ctx)
}
