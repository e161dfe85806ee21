// Package auth owns who a caller is: users (passwords kept as bcrypt
// hashes), login sessions (etcd keys on a lease, so they expire by
// themselves on every replica) and API tokens for automation (stored as
// SHA-256 hashes, shown once). Its middleware turns a bearer token into a
// Principal; what that principal may do is decided elsewhere (tenancy).
//
// Keys it owns: /ecp/users/<username>, /ecp/sessions/<sha256 of token>,
// /ecp/api-tokens/<id>.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/internal/secret"
)

// Key prefixes owned by this package.
const (
	UsersPrefix     = "/ecp/users/"
	SessionsPrefix  = "/ecp/sessions/"
	APITokensPrefix = "/ecp/api-tokens/"
)

// DefaultSessionTTL is how long a login session lasts.
const DefaultSessionTTL = 12 * time.Hour

// Token prefixes make a leaked token recognisable (secret scanners) and let
// the middleware tell a session from an API token without a lookup.
const (
	sessionTokenPrefix = "ecps_"
	apiTokenPrefix     = "ecpt_"
)

// Password length bounds: bcrypt reads at most 72 bytes, and refusing more
// is more honest than silently ignoring the tail.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 72
)

// Sentinel errors.
var (
	ErrUserExists     = errors.New("auth: user exists")
	ErrBadCredentials = errors.New("auth: bad credentials")
	ErrTokenNotFound  = errors.New("auth: token not found")
)

// Principal is an authenticated caller.
type Principal struct {
	Username string
	// Via is "session" or "api-token".
	Via string
	// TokenID is the API token's id when Via is "api-token".
	TokenID string
	// sessionKey is the etcd key of the session when Via is "session".
	sessionKey string
}

// User is a stored user. The hash never leaves this package's store.
type User struct {
	Username     string    `json:"username"`
	PasswordHash []byte    `json:"passwordHash"`
	CreatedAt    time.Time `json:"createdAt"`
}

type session struct {
	Username  string    `json:"username"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// APIToken is a stored API token's metadata; Hash is SHA-256 of its secret
// part (the secret is 256 random bits, so a fast hash suffices).
type APIToken struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Username  string     `json:"username"`
	Hash      string     `json:"hash,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// Store keeps users, sessions and API tokens in etcd.
type Store struct {
	cli        *clientv3.Client
	bcryptCost int
	sessionTTL time.Duration
	now        func() time.Time
	// dummyHash is compared against when the user does not exist, so a
	// login for an unknown user costs as much as one for a known user and
	// does not reveal which usernames exist by timing.
	dummyHash []byte
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// BcryptCost; bcrypt.DefaultCost when zero. Tests lower it.
	BcryptCost int
	// SessionTTL; DefaultSessionTTL when zero.
	SessionTTL time.Duration
	// Now; time.Now when nil.
	Now func() time.Time
}

// NewStore returns a Store on cli.
func NewStore(cli *clientv3.Client, opts StoreOptions) (*Store, error) {
	if opts.BcryptCost == 0 {
		opts.BcryptCost = bcrypt.DefaultCost
	}
	if opts.SessionTTL == 0 {
		opts.SessionTTL = DefaultSessionTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not-a-password-of-anyone"), opts.BcryptCost)
	if err != nil {
		return nil, fmt.Errorf("prepare password hashing: %w", err)
	}
	return &Store{cli: cli, bcryptCost: opts.BcryptCost, sessionTTL: opts.SessionTTL, now: opts.Now, dummyHash: dummy}, nil
}

var usernamePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$`)

// ValidateUsername returns a message saying what is accepted, or "".
func ValidateUsername(u string) string {
	if !usernamePattern.MatchString(u) {
		return "username must be 1 to 64 characters: letters, digits and . _ @ -, starting with a letter or digit"
	}
	return ""
}

// ValidatePassword returns a message saying what is accepted, or "".
func ValidatePassword(p secret.String) string {
	if n := len(p.Reveal()); n < MinPasswordLen || n > MaxPasswordLen {
		return fmt.Sprintf("password must be %d to %d bytes long", MinPasswordLen, MaxPasswordLen)
	}
	return ""
}

// CreateUser stores a new user; ErrUserExists if the name is taken.
func (s *Store) CreateUser(ctx context.Context, username string, password secret.String) (User, error) {
	hash, err := bcrypt.GenerateFromPassword([]byte(password.Reveal()), s.bcryptCost)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	u := User{Username: username, PasswordHash: hash, CreatedAt: s.now().UTC()}
	ok, err := kv.Create(ctx, s.cli, UsersPrefix+username, u)
	if err != nil {
		return User{}, err
	}
	if !ok {
		return User{}, ErrUserExists
	}
	return u, nil
}

// GetUser returns the user; kv.ErrNotFound if there is none.
func (s *Store) GetUser(ctx context.Context, username string) (User, error) {
	var u User
	_, err := kv.Get(ctx, s.cli, UsersPrefix+username, &u)
	return u, err
}

// ListUsers returns every user, by name.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	return kv.List[User](ctx, s.cli, UsersPrefix)
}

// Login checks the password and opens a session whose key lives on an
// etcd lease of the session TTL.
func (s *Store) Login(ctx context.Context, username string, password secret.String) (secret.String, time.Time, error) {
	u, err := s.GetUser(ctx, username)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password.Reveal()))
		return "", time.Time{}, ErrBadCredentials
	case err != nil:
		return "", time.Time{}, err
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password.Reveal())) != nil {
		return "", time.Time{}, ErrBadCredentials
	}
	token := secret.String(sessionTokenPrefix + randomSecret())
	expires := s.now().Add(s.sessionTTL).UTC()
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	lease, err := s.cli.Grant(ctx, int64(s.sessionTTL/time.Second))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("grant session lease: %w", err)
	}
	key := SessionsPrefix + hashHex(token.Reveal())
	val, err := kv.Encode(key, session{Username: username, ExpiresAt: expires})
	if err != nil {
		return "", time.Time{}, err
	}
	if _, err := s.cli.Put(ctx, key, val, clientv3.WithLease(lease.ID)); err != nil {
		return "", time.Time{}, fmt.Errorf("store session: %w", err)
	}
	return token, expires, nil
}

// Authenticate resolves a bearer token to its principal; ErrBadCredentials
// when the token is unknown, expired or its user was removed.
func (s *Store) Authenticate(ctx context.Context, token secret.String) (*Principal, error) {
	t := token.Reveal()
	switch {
	case strings.HasPrefix(t, sessionTokenPrefix):
		var sess session
		if _, err := kv.Get(ctx, s.cli, SessionsPrefix+hashHex(t), &sess); err != nil {
			if errors.Is(err, kv.ErrNotFound) {
				return nil, ErrBadCredentials
			}
			return nil, err
		}
		// The lease removes the key soon after expiry; the check closes the
		// gap of up to a second or so.
		if !s.now().Before(sess.ExpiresAt) {
			return nil, ErrBadCredentials
		}
		return &Principal{Username: sess.Username, Via: "session", sessionKey: SessionsPrefix + hashHex(t)}, nil
	case strings.HasPrefix(t, apiTokenPrefix):
		id, sec, ok := strings.Cut(strings.TrimPrefix(t, apiTokenPrefix), "_")
		if !ok || !kv.ValidID(id) {
			return nil, ErrBadCredentials
		}
		var tok APIToken
		if _, err := kv.Get(ctx, s.cli, APITokensPrefix+id, &tok); err != nil {
			if errors.Is(err, kv.ErrNotFound) {
				return nil, ErrBadCredentials
			}
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(hashHex(sec)), []byte(tok.Hash)) != 1 {
			return nil, ErrBadCredentials
		}
		if tok.ExpiresAt != nil && !s.now().Before(*tok.ExpiresAt) {
			return nil, ErrBadCredentials
		}
		return &Principal{Username: tok.Username, Via: "api-token", TokenID: tok.ID}, nil
	default:
		return nil, ErrBadCredentials
	}
}

// CreateAPIToken makes a token acting as username. The token is returned
// once; only its hash is stored.
func (s *Store) CreateAPIToken(ctx context.Context, username, name string, expiresAt *time.Time) (APIToken, secret.String, error) {
	sec := randomSecret()
	tok := APIToken{ID: kv.NewID(), Name: name, Username: username, Hash: hashHex(sec), CreatedAt: s.now().UTC(), ExpiresAt: expiresAt}
	ok, err := kv.Create(ctx, s.cli, APITokensPrefix+tok.ID, tok)
	if err != nil {
		return APIToken{}, "", err
	}
	if !ok {
		return APIToken{}, "", fmt.Errorf("create api token: id %s collided", tok.ID)
	}
	tok.Hash = ""
	return tok, secret.String(apiTokenPrefix + tok.ID + "_" + sec), nil
}

// GetAPIToken returns a token's metadata (without hash).
func (s *Store) GetAPIToken(ctx context.Context, id string) (APIToken, error) {
	var tok APIToken
	if _, err := kv.Get(ctx, s.cli, APITokensPrefix+id, &tok); err != nil {
		if errors.Is(err, kv.ErrNotFound) {
			return APIToken{}, ErrTokenNotFound
		}
		return APIToken{}, err
	}
	tok.Hash = ""
	return tok, nil
}

// ListAPITokens returns the metadata of every token (without hashes).
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	toks, err := kv.List[APIToken](ctx, s.cli, APITokensPrefix)
	for i := range toks {
		toks[i].Hash = ""
	}
	return toks, err
}

// DeleteAPIToken revokes a token at once, on every replica.
func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Delete(ctx, APITokensPrefix+id)
	if err != nil {
		return fmt.Errorf("delete api token: %w", err)
	}
	if resp.Deleted == 0 {
		return ErrTokenNotFound
	}
	return nil
}

// SetPassword replaces a user's password (compare-and-swap on the record,
// so a concurrent change is not silently lost); kv.ErrNotFound when the
// user does not exist.
func (s *Store) SetPassword(ctx context.Context, username string, password secret.String) error {
	var u User
	rev, err := kv.Get(ctx, s.cli, UsersPrefix+username, &u)
	if err != nil {
		return err
	}
	if u.PasswordHash, err = bcrypt.GenerateFromPassword([]byte(password.Reveal()), s.bcryptCost); err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	val, err := kv.Encode(UsersPrefix+username, u)
	if err != nil {
		return err
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(UsersPrefix+username), "=", rev)).
		Then(clientv3.OpPut(UsersPrefix+username, val)).Commit()
	if err != nil {
		return fmt.Errorf("store password of %s: %w", username, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("store password of %s: the user changed meanwhile; try again", username)
	}
	return nil
}

// CheckPassword reports whether password is the user's.
func (s *Store) CheckPassword(ctx context.Context, username string, password secret.String) (bool, error) {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return false, err
	}
	return bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password.Reveal())) == nil, nil
}

// RevokeSessions ends every session of username except keep (a session
// key, or "" for none). Sessions are keyed by token hash, so this reads
// them all; it runs only on password changes and user deletion.
func (s *Store) RevokeSessions(ctx context.Context, username, keep string) error {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, SessionsPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	for _, item := range resp.Kvs {
		var sess session
		if json.Unmarshal(item.Value, &sess) != nil || sess.Username != username || string(item.Key) == keep {
			continue
		}
		if _, err := s.cli.Delete(ctx, string(item.Key)); err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
	}
	return nil
}

// EndSession ends the session of a session token (logout). An unknown or
// expired token is not an error: the session is gone either way.
func (s *Store) EndSession(ctx context.Context, token secret.String) error {
	if !strings.HasPrefix(token.Reveal(), sessionTokenPrefix) {
		return nil
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Delete(ctx, SessionsPrefix+hashHex(token.Reveal())); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// DeleteUser removes the user, their API tokens and their sessions.
func (s *Store) DeleteUser(ctx context.Context, username string) error {
	toks, err := s.ListAPITokens(ctx)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Username == username {
			if err := s.DeleteAPIToken(ctx, t.ID); err != nil && !errors.Is(err, ErrTokenNotFound) {
				return err
			}
		}
	}
	if err := s.RevokeSessions(ctx, username, ""); err != nil {
		return err
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Delete(ctx, UsersPrefix+username)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", username, err)
	}
	if resp.Deleted == 0 {
		return kv.ErrNotFound
	}
	return nil
}

// randomSecret is 256 random bits, base64url without padding.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// GeneratePassword returns a random password for the first admin.
func GeneratePassword() secret.String {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return secret.String(base64.RawURLEncoding.EncodeToString(b))
}
