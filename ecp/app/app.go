// Package app is the ecp control plane as an embeddable server: main builds
// Options from flags and runs it, and tests start it in-process on
// 127.0.0.1:0 (several replicas on one etcd if they like).
//
// New does everything that can fail before serving (etcd, listener,
// bootstrap of the first system admin); Run serves until its context ends
// or an actor fails; Stop tears down in the order written above it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/agentdownloads"
	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/connlimit"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/logs"
	"github.com/ecpio/ecp/ecp/longpoll"
	"github.com/ecpio/ecp/ecp/monitoring"
	"github.com/ecpio/ecp/ecp/openapi"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/seal"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/ops"
	"github.com/ecpio/ecp/internal/version"
	"github.com/ecpio/ecp/internal/webconfig"
)

// App is one ecp replica.
type App struct {
	opts   Options
	logger *slog.Logger
	reg    *prometheus.Registry

	etcd *etcdserver.Server // nil with external etcd
	cli  *clientv3.Client
	ln   net.Listener
	srv  *http.Server
	web  *webconfig.Web
	// conns bounds the connections ln holds (connlimit.go).
	conns *connlimit.Listener

	// sealKey seals the secrets stored in etcd.
	sealKey *seal.Key

	router   *mux.Router
	adapter  *httpapi.Adapter
	users    *auth.Store
	authz    *tenancy.Authorizer
	ledger   *quota.Ledger
	clusters *clusters.API
	fleet    agentSide
	// reports keeps each cluster's latest report for the monitoring
	// overview; fleet feeds it.
	reports *monitoring.Store
	// overview serves the monitoring overview (route and console).
	overview *monitoring.API
	// alerts serves the alert lists and settings (routes and console).
	alerts *alerts.Service
	// logs serves the log queries (routes and console).
	logs *logs.API
	// policy serves the notification policy (routes and console).
	policy *destpolicy.Store
	// registry runs "a cluster is deleted" (ecp/registry).
	registry *registry.Registry
	// records is the replica's one mirror of the cluster records: the
	// cluster lists, the monitoring overview and the deletion
	// subscribers read it.
	records *registry.Mirror
	// runFleet is the agent side's own loop (nil when a test replaced
	// it through Options.fleet).
	runFleet    func(context.Context) error
	fleetReady  <-chan struct{}
	agentRoutes func(*mux.Router)
	// agentShortcut, when set, serves the agent reports before the
	// router does (fleet.Shortcut).
	agentShortcut func(http.Handler) http.Handler
	// extensionRuns are the loops of the API packages mounted through Env.
	extensionRuns []func(context.Context) error
	// logReceiverURL gives the log store's URL now (a func() string),
	// for the notification policy; set once the log API is built.
	logReceiverURL atomic.Value

	ready atomic.Bool
	// etcdDown is set by the etcd probe while etcd does not answer: the
	// replica cannot serve anything useful then, so it reports not ready.
	etcdDown atomic.Bool
	// etcdAlarms are the alarms etcd raised, as the probe last saw them.
	etcdAlarms *etcdAlarms
	// runAudit keeps the audit log within its record budget.
	runAudit func(context.Context) error
	metrics  *metrics

	reloadMu sync.Mutex
	// cancelRequests ends the context of every in-flight request.
	cancelRequests context.CancelFunc

	stopOnce sync.Once
	stopErr  error
}

type metrics struct {
	reloadOK   prometheus.Gauge
	reloadTime prometheus.Gauge
}

// New prepares a replica: it starts (or connects to) etcd, binds the
// listener, builds the router and creates the first system admin if
// needed. On error everything started is torn down again.
func New(opts Options, logger *slog.Logger, reg *prometheus.Registry) (_ *App, err error) {
	if logger == nil {
		return nil, errors.New("ecp/app: logger is required")
	}
	if reg == nil {
		return nil, errors.New("ecp/app: registry is required")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Out == nil {
		opts.Out = os.Stderr
	}
	a := &App{opts: opts, logger: logger, reg: reg}
	defer func() {
		if err != nil {
			_ = a.Stop(context.Background())
		}
	}()
	if opts.ConfigFile != "" {
		if err := a.applyConfig(); err != nil {
			return nil, err
		}
	}
	keyFile := opts.SecretsKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(opts.DataDir, seal.DefaultKeyFile)
	}
	if a.sealKey, err = seal.LoadOrCreate(keyFile); err != nil {
		return nil, err
	}
	if a.web, err = webconfig.Load(opts.WebConfigFile, logger.With("component", "web")); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdserver.DefaultStartTimeout)
	defer cancel()
	// The web address is taken before the embedded etcd starts: a port in
	// use fails at once, before etcd's work, and etcd's own listeners
	// (bound to port 0) cannot be handed the port the operator chose in
	// the moment between a caller finding it free and ecp taking it.
	// Connections wait in the backlog until Run serves them.
	var lc net.ListenConfig
	if a.ln, err = lc.Listen(ctx, "tcp", opts.ListenAddress); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", opts.ListenAddress, err)
	}
	if err := a.limitConnections(); err != nil {
		return nil, err
	}
	endpoints, etcdTLS := opts.EtcdEndpoints, opts.EtcdTLS
	if len(endpoints) == 0 {
		a.etcd, err = etcdserver.Start(ctx, etcdserver.Options{Dir: opts.DataDir, QuotaBackendBytes: opts.EtcdQuotaBackendBytes}, logger.With("component", "etcd"))
		if err != nil {
			return nil, err
		}
		endpoints, etcdTLS = []string{a.etcd.Endpoint()}, a.etcd.ClientTLS()
	}
	if a.cli, err = etcdserver.NewClient(endpoints, etcdTLS); err != nil {
		return nil, err
	}
	if err := a.checkEtcd(ctx); err != nil {
		return nil, err
	}
	if err := a.sealKey.Verify(ctx, a.cli); err != nil {
		return nil, err
	}
	if a.opts.ExternalURL == "" {
		a.opts.ExternalURL = a.web.Scheme() + "://" + a.ln.Addr().String()
		if host, _, _ := net.SplitHostPort(a.ln.Addr().String()); net.ParseIP(host).IsUnspecified() {
			logger.Warn("ecp listens on every interface but has no --web.external-url; registration commands will name an address agents cannot reach", "externalUrl", a.opts.ExternalURL)
		}
	}
	if err := a.build(ctx); err != nil {
		return nil, err
	}
	if err := a.bootstrapAdmin(ctx); err != nil {
		return nil, err
	}
	// Agents hold desired-state long-polls open for up to a minute; a
	// graceful shutdown would wait for each. Requests run on a base context
	// that is cancelled a short drain after shutdown begins: ordinary calls
	// have finished by then, long-polls end and their agents reconnect to
	// another replica.
	baseCtx, cancelRequests := context.WithCancel(context.Background())
	a.cancelRequests = cancelRequests
	// Near the connection limit no long-poll is held (package longpoll,
	// "Crowding"), so that agents take turns on connections.
	baseCtx = longpoll.WithCrowded(baseCtx, a.conns.Crowded)
	drain := min(DefaultDrainGrace, opts.ShutdownTimeout/2)
	handler := http.Handler(a.router)
	if a.agentShortcut != nil {
		handler = a.agentShortcut(handler)
	}
	a.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return baseCtx },

		// A body must arrive within ReadTimeout. Long-polls are not cut:
		// net/http lifts the read deadline once a request's body is read
		// (a poll has none), and a poll fleet took over is served on the
		// bare socket, whose deadlines net/http sets anew when the
		// connection is handed back.
		ReadTimeout: opts.ReadTimeout,
		IdleTimeout: DefaultIdleTimeout,

		// HTTP/2 over TLS (ALPN) and, on plain http, with prior knowledge
		// (h2c): an agent's report, long-poll, remote write and logs share
		// one connection (package longpoll has the figures).
		Protocols: serverProtocols(),
		HTTP2:     serverHTTP2(),
	}
	a.srv.RegisterOnShutdown(func() { time.AfterFunc(drain, cancelRequests) })
	return a, nil
}

func serverProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return p
}

// HTTP/2 limits of ecp's server (docs/scaling.md, "What an HTTP/2 agent
// costs"). An idle agent connection holds what net/http allocates per
// connection whatever the settings (two goroutines, their stacks, the
// h2c connection's buffers); these bound what a connection can make ecp
// hold beyond that:
//   - h2MaxStreams: an agent has at most four calls open (report,
//     long-poll, remote write, a log batch); Go's default of 250 would let
//     one hostile connection park 250 handler goroutines. A browser on the
//     console waits for a free stream past 32 rather than failing.
//   - h2MaxFrame: the framer keeps a read buffer as large as the largest
//     frame the connection ever sent. With Go's 1 MiB, a remote-write or
//     log batch sent as one frame left up to 1 MiB on every agent's
//     connection for good; 16 KiB is HTTP/2's smallest.
//   - h2RecvConn, h2RecvStream: the flow-control windows, so how much of
//     request bodies a connection can have ecp buffer ahead of its
//     handlers (Go: 1 MiB each). Bodies are bounded far below by the
//     handlers (remote write, logs); 256 KiB keeps a connection at full
//     speed up to 25 MB/s at 10 ms of round trip.
//   - h2WriteByteTimeout: a client that stops reading is dropped after
//     this long with nothing written, instead of holding its streams'
//     goroutines and buffers until TCP gives up.
const (
	h2MaxStreams       = 32
	h2MaxFrame         = 16 << 10
	h2RecvConn         = 256 << 10
	h2RecvStream       = 256 << 10
	h2WriteByteTimeout = 30 * time.Second
)

func serverHTTP2() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          h2MaxStreams,
		MaxReadFrameSize:              h2MaxFrame,
		MaxReceiveBufferPerConnection: h2RecvConn,
		MaxReceiveBufferPerStream:     h2RecvStream,
		WriteByteTimeout:              h2WriteByteTimeout,
	}
}

// checkEtcd fails early and clearly when etcd is not reachable.
func (a *App) checkEtcd(ctx context.Context) error {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	if _, err := a.cli.Get(ctx, "/ecp/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("reach etcd: %w", err)
	}
	return nil
}

func (a *App) build(ctx context.Context) error {
	reg := a.reg
	var err error
	f := promauto.With(reg)
	a.metrics = &metrics{
		reloadOK: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_config_last_reload_successful", Help: "Whether the last configuration reload succeeded (1) or not (0).",
		}),
		reloadTime: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_config_last_reload_success_timestamp_seconds", Help: "Time of the last successful configuration reload.",
		}),
	}
	buildInfo := f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ecp_build_info", Help: "Build of this ecp: version, revision and Go version, value 1.",
	}, []string{"version", "revision", "goversion"})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ecp_ready", Help: "Whether this replica is ready to serve (1) or not (0).",
	}, func() float64 {
		if a.ready.Load() && !a.etcdDown.Load() && !a.etcdAlarms.noSpace.Load() {
			return 1
		}
		return 0
	})
	a.etcdAlarms = newEtcdAlarms(reg)
	buildInfo.WithLabelValues(version.Version, version.Revision, runtime.Version()).Set(1)
	a.metrics.reloadOK.Set(1)
	a.metrics.reloadTime.SetToCurrentTime()

	a.adapter = httpapi.NewAdapter(a.logger.With("component", "api"), reg)
	if a.users, err = auth.NewStore(a.cli, auth.StoreOptions{BcryptCost: a.opts.BcryptCost, SessionTTL: a.opts.SessionTTL}); err != nil {
		return err
	}
	tstore := tenancy.NewStore(a.cli)
	a.authz = tenancy.NewAuthorizer(tstore)
	if a.ledger, err = quota.NewLedger(a.cli, a.opts.Licence, reg); err != nil {
		return err
	}
	reg.MustRegister(newLicenceCollector(a.ledger))
	store := registry.NewStore(a.cli, a.ledger)
	if dropped, err := store.DropProjectIndex(ctx); err != nil {
		return err
	} else if dropped > 0 {
		a.logger.Info("retired project index of cluster entries dropped", "keys", dropped)
	}
	if added, removed, err := store.ReindexNames(ctx); err != nil {
		return err
	} else if added+removed > 0 {
		a.logger.Info("name index of cluster entries repaired", "added", added, "removed", removed)
	}
	if changed, err := store.Recount(ctx); err != nil {
		return err
	} else if changed > 0 {
		a.logger.Info("connection allocation counters recounted", "changed", changed)
	}
	a.records = registry.NewMirror(a.cli, a.logger.With("component", "registry"))
	if err := a.buildFleet(ctx); err != nil {
		return err
	}
	a.registry = registry.New(store, a.records, a.logger.With("component", "registry"))
	a.registry.SetBinder(a.fleet)
	if a.clusters, err = clusters.NewAPI(clusters.Options{ExternalURL: a.opts.ExternalURL, TokenTTL: a.opts.RegistrationTokenTTL, Mirror: a.records, Registry: a.registry},
		a.authz, store, a.fleet, a.logger.With("component", "clusters")); err != nil {
		return err
	}
	auditLog := audit.New(a.cli, a.logger.With("component", "audit"), reg, audit.Options{Retention: a.opts.AuditRetention, MaxRecords: a.opts.AuditMaxRecords})
	a.runAudit = auditLog.Run

	var r *mux.Router
	notAllowed := func(req *http.Request, allowed []string) error {
		return &httpapi.Error{Status: http.StatusMethodNotAllowed, Code: httpapi.CodeMethodInvalid,
			Message: "method " + req.Method + " is not allowed on " + req.URL.Path + "; allowed: " + strings.Join(allowed, ", ")}
	}
	notFound := a.adapter.Handle(func(w http.ResponseWriter, req *http.Request) error {
		// gorilla/mux reports a method mismatch inside a subrouter as not
		// found; probing the other methods gives the caller the right 405.
		if allowed := allowedMethods(r, req); len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			return notAllowed(req, allowed)
		}
		return httpapi.NotFound("no route %s %s; the API is described at %s", req.Method, req.URL.Path, openapi.Path)
	})
	methodNotAllowed := a.adapter.Handle(func(w http.ResponseWriter, req *http.Request) error {
		allowed := allowedMethods(r, req)
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		return notAllowed(req, allowed)
	})
	r = mux.NewRouter()
	r.NotFoundHandler, r.MethodNotAllowedHandler = notFound, methodNotAllowed
	a.registerOps(r)
	// The agent API authenticates with agent credentials, not user tokens:
	// it is mounted before (and outside) the user API's middleware.
	a.registerFleetRoutes(r)
	openapi.Register(r, a.adapter)
	agentdownloads.New(a.opts.DownloadsDir).Register(r, a.adapter)
	// Own-auth routes (remote write, log ingestion) go on a subrouter
	// created before the /api/v1 one, so the /api/v1 prefix cannot shadow
	// them.
	root := r.NewRoute().Subrouter()

	api := r.PathPrefix("/api/v1").Subrouter()
	api.NotFoundHandler, api.MethodNotAllowedHandler = notFound, methodNotAllowed
	// Order matters: the principal must be known before the audit record
	// is written.
	api.Use(a.users.Middleware(a.adapter), auditLog.Middleware(auth.AuditActor))
	authAPI := auth.NewAPI(a.users, a.authz, reg)
	authAPI.Register(api, a.adapter)
	tenancyAPI := tenancy.NewAPI(a.authz, a.users)
	tenancyAPI.Register(api, a.adapter)
	a.clusters.Register(api, a.adapter)
	a.ledger.Register(api, a.adapter)
	quotas := a.ledger.RegisterScopes(api, a.adapter, a.authz)
	auditLog.Register(api, a.adapter, a.authz.AuditScope)
	// Last: a catch-all (the web console at /) must not shadow anything.
	fallback := r.NewRoute().Subrouter()
	env := Env{API: api, Root: root, Fallback: fallback, Adapter: a.adapter, Authz: a.authz, Etcd: a.cli, Registerer: reg}
	if err := a.buildMetrics(env); err != nil {
		return err
	}
	if err := a.buildAlerts(ctx, env); err != nil {
		return err
	}
	if err := a.buildLogs(ctx, env); err != nil {
		return err
	}
	if err := a.buildGrafana(); err != nil {
		return err
	}
	if err := a.mountConsole(fallback, consoleServices{audit: auditLog, tenancy: tenancyAPI, auth: authAPI, quota: quotas}); err != nil {
		return err
	}
	a.router = r
	return nil
}

// allowedMethods lists the methods r has a route for at req's path.
func allowedMethods(r *mux.Router, req *http.Request) []string {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == req.Method {
			continue
		}
		probe := req.Clone(req.Context())
		probe.Method = m
		var match mux.RouteMatch
		if r.Match(probe, &match) && match.MatchErr == nil && match.Route != nil {
			allowed = append(allowed, m)
		}
	}
	return allowed
}

// Env is what each API package the app mounts (metrics, alerts, logs) gets.
type Env struct {
	// API is the /api/v1 router: routes on it sit behind user
	// authentication (auth.PrincipalFrom gives the caller) and the audit
	// log. Paths are relative to /api/v1.
	API *mux.Router
	// Root is for routes that authenticate themselves (agent-facing);
	// paths are absolute.
	Root *mux.Router
	// Fallback is tried after every other route: the place for a
	// catch-all such as the web console's PathPrefix("/").
	Fallback *mux.Router
	// Adapter writes replies and errors; use it for every route.
	Adapter *httpapi.Adapter
	// Authz answers "may this caller do that" with the app's one rule.
	Authz *tenancy.Authorizer
	// Etcd is the app's etcd client.
	Etcd       *clientv3.Client
	Registerer prometheus.Registerer
}

// registerOps mounts the operational endpoints, the same on every binary
// of the project (package ops). The web configuration's basic auth guards
// what scrapers and operators call, not the bearer-token API beside it
// (package webconfig).
func (a *App) registerOps(r *mux.Router) {
	ops.Endpoints{
		Name: "ecp", Gatherer: a.reg, Protect: a.web.Protect, Pprof: a.opts.EnablePprof,
		NotReady: func() string {
			switch {
			case !a.ready.Load():
				return "starting."
			case a.etcdDown.Load():
				return "etcd does not answer."
			case a.etcdAlarms.noSpace.Load():
				return noSpaceReason
			}
			if short := a.conns.Short(); short != "" {
				return short + "."
			}
			return ""
		},
		Reload: a.adapter.Handle(func(w http.ResponseWriter, req *http.Request) error {
			if err := a.Reload(req.Context()); err != nil {
				return &httpapi.Error{Status: http.StatusInternalServerError, Code: "ReloadFailed", Message: err.Error()}
			}
			return httpapi.JSON(w, http.StatusOK, map[string]string{"status": "reloaded"})
		}),
	}.Register(r)
}

// Addr is the address the HTTP server is bound to.
func (a *App) Addr() string { return a.ln.Addr().String() }

// URL is http://Addr, or https://Addr when the web configuration sets TLS.
func (a *App) URL() string { return a.web.Scheme() + "://" + a.Addr() }

// ExternalURL is the URL the registration commands name.
func (a *App) ExternalURL() string { return a.opts.ExternalURL }

// Handler is the app's router (tests walk it).
func (a *App) Handler() http.Handler { return a.router }

// Router is the app's router as gorilla/mux, for tests that walk routes.
func (a *App) Router() *mux.Router { return a.router }

// EtcdClient is the app's etcd client.
func (a *App) EtcdClient() *clientv3.Client { return a.cli }

// EtcdEndpoint is the embedded etcd's client URL ("" with external etcd),
// so another replica can share it.
func (a *App) EtcdEndpoint() string {
	if a.etcd == nil {
		return ""
	}
	return a.etcd.Endpoint()
}

// EtcdTLS names the embedded etcd's CA and client certificate files (zero
// with external etcd), which another replica sharing it needs.
func (a *App) EtcdTLS() etcdserver.TLSFiles {
	if a.etcd == nil {
		return etcdserver.TLSFiles{}
	}
	return a.etcd.ClientTLS()
}

// SecretsKey is the key sealing the secrets this replica stores in etcd.
func (a *App) SecretsKey() *seal.Key { return a.sealKey }

// Reload re-reads the configuration file; without one it does nothing. A
// failed reload keeps the configuration in force.
func (a *App) Reload(ctx context.Context) error {
	if a.opts.ConfigFile == "" {
		return nil
	}
	err := a.applyConfig()
	if err != nil {
		a.metrics.reloadOK.Set(0)
		a.logger.Error("reload configuration", "file", a.opts.ConfigFile, "err", err)
		return err
	}
	a.metrics.reloadOK.Set(1)
	a.metrics.reloadTime.SetToCurrentTime()
	l := a.ledger.Licence()
	a.logger.InfoContext(ctx, "configuration reloaded", "file", a.opts.ConfigFile, "totalConnections", l.TotalConnections, "maxPerCluster", l.MaxPerCluster)
	return nil
}

// applyConfig loads the config file into the options (before New has built
// anything) or into the running parts (on reload).
func (a *App) applyConfig() error {
	// POST /-/reload and SIGHUP may arrive together.
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	c, err := LoadConfig(a.opts.ConfigFile)
	if err != nil {
		return err
	}
	if c.Licence != nil {
		a.opts.Licence = *c.Licence
		if a.ledger != nil {
			if err := a.ledger.SetLicence(*c.Licence); err != nil {
				return err
			}
		}
	}
	if c.Registration != nil {
		a.opts.RegistrationTokenTTL = c.Registration.TokenTTL
		if a.clusters != nil {
			a.clusters.SetTokenTTL(c.Registration.TokenTTL)
		}
	}
	return nil
}

// Run serves until ctx ends or an actor fails, then stops the app. Every
// long-running loop is one actor of one run.Group.
func (a *App) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g run.Group
	g.Add(func() error {
		<-runCtx.Done()
		return nil
	}, func(error) { cancel() })
	g.Add(func() error {
		a.logger.Info("ecp listening", "address", a.Addr(), "externalUrl", a.opts.ExternalURL, "version", version.Version)
		if err := a.web.Serve(a.ln, a.srv); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	}, func(error) {
		a.ready.Store(false)
		a.shutdownHTTP(context.Background())
	})
	if a.runFleet != nil {
		g.Add(func() error { return a.runFleet(runCtx) }, func(error) { cancel() })
	}
	// The cluster lists and overview are served from the replica's mirror
	// of the records, kept current by its watch.
	g.Add(func() error { return a.records.Run(runCtx) }, func(error) { cancel() })
	// Credentials' users are checked against a mirror of their generations,
	// and access is decided from a mirror of the tenancy records.
	g.Add(func() error { a.users.RunMirror(runCtx, a.logger); return nil }, func(error) { cancel() })
	g.Add(func() error { a.authz.Store().RunMirror(runCtx, a.logger); return nil }, func(error) { cancel() })
	g.Add(func() error { return a.runAudit(runCtx) }, func(error) { cancel() })
	for _, runExt := range a.extensionRuns {
		g.Add(func() error { return runExt(runCtx) }, func(error) { cancel() })
	}
	g.Add(func() error {
		// Ready once the agent side is (it must have loaded its state
		// from etcd before it can answer agents correctly) and the
		// cluster lists have their index.
		if a.fleetReady != nil {
			select {
			case <-a.fleetReady:
			case <-runCtx.Done():
				return nil
			}
		}
		select {
		case <-a.records.Ready():
		case <-runCtx.Done():
			return nil
		}
		a.ready.Store(true)
		a.logger.Info("ecp ready")
		for {
			select {
			case <-runCtx.Done():
				return nil
			case <-a.opts.Reload:
				// Reload logs its own outcome and sets the metrics.
				_ = a.Reload(runCtx)
			}
		}
	}, func(error) { cancel() })
	g.Add(func() error {
		a.probeEtcd(runCtx)
		return nil
	}, func(error) { cancel() })
	if a.etcd != nil {
		g.Add(func() error {
			select {
			case err := <-a.etcd.Err():
				return fmt.Errorf("embedded etcd failed: %w", err)
			case <-runCtx.Done():
				return nil
			}
		}, func(error) { cancel() })
	}
	err := g.Run()
	return errors.Join(err, a.Stop(context.Background()))
}

// probeEtcd keeps etcdDown current until ctx ends.
func (a *App) probeEtcd(ctx context.Context) {
	t := time.NewTicker(a.opts.EtcdProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, a.opts.EtcdProbeInterval/2)
		_, err := a.cli.Get(pctx, "/ecp/probe", clientv3.WithCountOnly())
		if err == nil {
			a.etcdAlarms.check(pctx, a.cli, a.logger)
		}
		cancel()
		if down := err != nil && ctx.Err() == nil; down != a.etcdDown.Swap(down) {
			if down {
				a.logger.Error("etcd does not answer; reporting not ready", "err", err)
			} else {
				a.logger.Info("etcd answers again; reporting ready")
			}
		}
	}
}

func (a *App) shutdownHTTP(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, a.opts.ShutdownTimeout)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.logger.Warn("http shutdown did not finish in time; closing connections", "err", err)
		_ = a.srv.Close()
	}
}

// Stop tears the app down; it is idempotent and safe after a failed New.
// The order:
//  1. mark the replica not ready, so load balancers stop sending to it;
//  2. stop the HTTP server: no new requests, in-flight ones finish within
//     ShutdownTimeout, long-polls are ended after DefaultDrainGrace (Run
//     has usually done this and stopped the agent side's loop already);
//  3. close the etcd client, after everything that writes through it;
//  4. stop the embedded etcd member last, so every write above landed.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() {
		a.ready.Store(false)
		var errs []error
		if a.srv != nil {
			a.shutdownHTTP(ctx)
			a.cancelRequests()
		} else if a.ln != nil {
			errs = append(errs, ignoreClosed(a.ln.Close()))
		}
		if a.cli != nil {
			errs = append(errs, a.cli.Close())
		}
		if a.etcd != nil {
			a.etcd.Close()
		}
		a.stopErr = errors.Join(errs...)
	})
	return a.stopErr
}

func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
