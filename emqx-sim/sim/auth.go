package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ecpio/ecp/internal/secret"
)

type dashUser struct {
	username string
	password secret.String
	role     string
	desc     string
}

type token struct {
	username string
	role     string
	expires  time.Time
}

type apiKeyRec struct {
	name      string
	key       string
	secret    secret.String
	role      string
	enable    bool
	desc      string
	createdAt time.Time
	expiredAt time.Time // zero = infinity
}

// principal is who a request authenticated as.
type principal struct {
	apiKey   bool
	username string // user name, or API key name
	role     string
	token    string
}

func (s *Sim) initAuth(now time.Time) error {
	s.users = map[string]*dashUser{}
	s.tokens = map[string]*token{}
	s.apiKeys = map[string]*apiKeyRec{}
	s.users[s.opts.DashboardUsername] = &dashUser{username: s.opts.DashboardUsername, password: s.opts.DashboardPassword, role: RoleAdministrator, desc: "administrator"}
	for _, u := range s.opts.Users {
		if _, dup := s.users[u.Username]; dup || u.Username == "" {
			return fmt.Errorf("options: duplicate or empty dashboard user %q", u.Username)
		}
		s.users[u.Username] = &dashUser{username: u.Username, password: u.Password, role: u.Role}
	}
	for _, k := range s.opts.APIKeys {
		if _, dup := s.apiKeys[k.Key]; dup || k.Key == "" {
			return fmt.Errorf("options: duplicate or empty api key %q", k.Key)
		}
		name := "from_bootstrap_file_" + k.Key
		s.apiKeys[k.Key] = &apiKeyRec{name: name, key: k.Key, secret: k.Secret, role: k.Role, enable: true, createdAt: now}
		s.keyNames = append(s.keyNames, name)
	}
	return nil
}

// newToken issues an HS256 JWT with EMQX's claims {"iss":"EMQX","exp":ms},
// signed with fresh key material; the server-side table is what makes it
// valid, as in emqx_dashboard_token.
func (s *Sim) newToken(u *dashUser, now time.Time) string {
	exp := now.Add(s.opts.TokenTTL)
	header := b64url([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"iss": "EMQX", "exp": exp.UnixMilli()})
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(s.authRng.UintN(256))
	}
	signing := header + "." + b64url(claims)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	tok := signing + "." + b64url(mac.Sum(nil))
	s.tokens[tok] = &token{username: u.username, role: u.role, expires: exp}
	return tok
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// authMode says what credentials a route accepts.
type authMode int

const (
	authAny        authMode = iota // Bearer token or Basic API key
	authNone                       // no auth at all
	authBearerOnly                 // Bearer only (api_key, users, logout)
)

const (
	msgNoAuthHeader = "Support authorization: basic/bearer "
	msgBadToken     = "Get a token by POST /login"
	msgTokenTimeout = "Token expired, get new token by POST /login"
	msgBadAPIKey    = "Check api_key/api_secret"
	msgRoleUser     = "You don't have permission to access this resource"
	msgRoleAPIKey   = "This API Key don't have permission to access this resource"
)

// authenticate checks r's credentials under the route's mode and the role
// rules of emqx-api.md §2.3. It returns the principal or writes the EMQX
// error reply and returns false.
func (s *Sim) authenticate(w http.ResponseWriter, r *http.Request, mode authMode, resource string) (principal, bool) {
	if mode == authNone {
		return principal{}, true
	}
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch strings.ToLower(scheme) {
	case "bearer":
		cred = strings.TrimSpace(cred)
		t, ok := s.tokens[cred]
		if !ok {
			writeError(w, http.StatusUnauthorized, "BAD_TOKEN", msgBadToken)
			return principal{}, false
		}
		if !now.Before(t.expires) {
			delete(s.tokens, cred)
			writeError(w, http.StatusUnauthorized, "TOKEN_TIME_OUT", msgTokenTimeout)
			return principal{}, false
		}
		p := principal{username: t.username, role: t.role, token: cred}
		if !roleAllows(p.role, r.Method, r.URL.Path) && !ownPassword(p, r) {
			writeError(w, http.StatusForbidden, "UNAUTHORIZED_ROLE", msgRoleUser)
			return principal{}, false
		}
		t.expires = now.Add(s.opts.TokenTTL) // sliding expiry
		return p, true
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		key, sec, _ := strings.Cut(string(raw), ":")
		if mode == authBearerOnly {
			unauthorized(w, "API_KEY_NOT_ALLOW",
				"Please use bearer Token instead, using API key/secret in "+resource+" path is not permitted")
			return principal{}, false
		}
		k, ok := s.apiKeys[key]
		if err != nil || !ok || !hmac.Equal([]byte(k.secret.Reveal()), []byte(sec)) || !k.enable ||
			(!k.expiredAt.IsZero() && now.After(k.expiredAt)) {
			unauthorized(w, "BAD_API_KEY_OR_SECRET", msgBadAPIKey)
			return principal{}, false
		}
		p := principal{apiKey: true, username: k.name, role: k.role}
		if !roleAllows(p.role, r.Method, r.URL.Path) {
			writeError(w, http.StatusForbidden, "UNAUTHORIZED_ROLE", msgRoleAPIKey)
			return principal{}, false
		}
		return p, true
	default:
		unauthorized(w, "AUTHORIZATION_HEADER_ERROR", msgNoAuthHeader)
		return principal{}, false
	}
}

// roleAllows applies EMQX's RBAC (emqx_dashboard_rbac:check_rbac):
// administrators do everything, viewers every GET plus logout (and their
// own password, see ownPassword), publishers only publish.
func roleAllows(role, method, path string) bool {
	switch role {
	case RoleAdministrator:
		return true
	case RoleViewer:
		return method == http.MethodGet || (method == http.MethodPost && path == "/api/v5/logout")
	case RolePublisher:
		return method == http.MethodPost && (path == "/api/v5/publish" || path == "/api/v5/publish/bulk")
	}
	return false
}

// ownPassword is the one write emqx_dashboard_rbac grants a viewer beyond
// logout: POST /users/<itself>/change_pwd.
func ownPassword(p principal, r *http.Request) bool {
	return p.role == RoleViewer && r.Method == http.MethodPost && r.URL.Path == "/api/v5/users/"+p.username+"/change_pwd"
}

func unauthorized(w http.ResponseWriter, code, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic Realm="emqx-dashboard"`)
	writeError(w, http.StatusUnauthorized, code, msg)
}

// randomHex draws n hex characters from the auth stream.
func (s *Sim) randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(s.authRng.UintN(256))
	}
	return hex.EncodeToString(b)[:n]
}
