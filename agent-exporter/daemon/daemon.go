package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/enforce"
	"github.com/ecpio/ecp/agent-exporter/remotewrite"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/internal/version"
)

// App is a running agent: a composition of parts with one job each, which
// its loops drive. The server answers HTTP; sessions holds the
// registration in force and signals its changes; reporter schedules the
// collection and holds the reports for ecp; the collector, enforcer and
// remote-write sender act on each tick; logs and dash serve the session's
// log collection and dashboard jumps; life is Run's and Stop's contract.
type App struct {
	opts Options
	log  *slog.Logger
	dir  *state.Dir
	srv  *server
	life *lifecycle
	m    *metrics

	sess *sessions
	rep  *reporter
	col  *collector.Collector
	enf  *enforce.Enforcer
	rw   *remotewrite.Sender
	logs *logControl
	dash *dashboards

	// regMu serialises register and unregister.
	regMu sync.Mutex
	// sends is when the collection loop next sends to ecp (and wakes it).
	sends *sendSchedule
}

// metrics are the agent's own series beside the reports' (reporter) and
// the registration's (sessions).
type metrics struct {
	reloadOK, reloadTime prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agent_exporter_build_info",
		Help: "Build of the running agent; always 1.",
	}, []string{"version", "revision"}).WithLabelValues(version.Version, version.Revision).Set(1)
	return &metrics{
		reloadOK: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_config_last_reload_successful", Help: "Whether the last configuration reload succeeded.",
		}),
		reloadTime: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_config_last_reload_success_timestamp_seconds", Help: "When the configuration was last loaded, as a Unix time.",
		}),
	}
}

// New checks opts, opens the state directory and binds the listener, so
// Addr is known before Run.
func New(opts Options) (*App, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	a := &App{
		opts:  opts,
		log:   opts.Logger,
		life:  newLifecycle(),
		m:     newMetrics(opts.Registerer),
		sess:  newSessions(opts.Registerer),
		rep:   newReporter(opts),
		col:   collector.New(opts.Now),
		sends: newSendSchedule(),
	}
	a.enf = enforce.New(opts.Logger.With("component", "enforce"), opts.Registerer)
	if err := opts.Registerer.Register(collector.NewExporter(a.col)); err != nil {
		return nil, fmt.Errorf("registering the emqx exporter: %w", err)
	}
	// Remote write pushes the series of the same snapshot /metrics serves,
	// gathered by the exporter itself (cheaper than a registry's checks),
	// in the memory of the previous push (only the tick pushes).
	rw, err := remotewrite.New(remotewrite.Options{Gatherer: collector.NewPushGatherer(a.col), Timeout: opts.HTTPTimeout + opts.queued(),
		BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax, Now: opts.Now, MaxSeries: opts.RemoteWriteMaxSeries},
		opts.Logger.With("component", "remotewrite"), opts.Registerer)
	if err != nil {
		return nil, err
	}
	a.rw = rw
	if opts.ConfigFile != "" {
		if err := a.applyConfig(); err != nil {
			return nil, err
		}
	}
	if a.srv, err = newServer(opts.WebConfigFile, opts.Logger.With("component", "web")); err != nil {
		return nil, err
	}
	dir, err := state.Open(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir %s (--state.dir): %w", opts.StateDir, err)
	}
	a.dir = dir
	a.dash = &dashboards{now: opts.Now, timeout: opts.HTTPTimeout, log: opts.Logger, dir: dir}
	a.logs = newLogControl(opts, dir.Path(), a.col.Latest)
	if err := a.srv.listen(opts.ListenAddress, a.routes()); err != nil {
		return nil, err
	}
	return a, nil
}

// Addr is the address the daemon serves on.
func (a *App) Addr() string { return a.srv.addr() }

// Run serves until ctx ends or Stop is called. Actors, in one run.Group:
// the HTTP server, the collection loop (collect, enforce, report) and the
// desired-state long-poll.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := a.life.begin(ctx); err != nil {
		return err
	}
	defer a.life.finish()

	if reg, err := a.dir.LoadRegistration(); err == nil {
		if err := a.resume(reg); err != nil {
			a.log.Error("cannot resume the saved registration", "err", err)
		}
	} else if !errors.Is(err, state.ErrNotRegistered) {
		a.log.Error("cannot read the saved registration", "err", err)
	}
	if e, ok := a.dir.LoadEnded(); ok {
		a.sess.restoreEnded(e)
	}
	if err := a.dir.SaveControl(a.srv.control()); err != nil {
		_ = a.srv.ln.Close()
		return fmt.Errorf("publishing the control file: %w", err)
	}

	var g run.Group
	g.Add(a.srv.serve, func(error) { a.srv.shutdown() })
	g.Add(func() error { return a.collectLoop(ctx) }, func(error) { cancel() })
	g.Add(func() error { a.desiredLoop(ctx); return nil }, func(error) { cancel() })
	g.Add(func() error { return a.rw.Run(ctx) }, func(error) { cancel() })
	g.Add(func() error {
		select {
		case <-ctx.Done():
		case <-a.life.stopping():
		}
		return nil
	}, func(error) { cancel() })

	a.srv.ready.Store(true)
	a.log.Info("agent started", "version", version.Version, "listen", a.Addr(), "stateDir", a.dir.Path())
	fmt.Fprintf(a.opts.Stdout, "EMQX Agent %s is running!\n", version.Version)
	err := g.Run()

	// Teardown order: HTTP is already shut (first actor), loops have
	// returned; now end the session's calls and withdraw the control file
	// so the CLI says "not running" instead of timing out.
	a.srv.ready.Store(false)
	a.logs.stop(true)
	a.dir.RemoveControl()
	if s, _ := a.sess.current(); s != nil {
		s.close()
	}
	// Dashboard answers end with the session's context.
	a.dash.wait()
	a.log.Info("agent stopped")
	return err
}

// Stop ends Run and waits for it, bounded by ctx. It is idempotent and
// safe before Run (it then only closes the listener).
func (a *App) Stop(ctx context.Context) error {
	if a.life.halt() {
		return a.srv.ln.Close()
	}
	if err := a.life.wait(ctx); err != nil {
		return fmt.Errorf("stopping the agent: %w", err)
	}
	return nil
}

// Reload re-reads the configuration file.
func (a *App) Reload() error {
	if a.opts.ConfigFile == "" {
		a.m.reloadOK.Set(1)
		return nil
	}
	err := a.applyConfig()
	if err != nil {
		a.log.Error("configuration reload failed; keeping the previous one", "err", err)
	}
	return err
}

func (a *App) applyConfig() error {
	c, err := LoadConfig(a.opts.ConfigFile)
	if err != nil {
		a.m.reloadOK.Set(0)
		return err
	}
	r, _ := c.resolve()
	a.rep.setFileInterval(r.interval)
	if r.level != nil && a.opts.LogLevel != nil {
		a.opts.LogLevel.Set(*r.level)
	}
	a.m.reloadOK.Set(1)
	a.m.reloadTime.Set(float64(a.opts.Now().Unix()))
	a.wake()
	return nil
}

func (a *App) wake() { a.sends.wake() }

// newSession builds the clients of a registration. ec may be given when
// register already logged in with it.
func (a *App) newSession(reg state.Registration, ec *emqx.Client) (*session, error) {
	return newSession(a.life.runContext(), reg, ec, a.opts.HTTPTimeout, a.opts.DesiredWait, a.opts.ECPHTTP2)
}

func (a *App) resume(reg state.Registration) error {
	s, err := a.newSession(reg, nil)
	if err != nil {
		return err
	}
	a.install(s)
	a.log.Info("resumed registration", "clusterId", reg.ClusterID, "ecpUrl", reg.ECPURL)
	return nil
}

// install makes s the session in force.
func (a *App) install(s *session) {
	// Point the collector at EMQX before the session is visible: a
	// collection woken by the new session (its desired state, a report)
	// must not run without EMQX and have its empty snapshot reported,
	// since the next report comes only an interval later. The reports
	// start before too, so the first tick of s finds its own.
	a.col.SetAPI(s.reads)
	a.rep.start(s)
	a.sess.install(s)
	a.rw.Reset()
	a.logs.apply(s, s.reg.LogCollection)
	a.wake()
}

// endSession forgets the registration s, if it is still the one in force.
func (a *App) endSession(s *session, reason string) {
	e := state.Ended{At: a.opts.Now().UTC(), Reason: reason, ClusterID: s.reg.ClusterID}
	if !a.sess.end(s, e, a.forget) {
		return
	}
	a.rep.stop(s)
	a.logs.stop(false)
	s.close()
	a.rw.Reset()
	a.col.SetAPI(nil)
	a.enf.Reset()
	a.log.Warn("registration ended", "clusterId", s.reg.ClusterID, "reason", reason)
}

// forget removes an ended registration from the state directory.
func (a *App) forget(e state.Ended) {
	if err := a.dir.EndRegistration(e); err != nil {
		a.log.Error("cannot remove the registration from the state dir", "err", err)
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func secondsDuration(n int) time.Duration { return time.Duration(n) * time.Second }
