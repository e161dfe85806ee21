package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
)

// Defaults of Options.
const (
	DefaultTokenTTL    = 24 * time.Hour
	DefaultSessionTTL  = 10 * time.Second
	DefaultMaxInFlight = 512
	DefaultMaxWaiters  = 100_000
	DefaultRetryAfter  = 5 * time.Second
	DefaultSweepEvery  = time.Second
	DefaultEtcdTimeout = 5 * time.Second
	// DefaultDesiredWait is the long-poll bound when the agent gives none.
	DefaultDesiredWait = 30 * time.Second
)

// ErrUnknownCluster is returned for a cluster id that has no stored spec.
var ErrUnknownCluster = errors.New("fleet: unknown cluster")

// Options configure a Fleet. The zero value of every field means its default.
type Options struct {
	// ReportInterval is what agents are told to use; liveness allows
	// agentproto.SilentIntervals of it. Default agentproto.DefaultReportInterval.
	ReportInterval time.Duration
	// TokenTTL is the registration token lifetime when IssueRegistration
	// is given none. Default DefaultTokenTTL.
	TokenTTL time.Duration
	// ReplicaID names this replica in etcd (presence, digests, election).
	// Default: hostname, pid and a random suffix.
	ReplicaID string
	// SessionTTL is the etcd session lease: how fast the others notice that
	// this replica died. Default DefaultSessionTTL.
	SessionTTL time.Duration
	// MaxInFlight bounds concurrent register, report and unregister calls;
	// beyond it agents get 429 with Retry-After. Default DefaultMaxInFlight.
	MaxInFlight int
	// MaxWaiters bounds concurrent desired-state long-polls. Default
	// DefaultMaxWaiters.
	MaxWaiters int
	// RetryAfter is sent with 429 and 503. Default DefaultRetryAfter.
	RetryAfter time.Duration
	// SweepEvery is how often the leader pops expired liveness deadlines.
	// Default DefaultSweepEvery.
	SweepEvery time.Duration
	// EtcdTimeout bounds each etcd call. Default DefaultEtcdTimeout.
	EtcdTimeout time.Duration
	// Now is the clock; tests inject one. Default time.Now.
	Now func() time.Time
	// ProjectName resolves a project id to its name for messages that
	// name the entry holding a cluster (ClusterAlreadyManaged). Default:
	// the id is shown.
	ProjectName func(ctx context.Context, id string) (string, error)
	// Records is the replica's mirror of the cluster records; fleet has it
	// carry its own keys (registry.Mirror.Follow) and whoever made it runs
	// it. Default: fleet makes one and runs it in Run (tests, benchmarks).
	Records *registry.Mirror
	// Adapter writes replies and errors. Pass the app's adapter: an
	// httpapi.Adapter registers its latency histogram on a registerer once.
	// Default: a new adapter on the registerer given to New.
	Adapter *httpapi.Adapter
}

// DefaultOptions returns Options with every default filled in.
func DefaultOptions() Options {
	host, _ := os.Hostname()
	suffix, _ := randomPart()
	if len(suffix) > 6 {
		suffix = suffix[:6]
	}
	return Options{
		ReportInterval: agentproto.DefaultReportInterval,
		TokenTTL:       DefaultTokenTTL,
		ReplicaID:      fmt.Sprintf("%s-%d-%s", host, os.Getpid(), suffix),
		SessionTTL:     DefaultSessionTTL,
		MaxInFlight:    DefaultMaxInFlight,
		MaxWaiters:     DefaultMaxWaiters,
		RetryAfter:     DefaultRetryAfter,
		SweepEvery:     DefaultSweepEvery,
		EtcdTimeout:    DefaultEtcdTimeout,
		Now:            time.Now,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.ReportInterval <= 0 {
		o.ReportInterval = d.ReportInterval
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = d.TokenTTL
	}
	if o.ReplicaID == "" {
		o.ReplicaID = d.ReplicaID
	}
	if o.SessionTTL < time.Second {
		o.SessionTTL = d.SessionTTL
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = d.MaxInFlight
	}
	if o.MaxWaiters <= 0 {
		o.MaxWaiters = d.MaxWaiters
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = d.RetryAfter
	}
	if o.SweepEvery <= 0 {
		o.SweepEvery = d.SweepEvery
	}
	if o.EtcdTimeout <= 0 {
		o.EtcdTimeout = d.EtcdTimeout
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	return o
}

// Fleet is the agent gateway of one ecp replica. Every replica of ecp runs
// one; they share nothing but etcd.
//
// It is a composition of parts with one job each, wired in New (see the
// package doc's "Parts"); Fleet itself serves the agent API and writes the
// agent's state.
type Fleet struct {
	opts    Options
	cli     *clientv3.Client
	logger  *slog.Logger
	metrics *metrics
	adapter *httpapi.Adapter
	// report is the report route's handler, for Shortcut.
	report http.Handler
	// records carries fleet's keys with the records' (watch.go); Run runs
	// it when fleet made it (ownRecords).
	records    *registry.Mirror
	ownRecords bool
	// spread places agents registered in a burst in the interval.
	spread spreader

	*gate
	*memory
	*liveness
	*gossip
	*identities
	*dashboards
	*credentials

	// observe, when set by RegisterObserved, sees every accepted report;
	// memory's lock guards it.
	observe ReportObserver
}

// New returns a Fleet on cli. Nothing runs until Run.
func New(opts Options, cli *clientv3.Client, logger *slog.Logger, reg prometheus.Registerer) (*Fleet, error) {
	if cli == nil {
		return nil, errors.New("fleet: an etcd client is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	opts = opts.withDefaults()
	f := &Fleet{opts: opts, cli: cli, logger: logger, adapter: opts.Adapter, memory: newMemory(logger, opts.Now)}
	f.metrics = newMetrics(reg, f)
	if f.adapter == nil {
		f.adapter = httpapi.NewAdapter(logger, reg)
	}
	f.gate = newGate(opts, f.metrics.throttled)
	f.liveness = &liveness{memory: f.memory, interval: opts.ReportInterval,
		silentAfter: agentproto.SilentIntervals * opts.ReportInterval,
		replicaID:   opts.ReplicaID, leaderGauge: f.metrics.leader}
	f.gossip = &gossip{memory: f.memory, cli: cli, replicaID: opts.ReplicaID,
		etcdTimeout: opts.EtcdTimeout, etcdWrites: f.metrics.etcdWrites,
		peers: map[string]struct{}{}, told: map[string]time.Time{}}
	f.covered = f.coveredLocked
	f.identities = &identities{memory: f.memory, cli: cli, etcdTimeout: opts.EtcdTimeout,
		projectName: opts.ProjectName, etcdWrites: f.metrics.etcdWrites}
	f.dashboards = &dashboards{memory: f.memory, cli: cli, etcdTimeout: opts.EtcdTimeout, loaded: f.waitReady}
	f.credentials = &credentials{memory: f.memory, cli: cli, etcdTimeout: opts.EtcdTimeout,
		refused: f.metrics.refused, notLoaded: f.loading}
	f.live, f.digests, f.ids, f.dash = f.liveness, f.gossip, f.identities, f.dashboards
	// Only now that every part exists may the mirror deliver keys.
	if f.records = opts.Records; f.records == nil {
		f.records, f.ownRecords = registry.NewMirror(cli, logger), true
	}
	f.follow()
	return f, nil
}

// MaxAgentBody bounds a register or report body: a report lists every node
// of the cluster, so it keeps the 1 MiB every body had before routes had
// their own limits. The other agent calls carry a few fields and keep
// httpapi's default.
const MaxAgentBody = 1 << 20

// Register mounts the agent API (agentproto paths) on r. The write and logs
// paths belong to other packages.
func (f *Fleet) Register(r *mux.Router) {
	f.report = f.adapter.Handle(f.whenReady(f.handleReport), httpapi.BodyLimit(MaxAgentBody), httpapi.Route(agentproto.PathReport))
	r.Handle(agentproto.PathRegister, f.adapter.Handle(f.limited(f.handleRegister), httpapi.BodyLimit(MaxAgentBody))).Methods(http.MethodPost)
	r.Handle(agentproto.PathReport, f.report).Methods(http.MethodPost)
	r.Handle(agentproto.PathUnregister, f.adapter.Handle(f.limited(f.handleUnregister))).Methods(http.MethodPost)
	r.Handle(agentproto.PathDesired, f.adapter.Handle(f.whenReady(f.handleDesired))).Methods(http.MethodGet)
	r.Handle(agentproto.PathDashboardSession, f.adapter.Handle(f.whenReady(f.limited(f.handleDashboardSession)))).Methods(http.MethodPost)
}

// Shortcut serves agent reports (POST agentproto.PathReport) with the
// handler Register mounted for them, and every other request through next,
// the router Register mounted them on; call it after Register.
//
// The report is the request ecp serves most, one per agent per interval,
// and gorilla/mux's match copies each request twice to put the route and
// its variables in its context: about 850 B and 7 of the 25 allocations of
// a held report (BenchmarkReport). The report's route has neither variables
// nor middleware and names its template itself (httpapi.Route), so its
// replies, metrics and logs are the same either way; any other method or
// path, one mux would clean included, still gets mux's answer.
func (f *Fleet) Shortcut(next http.Handler) http.Handler {
	report := f.report
	if report == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == agentproto.PathReport {
			report.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Run takes part in the sweeper election and publishes digests; fleet's
// state is loaded and kept current by the records mirror (Options.Records),
// which Run also runs when fleet made it. It returns nil when
// ctx ends, after closing its etcd session (which ends its leadership);
// held long-polls are answered 204 as soon as ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		f.stop()
	})
	if f.ownRecords {
		wg.Go(func() { _ = f.records.Run(ctx) })
	}
	wg.Go(func() { f.sessionLoop(ctx) })
	wg.Go(func() { f.tickLoop(ctx, f.opts.SweepEvery, f.sweep) })
	wg.Go(func() { f.tickLoop(ctx, f.opts.ReportInterval/2, f.publishDigest) })
	wg.Wait()
	return nil
}

// tickLoop calls fn every period until ctx ends.
func (f *Fleet) tickLoop(ctx context.Context, period time.Duration, fn func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

func (f *Fleet) etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.opts.EtcdTimeout)
}
