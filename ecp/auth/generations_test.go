package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestAuthenticateReadsTheUserFromTheMirror: issue #13: every
// authenticated request read etcd twice (the credential, then its user's
// generation). With the mirror running it reads once, and a user deleted
// behind this replica's back (another replica, which died before sweeping
// the user's sessions) is refused as soon as the watch delivers it.
func TestAuthenticateReadsTheUserFromTheMirror(t *testing.T) {
	cli := etcdtest.Client(t)
	s, err := NewStore(cli, StoreOptions{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.RunMirror(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })

	if _, err := s.CreateUser(t.Context(), "ann", "ann-password"); err != nil {
		t.Fatal(err)
	}
	token, _, err := s.Login(t.Context(), "ann", "ann-password")
	if err != nil {
		t.Fatal(err)
	}
	before := etcdtest.Ranges(t)
	if _, err := s.Authenticate(t.Context(), token); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	if reads := etcdtest.Ranges(t) - before; reads != 1 {
		t.Errorf("authenticate read etcd %v times, want 1 (the credential)", reads)
	}

	if _, err := cli.Delete(t.Context(), UsersPrefix+"ann"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := s.Authenticate(t.Context(), token)
		if errors.Is(err, ErrBadCredentials) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a session of a deleted user still authenticates 10 s later: %v", err)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
}
