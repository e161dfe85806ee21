package auth

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/names"
	"github.com/ecpio/ecp/internal/secret"
)

// The service methods below are what the routes of http.go do once the
// request is decoded; the web console calls them too, with the principal
// of its session, so both answer alike (same rules, same *httpapi.Error).
// A nil principal is an anonymous caller (401).

// Session is a successful login.
type Session struct {
	Token     secret.String
	Username  string
	ExpiresAt time.Time
}

func required(p *Principal) error {
	if p == nil {
		return httpapi.Unauthorized("authentication required: send Authorization: Bearer <token> from POST /api/v1/login or an API token")
	}
	return nil
}

// Login checks username and password, from a caller at remote (the
// connection's own address, host:port: a forwarded-for header is the
// caller's to forge), and starts a session.
func (api *API) Login(ctx context.Context, username string, password secret.String, remote string) (Session, error) {
	if username == "" {
		return Session{}, httpapi.Invalid("username", "username is required")
	}
	if password.IsZero() {
		return Session{}, httpapi.Invalid("password", "password is required")
	}
	audit.Annotate(ctx, audit.Note{Actor: username, Target: "user/" + username})
	// Recorded before the password is compared (see throttle.go): a burst
	// of guesses is refused, right password or not, once over the limit.
	at, err := api.throttle.begin(ctx, username, clientHost(remote))
	var throttled *errThrottled
	if errors.As(err, &throttled) {
		api.logins.WithLabelValues("throttled").Inc()
		return Session{}, &httpapi.Error{Status: http.StatusTooManyRequests, Code: httpapi.CodeRateLimited, RetryAfter: throttled.wait,
			Message: "too many failed logins for this user or from this address; try again later (see Retry-After)"}
	}
	if err != nil {
		return Session{}, err
	}
	token, exp, err := api.store.Login(ctx, username, password)
	if errors.Is(err, ErrBadCredentials) {
		api.logins.WithLabelValues("failure").Inc()
		return Session{}, httpapi.Unauthorized("username or password is wrong")
	}
	if err != nil {
		return Session{}, errors.Join(err, api.throttle.end(ctx, at))
	}
	if err := api.throttle.end(ctx, at); err != nil {
		return Session{}, err
	}
	api.logins.WithLabelValues("success").Inc()
	return Session{Token: token, Username: username, ExpiresAt: exp}, nil
}

// Users lists every user for a system admin; anyone else sees only
// themselves: usernames are not a directory for other tenants to browse.
func (api *API) Users(ctx context.Context, p *Principal) ([]UserView, error) {
	if err := required(p); err != nil {
		return nil, err
	}
	admin, err := api.authz.SystemAdmin(ctx, p)
	if err != nil {
		return nil, err
	}
	var users []User
	if admin {
		if users, err = api.store.ListUsers(ctx); err != nil {
			return nil, err
		}
	} else {
		u, err := api.store.GetUser(ctx, p.Username)
		if err != nil {
			return nil, err
		}
		users = []User{u}
	}
	views := make([]UserView, 0, len(users))
	for _, u := range users {
		views = append(views, UserView{Username: u.Username, CreatedAt: u.CreatedAt})
	}
	return views, nil
}

// mayCreateUsers refuses everyone but system admins.
func (api *API) mayCreateUsers(ctx context.Context, p *Principal) error {
	if err := required(p); err != nil {
		return err
	}
	admin, err := api.authz.SystemAdmin(ctx, p)
	if err != nil {
		return err
	}
	if !admin {
		return httpapi.Forbidden("only a system admin may create users")
	}
	return nil
}

// CreateUser creates a user (system admin only).
func (api *API) CreateUser(ctx context.Context, p *Principal, username string, password secret.String) (UserView, error) {
	if err := api.mayCreateUsers(ctx, p); err != nil {
		return UserView{}, err
	}
	if msg := ValidateUsername(username); msg != "" {
		return UserView{}, httpapi.Invalid("username", "%s", msg)
	}
	if msg := ValidatePassword(password); msg != "" {
		return UserView{}, httpapi.Invalid("password", "%s", msg)
	}
	audit.Annotate(ctx, audit.Note{Target: "user/" + username})
	u, err := api.store.CreateUser(ctx, username, password)
	if errors.Is(err, ErrUserExists) {
		return UserView{}, httpapi.Conflict("user %q already exists", username)
	}
	if err != nil {
		return UserView{}, err
	}
	return UserView{Username: u.Username, CreatedAt: u.CreatedAt}, nil
}

// Tokens lists the caller's own API tokens.
func (api *API) Tokens(ctx context.Context, p *Principal) ([]APIToken, error) {
	if err := required(p); err != nil {
		return nil, err
	}
	toks, err := api.store.ListAPITokens(ctx)
	if err != nil {
		return nil, err
	}
	own := toks[:0]
	for _, t := range toks {
		if t.Username == p.Username {
			own = append(own, t)
		}
	}
	return own, nil
}

// CreateToken makes an API token of the caller's, named name, expiring at
// expiresAt (never when nil); its value is returned once.
func (api *API) CreateToken(ctx context.Context, p *Principal, name string, expiresAt *time.Time) (APIToken, secret.String, error) {
	if err := required(p); err != nil {
		return APIToken{}, "", err
	}
	if msg := names.Validate(name, MaxTokenNameRunes); msg != "" {
		return APIToken{}, "", httpapi.Invalid("name", "%s", msg)
	}
	if expiresAt != nil && !expiresAt.After(api.store.now()) {
		return APIToken{}, "", httpapi.Invalid("expiresAt", "expiresAt must be an RFC 3339 time in the future, or left out for a token that does not expire")
	}
	tok, value, err := api.store.CreateAPIToken(ctx, p, name, expiresAt)
	if errors.Is(err, ErrUserGone) {
		return APIToken{}, "", httpapi.Unauthorized("token is invalid or expired; log in again")
	}
	if err != nil {
		return APIToken{}, "", err
	}
	audit.Annotate(ctx, audit.Note{Target: "api-token/" + tok.ID})
	return tok, value, nil
}

// DeleteToken revokes API token id: the caller's own, or anyone's for a
// system admin. Another user's token is answered as absent, as if it did
// not exist: ids are not to be probed.
func (api *API) DeleteToken(ctx context.Context, p *Principal, id string) error {
	if err := required(p); err != nil {
		return err
	}
	audit.Annotate(ctx, audit.Note{Target: "api-token/" + id})
	notFound := httpapi.NotFound("no api token %q", id)
	if !kv.ValidID(id) {
		return notFound
	}
	tok, err := api.store.GetAPIToken(ctx, id)
	if errors.Is(err, ErrTokenNotFound) {
		return notFound
	}
	if err != nil {
		return err
	}
	if tok.Username != p.Username {
		admin, err := api.authz.SystemAdmin(ctx, p)
		if err != nil {
			return err
		}
		if !admin {
			return notFound
		}
	}
	if err := api.store.DeleteAPIToken(ctx, id); err != nil {
		if errors.Is(err, ErrTokenNotFound) {
			return notFound
		}
		return err
	}
	return nil
}
