// Package auth owns who a caller is: users (passwords kept as bcrypt
// hashes), login sessions (etcd keys on a lease, so they expire by
// themselves on every replica) and API tokens for automation (stored as
// SHA-256 hashes, shown once). Its middleware turns a bearer token into a
// Principal; what that principal may do is decided elsewhere (tenancy).
//
// Keys it owns: /ecp/users/<username>, /ecp/sessions/<sha256 of token>,
// /ecp/api-tokens/<id>, and the login throttle's /ecp/login-attempts/.
//
// A user's generation is the etcd create revision of its user key: unique
// for every user ever created, also when a name is deleted and created
// again. Every session, API token (and role binding, in tenancy) records the
// generation it was made for, is created only in a transaction that checks
// that generation still exists, and authenticates only while it does. So a
// credential minted while its user is being deleted never works, and no
// credential of an earlier user of a name works for a later one.
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
	"slices"
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
	// ErrUserGone says the user a credential was to be made for no longer
	// exists (deleted, or deleted and created again).
	ErrUserGone = errors.New("auth: user no longer exists")
)

// Principal is an authenticated caller.
type Principal struct {
	Username string
	// Via is "session" or "api-token".
	Via string
	// TokenID is the API token's id when Via is "api-token".
	TokenID string
	// Generation is the generation of the user the credential was made
	// for (see the package comment); roles are honoured only for it.
	Generation int64
	// sessionKey is the etcd key of the session when Via is "session".
	sessionKey string
}

// User is a stored user. The hash never leaves this package's store.
type User struct {
	Username     string    `json:"username"`
	PasswordHash []byte    `json:"passwordHash"`
	CreatedAt    time.Time `json:"createdAt"`
	// Generation is the create revision of the user's key (not stored).
	Generation int64 `json:"-"`
}

type session struct {
	Username string `json:"username"`
	// UserGeneration: the generation of the user that logged in.
	UserGeneration int64     `json:"userGeneration"`
	ExpiresAt      time.Time `json:"expiresAt"`
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
	// UserGeneration is the generation of the owner the token was made
	// for; never shown by the API.
	UserGeneration int64 `json:"userGeneration,omitempty"`
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
	// users is this replica's copy of the users, for their generations
	// (RunMirror, generations.go).
	users *kv.Table
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
	return &Store{cli: cli, bcryptCost: opts.BcryptCost, sessionTTL: opts.SessionTTL, now: opts.Now, dummyHash: dummy,
		users: kv.NewTable(cli, UsersPrefix, "users", nil)}, nil
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
	key := UsersPrefix + username
	val, err := kv.Encode(key, u)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, val)).Commit()
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", username, err)
	}
	if !resp.Succeeded {
		return User{}, ErrUserExists
	}
	// The transaction's revision is the key's create revision.
	u.Generation = resp.Header.Revision
	s.users.Set(username, []byte(val), u.Generation, u.Generation)
	return u, nil
}

// GetUser returns the user with its generation; kv.ErrNotFound if there is
// none.
func (s *Store) GetUser(ctx context.Context, username string) (User, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, UsersPrefix+username)
	if err != nil {
		return User{}, fmt.Errorf("get user %s: %w", username, err)
	}
	if len(resp.Kvs) == 0 {
		return User{}, kv.ErrNotFound
	}
	var u User
	if err := json.Unmarshal(resp.Kvs[0].Value, &u); err != nil {
		return User{}, fmt.Errorf("decode user %s: %w", username, err)
	}
	u.Generation = resp.Kvs[0].CreateRevision
	return u, nil
}

// sameUser is the transaction guard of every credential made for a user:
// the user key still has the create revision it had when it was read.
func sameUser(username string, generation int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(UsersPrefix+username), "=", generation)
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
	val, err := kv.Encode(key, session{Username: username, UserGeneration: u.Generation, ExpiresAt: expires})
	if err != nil {
		return "", time.Time{}, err
	}
	// Only while the user that was checked still exists: a login racing
	// the user's deletion leaves no session behind.
	resp, err := s.cli.Txn(ctx).If(sameUser(username, u.Generation)).
		Then(clientv3.OpPut(key, val, clientv3.WithLease(lease.ID))).Commit()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("store session: %w", err)
	}
	if !resp.Succeeded {
		return "", time.Time{}, ErrBadCredentials
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
		rev, err := s.getCredential(ctx, SessionsPrefix+hashHex(t), &sess)
		if err != nil {
			return nil, err
		}
		// The lease removes the key soon after expiry; the check closes the
		// gap of up to a second or so.
		if !s.now().Before(sess.ExpiresAt) {
			return nil, ErrBadCredentials
		}
		gen, err := s.checkGeneration(ctx, sess.Username, sess.UserGeneration, rev)
		if err != nil {
			return nil, err
		}
		return &Principal{Username: sess.Username, Via: "session", Generation: gen, sessionKey: SessionsPrefix + hashHex(t)}, nil
	case strings.HasPrefix(t, apiTokenPrefix):
		id, sec, ok := strings.Cut(strings.TrimPrefix(t, apiTokenPrefix), "_")
		if !ok || !kv.ValidID(id) {
			return nil, ErrBadCredentials
		}
		var tok APIToken
		rev, err := s.getCredential(ctx, APITokensPrefix+id, &tok)
		if err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(hashHex(sec)), []byte(tok.Hash)) != 1 {
			return nil, ErrBadCredentials
		}
		if tok.ExpiresAt != nil && !s.now().Before(*tok.ExpiresAt) {
			return nil, ErrBadCredentials
		}
		gen, err := s.checkGeneration(ctx, tok.Username, tok.UserGeneration, rev)
		if err != nil {
			return nil, err
		}
		return &Principal{Username: tok.Username, Via: "api-token", TokenID: tok.ID, Generation: gen}, nil
	default:
		return nil, ErrBadCredentials
	}
}

// getCredential decodes the session or API token at key and returns the
// key's create revision; ErrBadCredentials when there is none.
func (s *Store) getCredential(ctx context.Context, key string, v any) (int64, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("get credential: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrBadCredentials
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode credential: %w", err)
	}
	return resp.Kvs[0].CreateRevision, nil
}

// checkGeneration returns the generation of the credential's user, or
// ErrBadCredentials when that user no longer exists or is another user of
// the same name (see the package comment). A credential stored before
// generations were recorded (generation 0, credentialRev its key's create
// revision) passes only when it was created after the current user, which
// no credential of an earlier user of the name can be. When this
// replica's copy holds the user alive at that generation it answers
// without reading etcd (see generations.go).
func (s *Store) checkGeneration(ctx context.Context, username string, generation, credentialRev int64) (int64, error) {
	if s.userAlive(username, generation) {
		return generation, nil
	}
	u, err := s.GetUser(ctx, username)
	switch {
	case errors.Is(err, kv.ErrNotFound):
		return 0, ErrBadCredentials
	case err != nil:
		return 0, err
	case generation == 0 && u.Generation < credentialRev, generation != 0 && u.Generation == generation:
		return u.Generation, nil
	}
	return 0, ErrBadCredentials
}

// CreateAPIToken makes a token acting as owner (an authenticated caller,
// whose generation the token keeps). The token is returned once; only its
// hash is stored. ErrUserGone when the owner was deleted meanwhile.
func (s *Store) CreateAPIToken(ctx context.Context, owner *Principal, name string, expiresAt *time.Time) (APIToken, secret.String, error) {
	sec := randomSecret()
	tok := APIToken{ID: kv.NewID(), Name: name, Username: owner.Username, Hash: hashHex(sec), CreatedAt: s.now().UTC(),
		ExpiresAt: expiresAt, UserGeneration: owner.Generation}
	key := APITokensPrefix + tok.ID
	val, err := kv.Encode(key, tok)
	if err != nil {
		return APIToken{}, "", err
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	// One transaction with the owner's existence: DeleteUser removes the
	// user key first, so from then on no token can be made for it, and
	// its sweep of the tokens misses none.
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), sameUser(owner.Username, owner.Generation)).
		Then(clientv3.OpPut(key, val)).Commit()
	if err != nil {
		return APIToken{}, "", fmt.Errorf("create api token: %w", err)
	}
	if !resp.Succeeded {
		// (An id collision of 64 random bits is not worth its own answer.)
		return APIToken{}, "", ErrUserGone
	}
	tok.Hash, tok.UserGeneration = "", 0
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
	tok.Hash, tok.UserGeneration = "", 0
	return tok, nil
}

// ListAPITokens returns the metadata of every token (without hashes).
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	toks, err := kv.List[APIToken](ctx, s.cli, APITokensPrefix)
	for i := range toks {
		toks[i].Hash, toks[i].UserGeneration = "", 0
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

// RevokeSessions ends every session of the current user named username
// except keep (a session key, or "" for none).
func (s *Store) RevokeSessions(ctx context.Context, username, keep string) error {
	u, err := s.GetUser(ctx, username)
	if err != nil {
		return err
	}
	return s.revokeSessions(ctx, username, u.Generation, keep)
}

// revokeSessions ends the sessions of username made for generation or an
// earlier one. Sessions are keyed by token hash, so this reads them all; it
// runs only on password changes and user deletion.
func (s *Store) revokeSessions(ctx context.Context, username string, generation int64, keep string) error {
	tctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Get(tctx, SessionsPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var keys []string
	for _, item := range resp.Kvs {
		var sess session
		if json.Unmarshal(item.Value, &sess) != nil || sess.Username != username || sess.UserGeneration > generation || string(item.Key) == keep {
			continue
		}
		keys = append(keys, string(item.Key))
	}
	if err := s.deleteKeys(ctx, keys); err != nil {
		return fmt.Errorf("revoke sessions of %s: %w", username, err)
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

// DeleteUser removes the user of that generation, then every API token and
// session made for it. The user key goes first, in a transaction on its
// generation: from then on Login and CreateAPIToken, guarded by the same
// generation, can make nothing for it, so the sweep that follows is
// complete; and a credential it misses (say the replica dies midway) is
// refused by Authenticate anyway. kv.ErrNotFound when that user is gone.
func (s *Store) DeleteUser(ctx context.Context, username string, generation int64) error {
	tctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(tctx).If(sameUser(username, generation)).Then(clientv3.OpDelete(UsersPrefix + username)).Commit()
	if err != nil {
		return fmt.Errorf("delete user %s: %w", username, err)
	}
	if !resp.Succeeded {
		return kv.ErrNotFound
	}
	// This replica refuses the user's credentials from now on, before its
	// watch says so.
	s.users.Set(username, nil, 0, resp.Header.Revision)
	// Only the credentials of this generation (or older ones, recorded
	// without): those of a user created again meanwhile stay.
	toks, err := kv.List[APIToken](ctx, s.cli, APITokensPrefix)
	if err != nil {
		return err
	}
	var keys []string
	for _, t := range toks {
		if t.Username == username && t.UserGeneration <= generation {
			keys = append(keys, APITokensPrefix+t.ID)
		}
	}
	if err := s.deleteKeys(ctx, keys); err != nil {
		return fmt.Errorf("revoke api tokens of %s: %w", username, err)
	}
	return s.revokeSessions(ctx, username, generation, "")
}

// deleteKeys deletes keys, many per transaction (etcd's default limit is
// 128 operations).
func (s *Store) deleteKeys(ctx context.Context, keys []string) error {
	for chunk := range slices.Chunk(keys, 100) {
		ops := make([]clientv3.Op, 0, len(chunk))
		for _, k := range chunk {
			ops = append(ops, clientv3.OpDelete(k))
		}
		tctx, cancel := kv.WithTimeout(ctx)
		_, err := s.cli.Txn(tctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return err
		}
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
