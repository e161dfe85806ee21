package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/internal/secret"
)

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller of ctx, or nil when anonymous.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Require returns the caller, or a 401 when the request is anonymous.
func Require(r *http.Request) (*Principal, error) {
	p := PrincipalFrom(r.Context())
	if err := required(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Middleware resolves "Authorization: Bearer <token>" into the request's
// principal. A request without the header continues anonymous (routes that
// need a caller answer 401 themselves); a request with a bad token is
// answered 401 at once, so a typo never silently degrades to anonymous.
func (s *Store) Middleware(a *httpapi.Adapter) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			if h == "" {
				next.ServeHTTP(w, r)
				return
			}
			scheme, token, ok := strings.Cut(h, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
				a.WriteError(w, r, httpapi.Unauthorized("Authorization header must be \"Bearer <token>\""))
				return
			}
			p, err := s.Authenticate(r.Context(), secret.String(strings.TrimSpace(token)))
			if err != nil {
				if errors.Is(err, ErrBadCredentials) {
					err = httpapi.Unauthorized("token is invalid or expired; log in again")
				}
				a.WriteError(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// AuditActor tells the audit log who made r.
func AuditActor(r *http.Request) (string, string) {
	if p := PrincipalFrom(r.Context()); p != nil {
		return p.Username, p.Via
	}
	return "", ""
}

// ErrLastSystemAdmin is returned by Authorizer.ForgetUser when removing the
// user would leave nobody with the system-admin role.
var ErrLastSystemAdmin = errors.New("auth: last system admin")

// Authorizer is what the user routes need to know about roles; tenancy
// implements it.
type Authorizer interface {
	// SystemAdmin reports whether p holds the system-admin role.
	SystemAdmin(ctx context.Context, p *Principal) (bool, error)
	// ForgetUser removes every role binding granted to that generation of
	// username (or to an earlier one), or returns ErrLastSystemAdmin and
	// removes nothing.
	ForgetUser(ctx context.Context, username string, generation int64) error
}

// API serves login, users and API tokens.
type API struct {
	store    *Store
	authz    Authorizer
	logins   *prometheus.CounterVec
	throttle *throttle
}

// NewAPI returns the API; its metrics are registered on reg.
func NewAPI(store *Store, authz Authorizer, reg prometheus.Registerer) *API {
	api := &API{
		store:    store,
		authz:    authz,
		throttle: newThrottle(store.cli, store.now),
		logins: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_logins_total",
			Help: "Login attempts, by result (success, failure or throttled).",
		}, []string{"result"}),
	}
	for _, r := range []string{"success", "failure", "throttled"} {
		api.logins.WithLabelValues(r)
	}
	return api
}

// Register mounts the routes on r (the /api/v1 router).
func (api *API) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/login", a.Handle(api.login, httpapi.BodyLimit(MaxLoginBodyBytes))).Methods(http.MethodPost)
	r.Handle("/users", a.Handle(api.listUsers)).Methods(http.MethodGet)
	r.Handle("/users", a.Handle(api.createUser)).Methods(http.MethodPost)
	r.Handle("/users/{username}", a.Handle(api.deleteUser)).Methods(http.MethodDelete)
	r.Handle("/users/{username}/password", a.Handle(api.setPassword)).Methods(http.MethodPut)
	r.Handle("/api-tokens", a.Handle(api.listTokens)).Methods(http.MethodGet)
	r.Handle("/api-tokens", a.Handle(api.createToken)).Methods(http.MethodPost)
	r.Handle("/api-tokens/{id}", a.Handle(api.deleteToken)).Methods(http.MethodDelete)
}

// MaxLoginBodyBytes bounds a login's body: a username and a password fit
// many times over, and anyone may call it.
const MaxLoginBodyBytes = 4 << 10

// MaxTokenNameRunes bounds the name of an API token.
const MaxTokenNameRunes = 100

type credentials struct {
	Username string        `json:"username"`
	Password secret.String `json:"password"`
}

func (api *API) login(w http.ResponseWriter, r *http.Request) error {
	var c credentials
	if err := httpapi.Decode(r, &c); err != nil {
		return err
	}
	s, err := api.Login(r.Context(), c.Username, c.Password, r.RemoteAddr)
	if err != nil {
		return err
	}
	// The token is the one place a secret is revealed on purpose: the
	// caller needs it, once, in this reply.
	return httpapi.JSON(w, http.StatusOK, map[string]any{"token": s.Token.Reveal(), "username": s.Username, "expiresAt": s.ExpiresAt})
}

// UserView is a user as the API shows it.
type UserView struct {
	Username  string    `json:"username"`
	CreatedAt time.Time `json:"createdAt"`
}

func (api *API) listUsers(w http.ResponseWriter, r *http.Request) error {
	views, err := api.Users(r.Context(), PrincipalFrom(r.Context()))
	if err != nil {
		return err
	}
	return httpapi.List(w, views)
}

func (api *API) createUser(w http.ResponseWriter, r *http.Request) error {
	// Who may comes first: anyone else hears 403 whatever they sent.
	if err := api.mayCreateUsers(r.Context(), PrincipalFrom(r.Context())); err != nil {
		return err
	}
	var c credentials
	if err := httpapi.Decode(r, &c); err != nil {
		return err
	}
	u, err := api.CreateUser(r.Context(), PrincipalFrom(r.Context()), c.Username, c.Password)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusCreated, u)
}

// userTarget resolves the {username} of the path for the caller: a system
// admin reaches every user, anyone else only themselves (other users are
// answered 404, as GET /users does not show them either).
func (api *API) userTarget(r *http.Request) (*Principal, User, bool, error) {
	p, err := Require(r)
	if err != nil {
		return nil, User{}, false, err
	}
	name := mux.Vars(r)["username"]
	admin, err := api.authz.SystemAdmin(r.Context(), p)
	if err != nil {
		return nil, User{}, false, err
	}
	audit.Annotate(r.Context(), audit.Note{Target: "user/" + name})
	notFound := httpapi.NotFound("no user %q", name)
	if !admin && name != p.Username {
		return nil, User{}, false, notFound
	}
	if ValidateUsername(name) != "" {
		return nil, User{}, false, notFound
	}
	u, err := api.store.GetUser(r.Context(), name)
	if err != nil {
		if errors.Is(err, kv.ErrNotFound) {
			return nil, User{}, false, notFound
		}
		return nil, User{}, false, err
	}
	return p, u, admin, nil
}

type passwordRequest struct {
	// CurrentPassword is required when users change their own password.
	CurrentPassword secret.String `json:"currentPassword"`
	Password        secret.String `json:"password"`
}

// setPassword: users change their own password (giving the current one);
// a system admin sets anyone's. Every other session of that user ends.
func (api *API) setPassword(w http.ResponseWriter, r *http.Request) error {
	p, u, _, err := api.userTarget(r)
	if err != nil {
		return err
	}
	name := u.Username
	var req passwordRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	if msg := ValidatePassword(req.Password); msg != "" {
		return httpapi.Invalid("password", "%s", msg)
	}
	if name == p.Username {
		if req.CurrentPassword.IsZero() {
			return httpapi.Invalid("currentPassword", "currentPassword is required to change your own password")
		}
		ok, err := api.store.CheckPassword(r.Context(), name, req.CurrentPassword)
		if err != nil {
			return err
		}
		if !ok {
			return httpapi.Invalid("currentPassword", "currentPassword is wrong")
		}
	}
	if err := api.store.SetPassword(r.Context(), name, req.Password); err != nil {
		return err
	}
	keep := ""
	if name == p.Username {
		keep = p.sessionKey
	}
	if err := api.store.RevokeSessions(r.Context(), name, keep); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteUser (system admin): removes the user's role bindings, API
// tokens, sessions and the user. Users see themselves but may not delete
// themselves (403).
//
// Order: the bindings first, so that refusing to remove the last system
// admin leaves everything as it was; then the user with its credentials
// (see Store.DeleteUser); then the bindings once more, for a grant that
// raced the first pass. Every binding records the user's generation and
// tenancy creates it only while that generation exists, so after the user
// key is gone nothing new can appear, and a binding either pass missed is
// ignored for any later user of the name.
func (api *API) deleteUser(w http.ResponseWriter, r *http.Request) error {
	_, u, admin, err := api.userTarget(r)
	if err != nil {
		return err
	}
	if !admin {
		return httpapi.Forbidden("only a system admin may delete users")
	}
	if err := api.authz.ForgetUser(r.Context(), u.Username, u.Generation); err != nil {
		if errors.Is(err, ErrLastSystemAdmin) {
			return httpapi.Conflict("user %q holds the last system-admin binding; grant system-admin to another user first", u.Username)
		}
		return err
	}
	if err := api.store.DeleteUser(r.Context(), u.Username, u.Generation); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	if err := api.authz.ForgetUser(r.Context(), u.Username, u.Generation); err != nil {
		return fmt.Errorf("remove role bindings of deleted user %s: %w", u.Username, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type tokenRequest struct {
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

func (api *API) listTokens(w http.ResponseWriter, r *http.Request) error {
	own, err := api.Tokens(r.Context(), PrincipalFrom(r.Context()))
	if err != nil {
		return err
	}
	return httpapi.List(w, own)
}

func (api *API) createToken(w http.ResponseWriter, r *http.Request) error {
	if _, err := Require(r); err != nil {
		return err
	}
	var req tokenRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	tok, value, err := api.CreateToken(r.Context(), PrincipalFrom(r.Context()), req.Name, req.ExpiresAt)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusCreated, map[string]any{
		"id": tok.ID, "name": tok.Name, "username": tok.Username, "createdAt": tok.CreatedAt,
		"expiresAt": tok.ExpiresAt, "token": value.Reveal(),
	})
}

func (api *API) deleteToken(w http.ResponseWriter, r *http.Request) error {
	if err := api.DeleteToken(r.Context(), PrincipalFrom(r.Context()), mux.Vars(r)["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func clientHost(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}
