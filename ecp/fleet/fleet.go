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
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
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
type Fleet struct {
	opts    Options
	cli     *clientv3.Client
	logger  *slog.Logger
	metrics *metrics
	adapter *httpapi.Adapter

	// silentAfter is SilentIntervals × ReportInterval.
	silentAfter time.Duration

	inflight chan struct{}
	waiters  chan struct{}
	// spread places agents registered in a burst in the interval.
	spread spreader

	readyOnce sync.Once
	ready     chan struct{}

	mu      sync.Mutex
	entries map[string]*entry
	// tally counts, per project, the entries in each state but created
	// (states.go), kept as specs and statuses change.
	tally map[string]*stateTally
	// heap orders bound agents by when they were last heard of.
	heap deadlineHeap
	// peers are the other replicas alive in etcd; digests are published
	// only when there is someone to read them.
	peers map[string]struct{}
	// told is, per other replica, when its latest digest was published;
	// publishingSince is since when this replica's own digests go through
	// (zero after a failure).
	told            map[string]time.Time
	publishingSince time.Time
	// idHolders maps each identity key to the cluster it names, so that a
	// key moving away tells that cluster to check again (identity.go).
	idHolders map[string]idHolder
	// session and election are set while this replica holds a session;
	// leader is set while it leads, graceUntil is when its sweeper may
	// first act.
	session    *concurrency.Session
	leader     *concurrency.Election
	graceUntil time.Time
	// observe, when set by RegisterObserved, sees every accepted report.
	observe ReportObserver
	// stopping is closed when Run's context ends: held long-polls then
	// answer 204 at once, so a graceful shutdown is not held for a minute
	// and agents re-poll another replica.
	stopping <-chan struct{}
	// applied is closed and replaced after every batch of watch events;
	// tests wait on it instead of sleeping.
	applied chan struct{}
	// heard lists the entries with heardLocal set, for the next digest.
	heard []*entry
	// digestChunks is how many chunk keys the previous digest used.
	digestChunks int
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
	f := &Fleet{
		opts:        opts,
		cli:         cli,
		logger:      logger,
		adapter:     opts.Adapter,
		silentAfter: agentproto.SilentIntervals * opts.ReportInterval,
		inflight:    make(chan struct{}, opts.MaxInFlight),
		waiters:     make(chan struct{}, opts.MaxWaiters),
		ready:       make(chan struct{}),
		entries:     map[string]*entry{},
		tally:       map[string]*stateTally{},
		peers:       map[string]struct{}{},
		told:        map[string]time.Time{},
		idHolders:   map[string]idHolder{},
		applied:     make(chan struct{}),
	}
	f.metrics = newMetrics(reg, f)
	if f.adapter == nil {
		f.adapter = httpapi.NewAdapter(logger, reg)
	}
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
	r.Handle(agentproto.PathRegister, f.adapter.Handle(f.limited(f.handleRegister), httpapi.BodyLimit(MaxAgentBody))).Methods(http.MethodPost)
	r.Handle(agentproto.PathReport, f.adapter.Handle(f.limited(f.handleReport), httpapi.BodyLimit(MaxAgentBody))).Methods(http.MethodPost)
	r.Handle(agentproto.PathUnregister, f.adapter.Handle(f.limited(f.handleUnregister))).Methods(http.MethodPost)
	r.Handle(agentproto.PathDesired, f.adapter.Handle(f.whenReady(f.handleDesired))).Methods(http.MethodGet)
	r.Handle(agentproto.PathDashboardSession, f.adapter.Handle(f.whenReady(f.limited(f.handleDashboardSession)))).Methods(http.MethodPost)
}

// Run loads fleet's state from etcd, keeps it current with one watch, takes
// part in the sweeper election and publishes digests. It returns nil when
// ctx ends, after closing its etcd session (which ends its leadership);
// held long-polls are answered 204 as soon as ctx ends.
func (f *Fleet) Run(ctx context.Context) error {
	f.mu.Lock()
	f.stopping = ctx.Done()
	f.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { f.watchLoop(ctx) })
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

// Ready is closed once the first load from etcd is done.
func (f *Fleet) Ready() <-chan struct{} { return f.ready }

func (f *Fleet) markReady() { f.readyOnce.Do(func() { close(f.ready) }) }

func (f *Fleet) waitReady(ctx context.Context) error {
	select {
	case <-f.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for fleet state to load: %w", ctx.Err())
	}
}

func (f *Fleet) now() time.Time { return f.opts.Now() }

func (f *Fleet) etcdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.opts.EtcdTimeout)
}

// whenReady answers 503 until the state is loaded: an agent must not be
// told its credential is revoked only because this replica just started.
func (f *Fleet) whenReady(h httpapi.HandlerFunc) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		select {
		case <-f.ready:
			return h(w, r)
		default:
			return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
				Message: "ecp is loading its state; retry later", RetryAfter: f.opts.RetryAfter}
		}
	}
}

// limited sheds load beyond MaxInFlight with 429: a reconnect storm gets
// told to come back (agents add jitter) instead of queueing until timeouts.
func (f *Fleet) limited(h httpapi.HandlerFunc) httpapi.HandlerFunc {
	h = f.whenReady(h)
	return func(w http.ResponseWriter, r *http.Request) error {
		select {
		case f.inflight <- struct{}{}:
			defer func() { <-f.inflight }()
			return h(w, r)
		default:
			f.metrics.throttled.Inc()
			return rateLimited(f.opts.RetryAfter, "too many agent requests in flight")
		}
	}
}

func rateLimited(after time.Duration, msg string) error {
	return &httpapi.Error{Status: http.StatusTooManyRequests, Code: agentproto.CodeRateLimited,
		Message: msg + "; retry after the Retry-After delay", RetryAfter: after}
}
