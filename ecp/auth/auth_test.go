package auth_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/internal/secret"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newStore(t *testing.T) (*auth.Store, *clock) {
	t.Helper()
	c := &clock{t: time.Now()}
	s, err := auth.NewStore(etcdtest.Client(t), auth.StoreOptions{BcryptCost: bcrypt.MinCost, SessionTTL: time.Hour, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(t.Context(), "alice", "correct-horse"); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestSessions(t *testing.T) {
	s, c := newStore(t)
	ctx := t.Context()
	if _, _, err := s.Login(ctx, "alice", "wrong-horse"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, _, err := s.Login(ctx, "bob", "correct-horse"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	tok, exp, err := s.Login(ctx, "alice", "correct-horse")
	if err != nil {
		t.Fatal(err)
	}
	if !exp.Equal(c.now().Add(time.Hour).UTC()) {
		t.Fatalf("expiresAt %v", exp)
	}
	p, err := s.Authenticate(ctx, tok)
	if err != nil || p.Username != "alice" || p.Via != "session" {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	c.advance(time.Hour)
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("expired session: %v", err)
	}
	for _, bad := range []secret.String{"", "ecps_", "ecpt_", "ecpt_zz_x", "ecpt_0123456789abcdef_x", "Bearer x"} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("Authenticate(%q) = %v, want ErrBadCredentials", bad.Reveal(), err)
		}
	}
}

func TestAPITokens(t *testing.T) {
	s, c := newStore(t)
	ctx := t.Context()
	exp := c.now().Add(time.Minute)
	meta, tok, err := s.CreateAPIToken(ctx, alice(t, s), "ci", &exp)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Hash != "" {
		t.Fatal("CreateAPIToken returned the hash")
	}
	p, err := s.Authenticate(ctx, tok)
	if err != nil || p.Username != "alice" || p.TokenID != meta.ID {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	// A token with the right id and a wrong secret is refused.
	forged := secret.String(tok.Reveal()[:len(tok.Reveal())-2] + "xx")
	if _, err := s.Authenticate(ctx, forged); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("forged token: %v", err)
	}
	c.advance(time.Minute)
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("expired token: %v", err)
	}
	_, tok2, err := s.CreateAPIToken(ctx, alice(t, s), "forever", nil)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := s.ListAPITokens(ctx)
	if err != nil || len(toks) != 2 {
		t.Fatalf("list = %v, %v", toks, err)
	}
	for _, tk := range toks {
		if tk.Hash != "" {
			t.Fatal("ListAPITokens returned a hash")
		}
	}
	p, err = s.Authenticate(ctx, tok2)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAPIToken(ctx, p.TokenID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok2); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := s.DeleteAPIToken(ctx, p.TokenID); !errors.Is(err, auth.ErrTokenNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func TestValidation(t *testing.T) {
	tests := []struct {
		username string
		password secret.String
		okUser   bool
		okPass   bool
	}{
		{"alice", "12345678", true, true},
		{"a.b-c_d@e", "1234567", true, false},
		{"", "x", false, false},
		{"-lead", secret.String(make([]byte, 73)), false, false},
		{"has space", secret.String(make([]byte, 72)), false, true},
		{"a/b", "12345678", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.username, func(t *testing.T) {
			if got := auth.ValidateUsername(tc.username) == ""; got != tc.okUser {
				t.Errorf("ValidateUsername(%q) ok = %v", tc.username, got)
			}
			if got := auth.ValidatePassword(tc.password) == ""; got != tc.okPass {
				t.Errorf("ValidatePassword(len %d) ok = %v", len(tc.password.Reveal()), got)
			}
		})
	}
}

// alice is the Principal of the user newStore made.
func alice(t *testing.T, s *auth.Store) *auth.Principal {
	t.Helper()
	u, err := s.GetUser(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Principal{Username: u.Username, Generation: u.Generation}
}

// TestLegacyCredentialsFollowTheirUser: a token stored before tokens
// recorded their user's generation acts for the user it was made for, and
// not for a later user of the same name.
func TestLegacyCredentialsFollowTheirUser(t *testing.T) {
	cli := etcdtest.Client(t)
	s, err := auth.NewStore(cli, auth.StoreOptions{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	u, err := s.CreateUser(ctx, "alice", "correct-horse")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("legacy-secret"))
	legacy := fmt.Sprintf(`{"id":"0123456789abcdef","name":"old","username":"alice","hash":%q,"createdAt":"2020-01-01T00:00:00Z"}`, hex.EncodeToString(sum[:]))
	if _, err := cli.Put(ctx, auth.APITokensPrefix+"0123456789abcdef", legacy); err != nil {
		t.Fatal(err)
	}
	tok := secret.String("ecpt_0123456789abcdef_legacy-secret")
	p, err := s.Authenticate(ctx, tok)
	if err != nil || p.Username != "alice" || p.Generation != u.Generation {
		t.Fatalf("legacy token: %+v, %v; want alice of generation %d", p, err, u.Generation)
	}
	// The name is deleted behind the store's back and created again.
	if _, err := cli.Delete(ctx, auth.UsersPrefix+"alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateUser(ctx, "alice", "another-horse"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, tok); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("a legacy token of the earlier alice: %v, want ErrBadCredentials", err)
	}
}
