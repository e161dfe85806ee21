// Package console is ecp's web console: server-rendered html/template pages
// with a little htmx, served by ecp at / with every asset embedded in the
// binary, so building or running the product needs no Node toolchain.
//
// The console owns no business logic and no authorization. Every page and
// form calls the API packages' typed service methods with the caller's
// access (service.go), which the routes of /api/v1 call too, so the console
// shows exactly what the REST API allows, with the same validation,
// permission checks and error messages; its changes (and logins) are
// recorded by the audit log's middleware around the console's route
// (audited), as the API's middleware records the API's. The one thing it asks the authorizer
// directly is the caller's level on a project, to leave out controls the
// caller cannot use; the API still refuses them if they are forced.
//
// Sessions are the API's own login sessions: the session token lives in an
// HttpOnly, SameSite=Lax cookie (Secure when ecp's external URL is https).
// Every form carries a CSRF token derived from the session token, which a
// page of another site can neither read nor compute; the login form uses a
// double-submit cookie instead.
package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/logs"
	"github.com/ecpio/ecp/ecp/monitoring"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie names.
const (
	SessionCookie = "ecp_session"
	loginCookie   = "ecp_login_csrf"
)

// CSRFField is the form field (and CSRFHeader the header htmx sends) that
// carries the CSRF token of the session.
const (
	CSRFField  = "csrf"
	CSRFHeader = "X-CSRF-Token"
)

// Defaults.
const (
	DefaultRefreshInterval = 5 * time.Second
	DefaultPageSize        = 50
)

// Options configure the console.
type Options struct {
	// Sessions resolves session tokens and ends them at logout. Required.
	Sessions *auth.Store
	// Authz tells the caller's level on a project, to hide controls, and
	// serves the navigation's organizations and projects. Required.
	Authz *tenancy.Authorizer
	// Tenancy creates organizations, projects and role bindings for the
	// Setup page.
	// Required.
	Tenancy *tenancy.API
	// Auth serves login, users and API tokens. Required.
	Auth *auth.API
	// Quota serves the licence and the organization and project quotas.
	// Required.
	Quota *quota.Scopes
	// AuditLog serves the System page's latest audit records. Required.
	AuditLog *audit.Log
	// Policy serves the notification policy. Required.
	Policy *destpolicy.Store
	// Clusters serves the cluster pages through its service methods.
	// Required.
	Clusters *clusters.API
	// Monitoring serves the Monitoring page's overview. Required.
	Monitoring *monitoring.API
	// Alerts serves the alert lists. Required.
	Alerts *alerts.Service
	// Logs serves the log queries. Required.
	Logs *logs.API
	// Audit records a change made through the console as the API's audit
	// middleware records one made through the API (who, what, on which
	// tenant, with what outcome): the console calls the service methods,
	// below the API's middleware. Required.
	Audit mux.MiddlewareFunc
	// SecureCookies marks cookies Secure (ecp's external URL is https).
	SecureCookies bool
	// RefreshInterval is how often lists and states refresh themselves.
	RefreshInterval time.Duration
	// PageSize is the number of clusters per page.
	PageSize int
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Console serves the web console.
type Console struct {
	opts   Options
	logger *slog.Logger
	pages  map[string]*template.Template
	static http.Handler
	// assetVersion is a digest of the embedded assets, appended to their
	// URLs so they can be cached for good and still change with a release.
	assetVersion string
}

// New parses the embedded templates and returns the console.
func New(opts Options, logger *slog.Logger) (*Console, error) {
	if opts.Sessions == nil || opts.Authz == nil || opts.Tenancy == nil || opts.Auth == nil || opts.Quota == nil || opts.AuditLog == nil || opts.Policy == nil ||
		opts.Clusters == nil || opts.Monitoring == nil || opts.Alerts == nil || opts.Logs == nil || opts.Audit == nil {
		return nil, errors.New("console: Options.Sessions, Authz, Tenancy, Auth, Quota, AuditLog, Policy, Clusters, Monitoring, Alerts, Logs and Audit are required")
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Console{opts: opts, logger: logger}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static assets: %w", err)
	}
	if c.assetVersion, err = digestFS(sub); err != nil {
		return nil, err
	}
	files := http.FileServerFS(sub)
	c.static = http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("v") == c.assetVersion {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	}))
	if err := c.parse(); err != nil {
		return nil, err
	}
	return c, nil
}

func digestFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		h.Write([]byte(p))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("console: digest static assets: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// parse builds one template set per page: the layout, the shared partials
// and the page's own content.
func (c *Console) parse() error {
	entries, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return fmt.Errorf("console: templates: %w", err)
	}
	c.pages = map[string]*template.Template{}
	for _, e := range entries {
		name := strings.TrimSuffix(path.Base(e), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.New(name).Funcs(c.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", e)
		if err != nil {
			return fmt.Errorf("console: parse %s: %w", e, err)
		}
		c.pages[name] = t
	}
	return nil
}

// Register mounts the console on r (the app's fallback router).
func (c *Console) Register(r *mux.Router) {
	r.PathPrefix("/static/").Handler(c.static).Methods(http.MethodGet, http.MethodHead)
	// No icon yet; an empty answer keeps browsers from logging a 404.
	r.HandleFunc("/favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }).Methods(http.MethodGet)
	r.HandleFunc("/login", c.loginPage).Methods(http.MethodGet)
	// Audited as POST /api/v1/login is: who tried, from where, and how it went.
	r.Handle("/login", c.opts.Audit(http.HandlerFunc(c.login))).Methods(http.MethodPost)
	r.Handle("/logout", c.page(c.logout)).Methods(http.MethodPost)
	r.Handle("/", c.page(c.home)).Methods(http.MethodGet)
	r.Handle("/switch", c.page(c.switchProject)).Methods(http.MethodGet)
	p := "/projects/{project}"
	r.Handle(p, c.page(c.projectHome)).Methods(http.MethodGet)
	r.Handle(p+"/clusters", c.page(c.clusterList)).Methods(http.MethodGet)
	r.Handle(p+"/clusters", c.page(c.audited(c.createCluster))).Methods(http.MethodPost)
	r.Handle(p+"/clusters/new", c.page(c.newCluster)).Methods(http.MethodGet)
	cl := p + "/clusters/{id}"
	r.Handle("/clusters/{id}", c.page(c.clusterLink)).Methods(http.MethodGet)
	r.Handle(cl, c.page(c.clusterDetail)).Methods(http.MethodGet)
	r.Handle(cl+"/state", c.page(c.clusterPart("cluster-state"))).Methods(http.MethodGet)
	r.Handle(cl+"/dashboard", c.page(c.audited(c.openDashboard))).Methods(http.MethodGet)
	r.Handle(cl+"/registration", c.page(c.audited(c.registration))).Methods(http.MethodPost)
	r.Handle(cl+"/edit", c.page(c.audited(c.editCluster))).Methods(http.MethodPost)
	r.Handle(cl+"/max-connections", c.page(c.audited(c.setMaxConnections))).Methods(http.MethodPost)
	r.Handle(cl+"/log-collection", c.page(c.audited(c.setLogCollection))).Methods(http.MethodPost)
	r.Handle(cl+"/transfer", c.page(c.audited(c.transfer))).Methods(http.MethodPost)
	r.Handle(cl+"/delete", c.page(c.audited(c.deleteCluster))).Methods(http.MethodPost)
	c.registerOps(r)
	c.registerSystem(r)
	c.registerSetup(r)
	c.registerLive(r)
	// Name every route, so walkers of the whole router (the API's
	// every-route-every-role test) can tell the console's cookie-session
	// pages from bearer-token API routes.
	_ = r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if route.GetName() == "" {
			tpl, _ := route.GetPathTemplate()
			methods, _ := route.GetMethods()
			route.Name(RouteNamePrefix + strings.Join(methods, ",") + " " + tpl)
		}
		return nil
	})
}

// RouteNamePrefix starts the name of every console route.
const RouteNamePrefix = "console: "

// session is the signed-in caller of one request.
type session struct {
	principal *auth.Principal
	token     secret.String
	csrf      string
	// access is the caller's access with the tenancy records, loaded
	// once for the request by access().
	access *tenancy.Access
}

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// csrfToken derives the session's CSRF token: a keyed hash of the session
// token, the same on every replica and useless without the cookie.
func csrfToken(token secret.String) string {
	m := hmac.New(sha256.New, []byte(token.Reveal()))
	m.Write([]byte("ecp console csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// pageFunc handles a page for a signed-in caller; a returned error is
// rendered (an expired session sends the caller back to the login page).
type pageFunc func(w http.ResponseWriter, r *http.Request) error

// page authenticates the session cookie, checks the CSRF token of every
// change, and renders errors.
func (c *Console) page(h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w)
		ck, err := r.Cookie(SessionCookie)
		if err != nil || ck.Value == "" {
			c.toLogin(w, r, "")
			return
		}
		token := secret.String(ck.Value)
		p, err := c.opts.Sessions.Authenticate(r.Context(), token)
		if errors.Is(err, auth.ErrBadCredentials) {
			c.clearCookie(w, SessionCookie)
			c.toLogin(w, r, "expired")
			return
		}
		if err != nil {
			c.renderError(w, r, err)
			return
		}
		s := &session{principal: p, token: token, csrf: csrfToken(token)}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if e := readForm(w, r, maxFormBytes); e != nil {
				c.renderStatus(w, r, e.Status, e.Message)
				return
			}
			got := r.Header.Get(CSRFHeader)
			if got == "" {
				got = r.PostFormValue(CSRFField)
			}
			if !hmac.Equal([]byte(got), []byte(s.csrf)) {
				c.renderStatus(w, r, http.StatusForbidden, "The form was refused: its security token is missing or stale. Reload the page and try again.")
				return
			}
		}
		c.rememberProject(w, r)
		ctx := auth.WithPrincipal(context.WithValue(r.Context(), sessionKey{}, s), p)
		if err := h(w, r.WithContext(ctx)); err != nil {
			c.renderError(w, r, err)
		}
	})
}

// audited runs h under the audit middleware, for a page that changes
// something through a service method (or, like the dashboard jump, hands
// out a login): the record names the console's route, the caller and what
// the service annotated.
func (c *Console) audited(h pageFunc) pageFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		c.opts.Audit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				c.renderError(w, r, err)
			}
		})).ServeHTTP(w, r)
		return nil
	}
}

// contentSecurityPolicy allows only the console's own scripts and styles:
// an injected <script> or inline handler does not run.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// toLogin sends the caller to the login page; htmx requests get a header
// that makes htmx navigate, rather than a login form swapped into a table.
func (c *Console) toLogin(w http.ResponseWriter, r *http.Request, reason string) {
	target := "/login"
	q := []string{}
	if reason != "" {
		q = append(q, "reason="+reason)
	}
	if r.Method == http.MethodGet && r.Header.Get("HX-Request") == "" && r.URL.Path != "/" {
		q = append(q, "next="+urlQueryEscape(r.URL.RequestURI()))
	}
	if len(q) > 0 {
		target += "?" + strings.Join(q, "&")
	}
	if r.Header.Get("HX-Request") != "" {
		w.Header().Set("HX-Redirect", target)
		w.WriteHeader(http.StatusOK)
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", Expires: expires,
		HttpOnly: true, Secure: c.opts.SecureCookies, SameSite: http.SameSiteLaxMode,
	})
}

func (c *Console) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: c.opts.SecureCookies, SameSite: http.SameSiteLaxMode,
	})
}

// renderBuffers hold pages while they render, so that an error can still
// answer 500 instead of half a page. A cluster list page is some 60 KiB;
// reusing the buffers spares the allocator and the collector a page's
// worth of growing copies on every render and every 5 s refresh.
var renderBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer keeps an unusually large page's buffer out of the pool.
const maxPooledBuffer = 1 << 20

func putRenderBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	renderBuffers.Put(b)
}

// render writes a page (or, with fragment set, one named template of it).
func (c *Console) render(w http.ResponseWriter, status int, page, fragment string, data any) {
	t := c.pages[page]
	if t == nil {
		c.logger.Error("console page missing", "page", page)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	name := "layout"
	if fragment != "" {
		name = fragment
	}
	buf := renderBuffers.Get().(*bytes.Buffer)
	defer putRenderBuffer(buf)
	if err := t.ExecuteTemplate(buf, name, data); err != nil {
		c.logger.Error("render console page", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if w.Header().Get("Cache-Control") == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
