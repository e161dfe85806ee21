// Package daemon is the embeddable agent: it polls EMQX, serves /metrics
// and the local control API, registers with ecp when asked, reports every
// interval, long-polls ecp for the desired state and enforces it on EMQX.
// `agent-exporter run` is a thin wrapper around it; tests start it
// in-process on 127.0.0.1:0.
package daemon

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agent-exporter/remotewrite"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
)

// Defaults shared by the flags and DefaultOptions.
const (
	DefaultListenAddress   = "127.0.0.1:9733"
	DefaultCollectInterval = 15 * time.Second
	DefaultStateDir        = state.DefaultDir
	DefaultHTTPTimeout     = 10 * time.Second
	DefaultDesiredWait     = 30 * time.Second
	DefaultReportBuffer    = 4
	DefaultBackoffBase     = time.Second
	DefaultBackoffMax      = agentproto.ReconnectBackoffMax
	shutdownTimeout        = 5 * time.Second
)

// DefaultRemoteWriteMaxSeries caps one push (--remote-write.max-series).
const DefaultRemoteWriteMaxSeries = remotewrite.DefaultMaxSeries

// Options configure a daemon.
type Options struct {
	// ListenAddress serves /metrics, the probes and the control API. It
	// should stay on loopback: the control API carries EMQX passwords.
	ListenAddress string
	// WebConfigFile is an optional web configuration file in the format of
	// github.com/prometheus/exporter-toolkit: TLS for the whole listener
	// (the CLI pins its certificate), basic auth for /metrics and
	// POST /-/reload; the control API keeps its own token (package
	// webconfig).
	WebConfigFile string
	// EnablePprof serves net/http/pprof under /debug/pprof/, behind the
	// web configuration's basic auth (package ops).
	EnablePprof bool
	// StateDir holds the registration and the control file.
	StateDir string
	// CollectInterval is how often EMQX is polled (and drift corrected).
	CollectInterval time.Duration
	// FollowECPInterval makes CollectInterval a starting value only: once
	// ecp sends its report interval (at registration and in every report
	// reply) the agent collects at that interval, so that ecp's alert
	// rules and liveness see the samples they are built for. The CLI sets
	// it when the operator did not pin --collect.interval; a
	// collectInterval in the configuration file pins it too.
	FollowECPInterval bool
	// ConfigFile is an optional YAML file (see Config); reloaded by
	// POST /-/reload and Reload.
	ConfigFile string
	// HTTPTimeout bounds one call to EMQX or ecp.
	HTTPTimeout time.Duration
	// DesiredWait is how long one desired-state long-poll may be held.
	DesiredWait time.Duration
	// ECPHTTP2 makes the agent's one connection to ecp HTTP/2, on which
	// calls run beside the held long-poll (--ecp.http2). By default it is
	// HTTP/1.1, on which calls take turns: each poll is held only until
	// just before the next tick, whose report, remote write and log
	// batches go out between two polls. ecp then grows by about a quarter
	// of the memory an HTTP/2 agent costs it (docs/scaling.md); both cost
	// it one descriptor per agent.
	ECPHTTP2 bool
	// ReportBuffer is how many reports are kept while ecp is unreachable;
	// older ones are dropped and counted.
	ReportBuffer int
	// BackoffBase and BackoffMax shape the jittered exponential backoff
	// towards ecp.
	BackoffBase, BackoffMax time.Duration
	// RemoteWriteMaxSeries caps the series pushed per collection (0: no
	// cap); see remotewrite.Options.MaxSeries.
	RemoteWriteMaxSeries int

	// Logger is required; LogLevel, when set, is changed by a reload.
	Logger   *slog.Logger
	LogLevel *slog.LevelVar
	// Registerer and Gatherer are required (normally one registry).
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Stdout receives the one "is running" line.
	Stdout io.Writer
	// Now is injected for tests; nil means time.Now.
	Now func() time.Time
}

// DefaultOptions returns the options of a production daemon, without the
// injected dependencies (Logger, Registerer, Gatherer).
func DefaultOptions() Options {
	return Options{
		ListenAddress:   DefaultListenAddress,
		StateDir:        DefaultStateDir,
		CollectInterval: DefaultCollectInterval,
		HTTPTimeout:     DefaultHTTPTimeout,
		DesiredWait:     DefaultDesiredWait,
		ReportBuffer:    DefaultReportBuffer,
		BackoffBase:     DefaultBackoffBase,
		BackoffMax:      DefaultBackoffMax,
		Stdout:          io.Discard,

		RemoteWriteMaxSeries: DefaultRemoteWriteMaxSeries,
	}
}

// queued is how long a call to ecp may wait for its turn on the
// connection: a held poll's longest hold on HTTP/1.1, none on HTTP/2.
func (o *Options) queued() time.Duration {
	if o.ECPHTTP2 {
		return 0
	}
	return o.DesiredWait
}

func (o *Options) validate() error {
	var errs []error
	if o.Logger == nil {
		errs = append(errs, errors.New("daemon: Options.Logger is required"))
	}
	if o.Registerer == nil || o.Gatherer == nil {
		errs = append(errs, errors.New("daemon: Options.Registerer and Options.Gatherer are required"))
	}
	if o.ListenAddress == "" {
		errs = append(errs, errors.New("daemon: Options.ListenAddress is required"))
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("daemon: Options.StateDir is required"))
	}
	if o.CollectInterval <= 0 {
		errs = append(errs, errors.New("daemon: Options.CollectInterval must be positive"))
	}
	if o.HTTPTimeout <= 0 || o.DesiredWait <= 0 || o.BackoffBase <= 0 || o.BackoffMax < o.BackoffBase {
		errs = append(errs, errors.New("daemon: timeouts and backoff must be positive (BackoffMax ≥ BackoffBase)"))
	}
	if o.RemoteWriteMaxSeries < 0 {
		errs = append(errs, errors.New("daemon: Options.RemoteWriteMaxSeries must be 0 (no cap) or more"))
	}
	if o.ReportBuffer < 1 {
		errs = append(errs, errors.New("daemon: Options.ReportBuffer must be at least 1"))
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return errors.Join(errs...)
}
