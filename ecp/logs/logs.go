// Package logs is ecp's log API: it takes the EMQX log batches agents ship
// (POST /api/v1/agent/logs), holds the system log-receiver setting
// (GET/PUT /api/v1/system/log-receiver, POST …/test) and answers log
// queries scoped to the caller's projects (GET /api/v1/projects/{project}/logs
// and …/logs/count). Storage and query languages are ecp/logstore's.
//
// # Ingestion
//
// The agent's credential names the cluster; the entry's current project is
// read from fleet at every batch, so after a transfer lines carry the new
// project. ecp stamps project and cluster itself: nothing in the batch can
// choose a tenant. A batch is acknowledged (200 with the accepted count)
// only after logstore.Writer.Write returned, that is after the store took
// every line (or refused some for good, which is logged per line and
// counted). Otherwise the agent gets 429 (ecp or the store shed load) or
// 503 (store unreachable, failing, or no receiver configured: code
// LogReceiverNotConfigured) with Retry-After, and keeps the lines.
//
// # The receiver setting
//
// The setting is stored in etcd at ReceiverKey, password included, sealed
// with Options.Seal (a setting an older ecp stored in clear is sealed when
// New loads it); the API never returns the password, only whether one is
// set. A PUT is saved only after
// the connection test passed. Every replica watches the key, so a change
// made on one applies on all within the watch's latency.
package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/logstore"
	"github.com/ecpio/ecp/ecp/seal"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// ReceiverKey is the etcd key of the log-receiver setting.
const ReceiverKey = "/ecp/logs/receiver"

// Defaults of Options.
const (
	DefaultMaxBatchBytes = 16 << 20
	DefaultMaxBatchLines = 20000
	// DefaultNotConfiguredRetryAfter is what agents are told to wait while
	// no receiver is configured: long enough not to load ecp, short enough
	// that logs flow soon after the admin configured one.
	DefaultNotConfiguredRetryAfter = 30 * time.Second
	DefaultQueryTimeout            = 30 * time.Second
	// DefaultWriteTimeout bounds one batch's write to the store, retries
	// included; it is not tied to the agent's request (see handleIngest).
	DefaultWriteTimeout = time.Minute
)

// Error codes of this API.
const (
	// CodeNotConfigured: no log receiver is configured; the agent keeps its
	// lines and retries after Retry-After.
	CodeNotConfigured = "LogReceiverNotConfigured"
	// CodeStoreUnavailable: the store cannot take or answer now.
	CodeStoreUnavailable = "LogStoreUnavailable"
	// CodeTestFailed: the connection test of a receiver failed.
	CodeTestFailed = "LogReceiverTestFailed"
)

// AuthenticateAgent authenticates an agent request and returns the cluster
// its credential is bound to and the entry's current project
// (fleet.Fleet.AuthenticateAgent). Errors are httpapi errors.
type AuthenticateAgent func(r *http.Request) (clusterID, project string, err error)

// Options configure the API.
type Options struct {
	// Writer configures the store writer; Logger and Registerer are set
	// by New.
	Writer logstore.WriterOptions
	// MaxBatchBytes and MaxBatchLines bound one agent batch.
	MaxBatchBytes int64
	MaxBatchLines int
	// NotConfiguredRetryAfter is the Retry-After while no receiver is set.
	NotConfiguredRetryAfter time.Duration
	// QueryTimeout bounds one query to the store.
	QueryTimeout time.Duration
	// WriteTimeout bounds one batch's write to the store.
	WriteTimeout time.Duration
	// Transport replaces the HTTP transport to the store (tests).
	Transport http.RoundTripper
	// Seal seals the stored setting (it holds the store's password).
	// Required.
	Seal *seal.Key
}

// DefaultOptions returns the defaults above.
func DefaultOptions() Options {
	return Options{
		Writer:        logstore.DefaultWriterOptions(),
		MaxBatchBytes: DefaultMaxBatchBytes, MaxBatchLines: DefaultMaxBatchLines,
		NotConfiguredRetryAfter: DefaultNotConfiguredRetryAfter, QueryTimeout: DefaultQueryTimeout,
		WriteTimeout: DefaultWriteTimeout,
	}
}

// API serves the log routes. Safe for concurrent use.
type API struct {
	opts   Options
	cli    *clientv3.Client
	authz  *tenancy.Authorizer
	agents AuthenticateAgent
	logger *slog.Logger
	writer *logstore.Writer

	// mu serialises applying configurations (PUT and the watch).
	mu      sync.Mutex
	rev     int64 // etcd mod revision of the applied setting
	cfg     atomic.Pointer[logstore.ReceiverConfig]
	querier atomic.Pointer[logstore.Querier]

	m *metrics
}

type metrics struct {
	batches  *prometheus.CounterVec
	lines    prometheus.Counter
	rejected prometheus.Counter
}

// New builds the API and loads the stored setting from etcd.
func New(ctx context.Context, opts Options, cli *clientv3.Client, authz *tenancy.Authorizer, agents AuthenticateAgent,
	logger *slog.Logger, reg prometheus.Registerer) (*API, error) {
	if cli == nil || authz == nil || agents == nil || logger == nil || reg == nil || opts.Seal == nil {
		return nil, errors.New("logs: etcd client, authorizer, agent authenticator, logger, registerer and Options.Seal are required")
	}
	def := DefaultOptions()
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = def.MaxBatchBytes
	}
	if opts.MaxBatchLines <= 0 {
		opts.MaxBatchLines = def.MaxBatchLines
	}
	if opts.NotConfiguredRetryAfter <= 0 {
		opts.NotConfiguredRetryAfter = def.NotConfiguredRetryAfter
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = def.QueryTimeout
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = def.WriteTimeout
	}
	wo := opts.Writer
	wo.Logger, wo.Registerer = logger, reg
	if wo.Transport == nil {
		wo.Transport = opts.Transport
	}
	w, err := logstore.NewWriter(wo)
	if err != nil {
		return nil, err
	}
	f := promauto.With(reg)
	a := &API{opts: opts, cli: cli, authz: authz, agents: agents, logger: logger, writer: w, m: &metrics{
		batches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_log_batches_received_total", Help: "Agent log batches received, by outcome (stored, duplicate, backpressure, not_configured, failed, invalid).",
		}, []string{"outcome"}),
		lines: f.NewCounter(prometheus.CounterOpts{
			Name: "ecp_log_lines_acknowledged_total", Help: "Log lines acknowledged to agents as stored.",
		}),
		rejected: f.NewCounter(prometheus.CounterOpts{
			Name: "ecp_log_lines_rejected_total", Help: "Log lines the store refused for good (logged one by one).",
		}),
	}}
	if _, err := a.reload(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// Register mounts the user routes on api (the /api/v1 router, behind user
// authentication) and the agent route on root (absolute paths).
func (a *API) Register(api, root *mux.Router, ad *httpapi.Adapter) {
	root.Handle(agentproto.PathLogs, ad.Handle(a.handleIngest, httpapi.BodyLimit(a.opts.MaxBatchBytes))).Methods(http.MethodPost)
	api.Handle("/system/log-receiver", ad.Handle(a.handleGetReceiver)).Methods(http.MethodGet)
	api.Handle("/system/log-receiver", ad.Handle(a.handlePutReceiver)).Methods(http.MethodPut)
	api.Handle("/system/log-receiver/test", ad.Handle(a.handleTestReceiver)).Methods(http.MethodPost)
	api.Handle("/projects/{project}/logs", ad.Handle(a.handleQuery)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/logs/count", ad.Handle(a.handleCount)).Methods(http.MethodGet)
}

// Run watches the stored setting until ctx ends, so a change made through
// another replica applies here too.
func (a *API) Run(ctx context.Context) error {
	defer a.close()
	for {
		a.mu.Lock()
		rev := a.rev
		a.mu.Unlock()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range a.cli.Watch(wctx, ReceiverKey, clientv3.WithRev(rev+1)) {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				var cfg logstore.ReceiverConfig
				if ev.Type == clientv3.EventTypePut {
					c, _, err := a.openReceiver(ev.Kv.Value)
					if err != nil {
						a.logger.Error("stored log receiver is unreadable; keeping the current one", "err", err)
						continue
					}
					cfg = c
				}
				a.apply(cfg, ev.Kv.ModRevision)
			}
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		// The watch broke (compaction, leader loss): read the key afresh.
		if _, err := a.reload(ctx); err != nil {
			a.logger.Warn("cannot reload the log receiver setting", "err", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

func (a *API) close() {
	a.writer.Close()
	if q := a.querier.Load(); q != nil {
		q.Close()
	}
}

// reload reads the stored setting and applies it.
func (a *API) reload(ctx context.Context) (logstore.ReceiverConfig, error) {
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := a.cli.Get(cctx, ReceiverKey)
	if err != nil {
		return logstore.ReceiverConfig{}, fmt.Errorf("read log receiver setting: %w", err)
	}
	var cfg logstore.ReceiverConfig
	rev := resp.Header.Revision
	if len(resp.Kvs) == 1 {
		stored := resp.Kvs[0]
		var sealed bool
		if cfg, sealed, err = a.openReceiver(stored.Value); err != nil {
			return logstore.ReceiverConfig{}, err
		}
		if !sealed {
			// Written in clear by an ecp before sealing: seal it now,
			// unless someone changed it meanwhile (then it is sealed).
			val, err := a.sealReceiver(cfg)
			if err != nil {
				return logstore.ReceiverConfig{}, err
			}
			if _, err := a.cli.Txn(cctx).If(clientv3.Compare(clientv3.ModRevision(ReceiverKey), "=", stored.ModRevision)).
				Then(clientv3.OpPut(ReceiverKey, val)).Commit(); err != nil {
				return logstore.ReceiverConfig{}, fmt.Errorf("seal stored log receiver setting: %w", err)
			}
			a.logger.Info("sealed the log receiver setting an older ecp stored in clear")
		}
	}
	a.apply(cfg, rev)
	return cfg, nil
}

// sealReceiver encodes cfg, password included, sealed for ReceiverKey.
func (a *API) sealReceiver(cfg logstore.ReceiverConfig) (string, error) {
	b, err := cfg.MarshalStored()
	if err != nil {
		return "", err
	}
	return a.opts.Seal.Seal(ReceiverKey, b), nil
}

// openReceiver decodes a stored setting; sealed is false for one an older
// ecp wrote in clear.
func (a *API) openReceiver(stored []byte) (cfg logstore.ReceiverConfig, sealed bool, err error) {
	b, sealed, err := a.opts.Seal.Open(ReceiverKey, stored)
	if err != nil {
		return cfg, sealed, err
	}
	cfg, err = logstore.UnmarshalStored(b)
	return cfg, sealed, err
}

// apply makes cfg the receiver unless a newer revision is applied already.
func (a *API) apply(cfg logstore.ReceiverConfig, rev int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev < a.rev {
		return
	}
	a.rev = rev
	if cur := a.cfg.Load(); cur != nil && *cur == cfg {
		return
	}
	if cfg == (logstore.ReceiverConfig{}) {
		_ = a.writer.Configure(cfg)
		a.cfg.Store(nil)
		if old := a.querier.Swap(nil); old != nil {
			old.Close()
		}
		return
	}
	q, err := logstore.NewQuerier(cfg, logstore.QuerierOptions{Transport: a.opts.Transport, Timeout: a.opts.QueryTimeout})
	if err == nil {
		err = a.writer.Configure(cfg)
	}
	if err != nil {
		a.logger.Error("stored log receiver is invalid; keeping the current one", "err", err)
		return
	}
	a.cfg.Store(&cfg)
	if old := a.querier.Swap(q); old != nil {
		old.Close()
	}
	a.logger.Info("log receiver configured", "type", cfg.Type, "url", cfg.URL)
}

func notConfigured(retryAfter time.Duration) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: CodeNotConfigured, RetryAfter: retryAfter,
		Message: "no log receiver is configured; a system admin sets one with PUT /api/v1/system/log-receiver"}
}
