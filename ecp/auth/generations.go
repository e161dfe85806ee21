package auth

import (
	"context"
	"log/slog"
)

// The users' generations are followed into memory (Store.users, a
// kv.Table of the users prefix), so that checking a credential's user
// costs no etcd read on the hot path of every request.
//
// Memory only ever confirms: a credential is accepted from memory when
// memory holds its user alive at exactly the credential's generation.
// Everything else (a user memory has not seen yet, a table not loaded yet,
// a legacy credential without generation, a mismatch) is asked of etcd, as
// before. So an empty or lagging copy never refuses a good credential, and
// accepts one etcd would refuse only while the user's deletion has not
// reached this replica: a deletion takes effect when the watch delivers
// it, and at once on the replica that made it (DeleteUser applies it at
// its own revision).

// userAlive reports whether memory holds username alive at generation.
func (s *Store) userAlive(username string, generation int64) bool {
	e, ok := s.users.Get(username)
	return ok && generation != 0 && e.CreateRevision == generation
}

// RunMirror loads every user's generation and follows them with one watch
// until ctx ends, so Authenticate checks a credential's user in memory.
// Without it (or before its first load) Authenticate reads etcd.
func (s *Store) RunMirror(ctx context.Context, logger *slog.Logger) {
	s.users.Run(ctx, logger)
}
