package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/bench/internal/latency"
)

// load drives agents: the benchmark's own process (gen) or, with
// --agents.processes, its children (children.go) each driving a share.
// The parent talks to both the same way, one request at a time, and merges
// what several answer.
type load interface {
	do(ctx context.Context, req request) (answer, error)
	close()
}

// Operations of a request to the load.
const (
	// opMeasure starts the window, opWindow ends it and answers its figures.
	opMeasure = "measure"
	opWindow  = "window"
	// opSilence stops the named agents as dead ones; opLast answers when
	// each named agent's last report was answered.
	opSilence = "silence"
	opLast    = "last"
	// opSettle stops every agent, lets the last requests finish and
	// answers the run's totals.
	opSettle = "settle"
)

// request is one instruction to the load; Agents are global indices (a
// process ignores those it does not drive).
type request struct {
	Op     string `json:"op"`
	Agents []int  `json:"agents,omitempty"`
}

// answer is what the load says back; several processes' answers add up
// (merge).
type answer struct {
	Error string `json:"error,omitempty"`
	// RegisterRetries counts registrations retried after a 429.
	RegisterRetries int64   `json:"register_retries,omitempty"`
	Window          *window `json:"window,omitempty"`
	// Last is the Unix nanoseconds of each agent's last answered report
	// (0: none answered).
	Last   map[int]int64 `json:"last,omitempty"`
	Totals *totals       `json:"totals,omitempty"`
}

// window is what the agents saw in the measured window.
type window struct {
	// Latency holds the reports answered 200.
	Latency latency.Histogram `json:"latency"`
	// TooMany and Unavailable count reports, pushes and log batches
	// answered 429 and 503; Errors the other statuses and the calls that
	// got no answer (a connection refused or reset).
	TooMany     int `json:"http_429s"`
	Unavailable int `json:"http_503s"`
	Errors      int `json:"errors"`
	// Pushed and Lines are the samples and log lines ecp accepted.
	Pushed int64 `json:"pushed"`
	Lines  int64 `json:"lines"`
	// Served counts the agents with a report answered in the window.
	Served int `json:"served"`
	// Polls counts the desired-state polls answered in the window: with
	// held reports (http1-oneconn) only those filling an interval whose
	// report ecp did not hold or answered early.
	Polls int64 `json:"polls"`
}

// totals are the run's figures, from registration to settling.
type totals struct {
	Pushed, RWRefused                         int64
	RWPending, RWAgentDropped                 int64
	LinesAccepted, LinesRefused, LinesPending int64
	// Served counts the agents ever answered a report, of Agents.
	Served, Agents int
}

// merge adds o to a.
func (a *answer) merge(o answer) {
	a.RegisterRetries += o.RegisterRetries
	if o.Window != nil {
		if a.Window == nil {
			a.Window = &window{}
		}
		w := a.Window
		w.Latency.Merge(o.Window.Latency)
		w.TooMany += o.Window.TooMany
		w.Unavailable += o.Window.Unavailable
		w.Errors += o.Window.Errors
		w.Pushed += o.Window.Pushed
		w.Lines += o.Window.Lines
		w.Served += o.Window.Served
		w.Polls += o.Window.Polls
	}
	for i, t := range o.Last {
		if a.Last == nil {
			a.Last = map[int]int64{}
		}
		a.Last[i] = t
	}
	if o.Totals != nil {
		if a.Totals == nil {
			a.Totals = &totals{}
		}
		t := a.Totals
		t.Pushed += o.Totals.Pushed
		t.RWRefused += o.Totals.RWRefused
		t.RWPending += o.Totals.RWPending
		t.RWAgentDropped += o.Totals.RWAgentDropped
		t.LinesAccepted += o.Totals.LinesAccepted
		t.LinesRefused += o.Totals.LinesRefused
		t.LinesPending += o.Totals.LinesPending
		t.Served += o.Totals.Served
		t.Agents += o.Totals.Agents
	}
}

// gen drives its agents from this process: registration, every agent's
// long-poll, and reports, pushes and log batches at each agent's offset
// within every interval, on cfg.workers senders or, with http1-oneconn, on
// each agent's own connection between its polls (oneConnAgent).
type gen struct {
	cfg     config
	agents  []*agent
	byIndex map[int]*agent
	hc      *http.Client
	res     *results
	pushed  atomic.Int64
	retries atomic.Int64
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// At the window's start: the counters the window subtracts.
	windowStart                            time.Time
	pushedBefore, linesBefore, pollsBefore int64
	// polls counts the desired-state polls answered.
	polls atomic.Int64
}

// newAgent is the agent for global index i of cfg.agents, reporting to
// one of bases, with the credential its registration token swaps for.
func newAgent(cfg config, i int, cluster, token string, bases []string) *agent {
	failing := int(float64(cfg.agents)*cfg.abnormal + 0.5)
	return &agent{index: i, cluster: cluster, cred: token, base: bases[i%len(bases)],
		offset:  time.Duration(i) * cfg.interval / time.Duration(cfg.agents),
		started: time.Now().Add(-time.Duration(rand.IntN(1000)) * time.Hour).Truncate(time.Second),
		conns:   rand.IntN(1000), upgrades: cfg.upgrades,
		// Spread over the fleet rather than the first ones.
		failing: failing > 0 && i%max(1, cfg.agents/failing) == 0 && i/max(1, cfg.agents/failing) < failing}
}

// startGen registers agents and drives each from the moment it is
// registered, as agent-exporter reports right after `register`: a fleet
// that registered all at once and only then started reporting would have
// its first agents silent for as long as the last ones took (77 s for
// 30,000), marked abnormal and written back to running inside the window.
// It returns once every agent registered.
func startGen(ctx context.Context, cfg config, agents []*agent) (*gen, error) {
	g := &gen{cfg: cfg, agents: agents, byIndex: map[int]*agent{}, res: &results{}}
	for _, a := range agents {
		g.byIndex[a.index] = a
	}
	g.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: cfg.workers, MaxIdleConnsPerHost: cfg.workers, MaxConnsPerHost: cfg.workers}}
	if cfg.conns != agentsim.ConnsHTTP1 {
		// Each agent holds its own connections; registration shares g.hc's.
		for _, a := range agents {
			a.hc, a.pollHC = agentsim.AgentClients(30*time.Second, cfg.conns == agentsim.ConnsH2)
			if cfg.conns == agentsim.ConnsOneConn {
				a.turns = make(chan []byte, 1)
			}
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	g.cancel = cancel
	// Every agent holds its own long-poll connection, as the real one does.
	pollHC := &http.Client{Transport: &http.Transport{MaxIdleConns: len(agents) + 10, MaxIdleConnsPerHost: len(agents) + 10}}
	start := time.Now()
	g.wg.Go(func() { schedule(lctx, start, g.hc, g.agents, cfg, g.res, &g.pushed) })
	err := agentsim.Parallel(ctx, len(agents), 32, func(i int) error {
		a := agents[i]
		if err := register(ctx, g.hc, a, &g.retries); err != nil {
			return err
		}
		g.drive(lctx, a, start, pollHC)
		a.registered.Store(true)
		return nil
	})
	if err != nil {
		g.close()
		return nil, err
	}
	if cfg.conns != agentsim.ConnsHTTP1 {
		// Registration's shared connections go.
		g.hc.CloseIdleConnections()
	}
	return g, nil
}

// drive starts a registered agent's long-poll or, with http1-oneconn, its
// own loop.
func (g *gen) drive(ctx context.Context, a *agent, start time.Time, pollHC *http.Client) {
	cfg := g.cfg
	if a.turns != nil {
		p := agentsim.Poller{HC: a.pollHC, Base: a.base, Cred: a.cred, Revision: a.revision, Wait: cfg.pollWait,
			Backoff: cfg.interval, Answered: &g.polls}
		g.wg.Go(func() { oneConnAgent(ctx, a, p, start, cfg, g.res, &g.pushed) })
		return
	}
	g.wg.Go(func() {
		// Spread the polls like the reports, so their timeouts do not align.
		if !agentsim.Sleep(ctx, time.Duration(float64(a.offset)*float64(cfg.pollWait)/float64(cfg.interval))) {
			return
		}
		phc := pollHC
		if a.pollHC != nil {
			phc = a.pollHC
		}
		agentsim.Poller{HC: phc, Base: a.base, Cred: a.cred, Revision: a.revision, Wait: cfg.pollWait,
			Backoff: cfg.interval, Stopped: a.silenced.Load, Answered: &g.polls}.Run(ctx)
	})
}

func (g *gen) do(ctx context.Context, req request) (answer, error) {
	switch req.Op {
	case opMeasure:
		g.windowStart = time.Now()
		g.pushedBefore, g.linesBefore, g.pollsBefore = g.pushed.Load(), g.res.linesAccepted.Load(), g.polls.Load()
		g.res.measure(true)
		return answer{}, nil
	case opWindow:
		g.res.measure(false)
		w := &window{Pushed: g.pushed.Load() - g.pushedBefore, Lines: g.res.linesAccepted.Load() - g.linesBefore, Polls: g.polls.Load() - g.pollsBefore}
		g.res.mu.Lock()
		w.Latency, w.TooMany, w.Unavailable, w.Errors = g.res.latency, g.res.tooMany, g.res.unavailable, g.res.errs
		g.res.mu.Unlock()
		for _, a := range g.agents {
			if a.lastReport.Load() >= g.windowStart.UnixNano() {
				w.Served++
			}
		}
		return answer{Window: w}, nil
	case opSilence:
		for _, i := range req.Agents {
			if a := g.byIndex[i]; a != nil {
				a.silenced.Store(true)
			}
		}
		return answer{}, nil
	case opLast:
		last := map[int]int64{}
		for _, i := range req.Agents {
			if a := g.byIndex[i]; a != nil {
				last[i] = a.lastReport.Load()
			}
		}
		return answer{Last: last}, nil
	case opSettle:
		return g.settle(ctx)
	}
	return answer{}, fmt.Errorf("unknown load operation %q", req.Op)
}

// settle stops the fleet, lets the last requests finish and counts.
func (g *gen) settle(ctx context.Context) (answer, error) {
	for _, a := range g.agents {
		a.silenced.Store(true)
	}
	for deadline := time.Now().Add(2 * time.Minute); g.res.busy.Load() > 0 && time.Now().Before(deadline); {
		if !agentsim.Sleep(ctx, 50*time.Millisecond) {
			return answer{}, ctx.Err()
		}
	}
	t := &totals{Pushed: g.pushed.Load(), RWRefused: g.res.rwRefused.Load(),
		LinesAccepted: g.res.linesAccepted.Load(), LinesRefused: g.res.linesRefused.Load(), Agents: len(g.agents)}
	for _, a := range g.agents {
		a.unsentMu.Lock()
		t.RWPending += int64(len(a.unsent) * g.cfg.series)
		t.RWAgentDropped += a.unsentDropped
		a.unsentMu.Unlock()
		t.LinesPending += a.logs.pending()
		if a.lastReport.Load() != 0 {
			t.Served++
		}
	}
	return answer{Totals: t}, nil
}

// close stops every loop and the agents' connections.
func (g *gen) close() {
	g.cancel()
	g.wg.Wait()
	g.hc.CloseIdleConnections()
	for _, a := range g.agents {
		if a.hc != nil {
			a.hc.CloseIdleConnections()
		}
	}
}
