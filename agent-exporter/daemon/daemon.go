package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/enforce"
	"github.com/ecpio/ecp/agent-exporter/remotewrite"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
	"github.com/ecpio/ecp/internal/version"
)

// session is one registration in force: the clients built from it and a
// context that ends with it, so unregister or revocation cancels every
// call it has in flight.
type session struct {
	reg  state.Registration
	emqx *emqx.Client
	// reads is emqx as the collection loop uses it: one licence read per
	// tick for the enforcer and the collector.
	reads *tickReads
	ecp   *ecpclient.Client
	poll  *ecpclient.Client // same ecp, with a client timeout above DesiredWait
	push  *remotewrite.Target
	// toECP carries every call to ecp, the log shipper's too.
	toECP  *transport.ECP
	hcs    []*http.Client
	ctx    context.Context
	cancel context.CancelFunc
	// firstReport is when, after registering, ecp asked for the first
	// report (agentproto.RegisterResponse.FirstReportDelayMillis).
	firstReport time.Duration
}

func (s *session) close() {
	s.cancel()
	for _, hc := range s.hcs {
		hc.CloseIdleConnections()
	}
}

// App is a running agent.
type App struct {
	opts   Options
	log    *slog.Logger
	dir    *state.Dir
	srv    *server
	col    *collector.Collector
	enf    *enforce.Enforcer
	rw     *remotewrite.Sender
	logs   *logControl
	m      *metrics
	runCtx context.Context

	// regMu serialises register and unregister.
	regMu sync.Mutex

	// mu guards sess, changed, ended, iv and rep.
	mu      sync.Mutex
	sess    *session
	changed chan struct{} // closed and replaced when sess changes
	ended   *state.Ended
	iv      intervals
	rep     reports

	// dash answers dashboard session requests (dashboard.go).
	dash dashboards

	kick     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	started  atomic.Bool
}

type metrics struct {
	sent, failures, dropped prometheus.Counter
	buffered, registered    prometheus.Gauge
	reloadOK, reloadTime    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "agent_exporter_build_info",
		Help: "Build of the running agent; always 1.",
	}, []string{"version", "revision"}).WithLabelValues(version.Version, version.Revision).Set(1)
	return &metrics{
		sent: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_reports_sent_total", Help: "Reports ecp accepted.",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_report_failures_total", Help: "Report attempts that failed (ecp unreachable, refused, rate limited).",
		}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_reports_dropped_total", Help: "Reports dropped unsent because the buffer was full while ecp was unreachable.",
		}),
		buffered: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_reports_buffered", Help: "Reports waiting to be sent to ecp.",
		}),
		registered: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_registered", Help: "Whether the agent holds a credential of ecp.",
		}),
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
		opts:    opts,
		log:     opts.Logger,
		col:     collector.New(opts.Now),
		iv:      intervals{flag: opts.CollectInterval, follow: opts.FollowECPInterval, current: opts.CollectInterval},
		rep:     reports{limit: opts.ReportBuffer, backoff: backoff.Backoff{Base: opts.BackoffBase, Max: opts.BackoffMax}},
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	a.m = newMetrics(opts.Registerer)
	a.enf = enforce.New(opts.Logger.With("component", "enforce"), opts.Registerer)
	if err := opts.Registerer.Register(collector.NewExporter(a.col)); err != nil {
		return nil, fmt.Errorf("registering the emqx exporter: %w", err)
	}
	// Remote write pushes the series of the same snapshot /metrics serves,
	// gathered by the exporter itself (cheaper than a registry's checks),
	// in the memory of the previous push (only the tick pushes).
	rw, err := remotewrite.New(remotewrite.Options{Gatherer: collector.NewPushGatherer(a.col), Timeout: opts.HTTPTimeout,
		BackoffBase: opts.BackoffBase, BackoffMax: opts.BackoffMax, Now: opts.Now, MaxSeries: opts.RemoteWriteMaxSeries},
		opts.Logger.With("component", "remotewrite"), opts.Registerer)
	if err != nil {
		return nil, err
	}
	a.rw = rw
	a.logs = newLogControl(a)
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
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("daemon: Run called twice")
	}
	defer close(a.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.runCtx = ctx

	if reg, err := a.dir.LoadRegistration(); err == nil {
		if err := a.resume(reg); err != nil {
			a.log.Error("cannot resume the saved registration", "err", err)
		}
	} else if !errors.Is(err, state.ErrNotRegistered) {
		a.log.Error("cannot read the saved registration", "err", err)
	}
	if e, ok := a.dir.LoadEnded(); ok {
		a.mu.Lock()
		if a.sess == nil {
			a.ended = &e
		}
		a.mu.Unlock()
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
		case <-a.stop:
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
	a.mu.Lock()
	if a.sess != nil {
		a.sess.close()
	}
	a.mu.Unlock()
	// Dashboard answers end with the session's context.
	a.dash.wg.Wait()
	a.log.Info("agent stopped")
	return err
}

// Stop ends Run and waits for it, bounded by ctx. It is idempotent and
// safe before Run (it then only closes the listener).
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { close(a.stop) })
	if !a.started.Load() {
		if a.started.CompareAndSwap(false, true) {
			close(a.done)
			return a.srv.ln.Close()
		}
	}
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping the agent: %w", ctx.Err())
	}
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
	a.mu.Lock()
	a.iv.file = r.interval
	a.iv.pick(a.log)
	a.mu.Unlock()
	if r.level != nil && a.opts.LogLevel != nil {
		a.opts.LogLevel.Set(*r.level)
	}
	a.m.reloadOK.Set(1)
	a.m.reloadTime.Set(float64(a.opts.Now().Unix()))
	a.wake()
	return nil
}

func (a *App) wake() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// newSession builds the clients of a registration. emqxClient may be
// given when register already logged in with it.
func (a *App) newSession(reg state.Registration, ec *emqx.Client) (*session, error) {
	// One transport towards ecp (report, long-poll, remote write, logs:
	// one HTTP/2 connection); the clients differ only in their timeouts.
	toECP := transport.NewECP(transport.Options{InsecureSkipVerify: reg.InsecureSkipVerify})
	hc := toECP.Client(a.opts.HTTPTimeout)
	pollHC := toECP.Client(a.opts.DesiredWait + a.opts.HTTPTimeout)
	emqxHC := transport.New(transport.Options{InsecureSkipVerify: reg.InsecureSkipVerify, Timeout: a.opts.HTTPTimeout})
	if ec == nil {
		var err error
		ec, err = emqx.New(emqx.Config{APIURL: reg.EMQX.APIURL, Username: reg.EMQX.Username, Password: reg.EMQX.Password, HTTPClient: emqxHC})
		if err != nil {
			return nil, err
		}
	}
	ecp, err := ecpclient.New(reg.ECPURL, reg.Credential, hc)
	if err != nil {
		return nil, err
	}
	poll, err := ecpclient.New(reg.ECPURL, reg.Credential, pollHC)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(a.runCtx)
	push := &remotewrite.Target{ECPURL: reg.ECPURL, Credential: reg.Credential, Client: hc}
	return &session{reg: reg, emqx: ec, reads: newTickReads(ec), ecp: ecp, poll: poll, push: push, toECP: toECP, hcs: []*http.Client{hc, emqxHC}, ctx: ctx, cancel: cancel}, nil
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
	// since the next report comes only an interval later.
	a.col.SetAPI(s.reads)
	a.mu.Lock()
	a.sess = s
	a.ended = nil
	a.rep.start(a.opts.Now(), s.firstReport)
	if s.reg.ReportInterval > 0 {
		a.iv.ecp = s.reg.ReportInterval
		a.iv.pick(a.log)
	}
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	a.rw.Reset()
	a.logs.apply(s, s.reg.LogCollection)
	a.m.registered.Set(1)
	a.m.buffered.Set(0)
	a.wake()
}

// endSession forgets the registration s, if it is still the one in force.
func (a *App) endSession(s *session, reason string) {
	a.mu.Lock()
	if a.sess != s {
		a.mu.Unlock()
		return
	}
	e := state.Ended{At: a.opts.Now().UTC(), Reason: reason, ClusterID: s.reg.ClusterID}
	// Forget on disk first: once status says "not registered", a restart
	// must not resume the old credential.
	if err := a.dir.EndRegistration(e); err != nil {
		a.log.Error("cannot remove the registration from the state dir", "err", err)
	}
	a.sess = nil
	a.rep.queue = nil
	a.ended = &e
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
	a.logs.stop(false)
	s.close()
	a.rw.Reset()
	a.col.SetAPI(nil)
	a.enf.Reset()
	a.m.registered.Set(0)
	a.m.buffered.Set(0)
	a.log.Warn("registration ended", "clusterId", s.reg.ClusterID, "reason", reason)
}

func (a *App) current() (*session, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sess, a.changed
}

func (a *App) currentInterval() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.iv.current
}

// collectLoop polls EMQX every interval, corrects drift of the connection
// limit and reports to ecp when a report is due.
func (a *App) collectLoop(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.kick:
		}
		a.tick(ctx)
		t.Reset(a.nextTickIn())
	}
}

func (a *App) tick(ctx context.Context) {
	s, _ := a.current()
	a.mu.Lock()
	gen := a.rep.appliedGen
	a.mu.Unlock()
	// Everything the tick asks of EMQX shares one deadline (tickBudget),
	// so a slow EMQX delays the report by at most the budget.
	budget := tickBudget(a.currentInterval())
	deadline := time.Now().Add(budget)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var enfErr error
	var ectx context.Context
	if s != nil {
		s.reads.begin()
		defer s.reads.end()
		var ecancel context.CancelFunc
		ectx, ecancel = context.WithDeadline(s.ctx, deadline)
		defer ecancel()
	}
	// Enforce before collecting, so the snapshot (and /metrics) shows the
	// corrected limit; skip it while EMQX is known to be down, where it
	// could only fail.
	enforced := false
	if prev := a.col.Latest(); s != nil && (prev == nil || prev.Up) {
		_ = a.enf.Enforce(ectx, s.reads)
		enfErr = s.reads.firstErr()
		enforced = true
	}
	snap := a.col.Collect(cctx)
	if s == nil {
		return
	}
	if snap.Up && !enforced {
		// EMQX is back: enforce now rather than report a stale problem
		// for one more interval.
		_ = a.enf.Enforce(ectx, s.reads)
	}
	var timedOut *agentproto.Problem
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		errs := []error{enfErr}
		for _, r := range snap.Results {
			errs = append(errs, r.Err)
		}
		timedOut = timeoutProblem(budget, append(errs, s.reads.firstErr())...)
		a.log.Warn("emqx too slow for the tick deadline", "problem", timedOut.Message)
	}
	if err := a.rw.Push(s.push, snap.CollectedAt); err != nil {
		a.log.Warn("collection not queued for remote write", "err", err)
	}
	a.report(s, snap, timedOut, gen)
}

// buildReport is called with a.mu held. timedOut, when set, is the
// problem of a tick cut by its deadline: it names the slow call, which
// says more than the failures it caused.
func (a *App) buildReport(snap *collector.Snapshot, timedOut *agentproto.Problem) agentproto.ReportRequest {
	st := a.enf.State()
	req := agentproto.ReportRequest{
		CollectedAt:     snap.CollectedAt.UTC(),
		AgentVersion:    version.Version,
		EMQX:            snap.Status(),
		IntervalSeconds: intervalSeconds(a.iv.current),
		IntervalPinned:  a.iv.pinned(),
	}
	if st.Problem == nil && (st.AppliedOK || st.Held != nil) {
		req.AppliedRevision = st.Revision
	}
	if timedOut != nil {
		req.EMQX.Problem = timedOut
	}
	if req.EMQX.Reachable && req.EMQX.Problem == nil && st.Problem != nil {
		req.EMQX.Problem = st.Problem
	}
	return req
}

// report queues a report when one is due and sends the queue oldest
// first. While ecp is unreachable the queue keeps at most ReportBuffer
// reports; the oldest are dropped and counted.
func (a *App) report(s *session, snap *collector.Snapshot, timedOut *agentproto.Problem, gen uint64) {
	a.mu.Lock()
	if !a.rep.due(a.opts.Now()) {
		a.mu.Unlock()
		return
	}
	if dropped := a.rep.add(a.buildReport(snap, timedOut), gen); dropped > 0 {
		a.m.dropped.Add(float64(dropped))
	}
	a.m.buffered.Set(float64(len(a.rep.queue)))
	a.mu.Unlock()

	for {
		a.mu.Lock()
		if a.sess != s || len(a.rep.queue) == 0 {
			a.rep.next = a.opts.Now().Add(a.iv.reportEvery())
			a.mu.Unlock()
			return
		}
		req := a.rep.queue[0]
		a.mu.Unlock()

		rctx, cancel := context.WithTimeout(s.ctx, a.opts.HTTPTimeout)
		resp, err := s.ecp.Report(rctx, req)
		cancel()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			if errors.Is(err, ecpclient.ErrCredentialRevoked) {
				a.endSession(s, "credential revoked by ecp: "+err.Error())
				return
			}
			a.m.failures.Inc()
			a.mu.Lock()
			wait := a.rep.failed(a.opts.Now(), err)
			buffered := len(a.rep.queue)
			a.mu.Unlock()
			a.log.Warn("report not delivered", "err", err, "retryIn", wait, "buffered", buffered)
			return
		}
		a.m.sent.Inc()
		a.mu.Lock()
		a.rep.delivered(a.opts.Now(), a.sess == s)
		a.m.buffered.Set(float64(len(a.rep.queue)))
		if resp.ReportIntervalSeconds > 0 {
			// Inside a tick: the collect loop re-arms with the new
			// interval as soon as this tick ends.
			a.iv.ecp = secondsDuration(resp.ReportIntervalSeconds)
			a.iv.pick(a.log)
		}
		a.mu.Unlock()
		a.applyDesired(s, resp.Desired)
	}
}

// applyDesired acts on a desired state from a report reply or the
// long-poll: unregister, or a new connection limit applied at once.
func (a *App) applyDesired(s *session, d agentproto.DesiredState) {
	if d.Unregister {
		uctx, cancel := context.WithTimeout(s.ctx, a.opts.HTTPTimeout)
		if err := s.ecp.Unregister(uctx); err != nil {
			a.log.Warn("unregister asked by ecp; telling ecp failed", "err", err)
		}
		cancel()
		a.endSession(s, "ecp asked the agent to unregister")
		return
	}
	a.answerDashboards(s, d.DashboardSessions)
	if d.Revision != 0 {
		// Log collection follows ecp's desired state once ecp sent one.
		a.logs.apply(s, d.LogCollection)
	}
	if d.Revision == 0 || !a.enf.SetDesired(d) {
		return
	}
	a.log.Info("desired state changed", "revision", d.Revision, "maxConnections", d.MaxConnections)
	_ = a.enf.Enforce(s.ctx, s.emqx)
	// Tell ecp at once that the revision is applied, unless ecp placed
	// the first report later in the interval (a burst of registrations):
	// then the first report tells it.
	a.mu.Lock()
	a.rep.applied()
	a.mu.Unlock()
	a.wake()
}

// desiredLoop long-polls ecp so a change decided there (max connections,
// unregister) reaches EMQX within a second or two, not at the next report.
func (a *App) desiredLoop(ctx context.Context) {
	bo := backoff.Backoff{Base: a.opts.BackoffBase, Max: a.opts.BackoffMax}
	for {
		s, changed := a.current()
		if s == nil {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		rev := a.enf.State().Revision
		d, newer, err := s.poll.Desired(s.ctx, rev, a.opts.DesiredWait)
		switch {
		case ctx.Err() != nil:
			return
		case s.ctx.Err() != nil:
			continue
		case errors.Is(err, ecpclient.ErrCredentialRevoked):
			a.endSession(s, "credential revoked by ecp: "+err.Error())
			continue
		case err != nil:
			wait := bo.Next(ecpclient.RetryAfter(err))
			a.log.Warn("desired-state poll failed", "err", err, "retryIn", wait)
			if backoff.Sleep(s.ctx, wait) != nil && ctx.Err() != nil {
				return
			}
			continue
		}
		bo.Reset()
		if !newer {
			continue
		}
		if d.Revision <= rev && !d.Unregister {
			// A server answering at once with nothing new must not turn
			// the long-poll into a busy loop.
			if backoff.Sleep(s.ctx, a.opts.BackoffBase) != nil && ctx.Err() != nil {
				return
			}
			continue
		}
		a.applyDesired(s, d)
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func secondsDuration(n int) time.Duration { return time.Duration(n) * time.Second }
