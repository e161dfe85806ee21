// Command agents measures one ecp fleet (with its embedded etcd) under a
// simulated fleet of agents: every agent registers once, holds a
// desired-state long-poll and reports every interval, the reports spread
// evenly over the interval. The server runs in a child process so that its
// CPU time and memory are measured apart from the load generator's.
//
// It prints, for the steady-state window after a warm-up: report latency
// (client and server side), server CPU as a share of one core, server RSS,
// and etcd writes (revisions) per report.
//
//	go run ./bench/agents --agents.count 10000 --report.interval 15s --steady.duration 45s
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/registry"
)

// roleEnv makes the re-executed binary the server.
const roleEnv = "ECP_BENCH_AGENTS_ROLE"

// Defaults of the flags.
const (
	DefaultAgents   = 10000
	DefaultInterval = 15 * time.Second
	DefaultWorkers  = 64
)

func main() { os.Exit(run()) }

// setup is what the server tells the load generator once it is ready.
type setup struct {
	URLs []string `json:"urls"`
	Etcd string   `json:"etcd"`
	// EtcdTLS is the client certificate the embedded member demands.
	EtcdTLS etcdserver.TLSFiles `json:"etcdTls"`
	Tokens  []string            `json:"tokens"`
}

type config struct {
	agents   int
	interval time.Duration
	warmup   time.Duration
	steady   time.Duration
	workers  int
	longPoll bool
	replicas int
	memLimit string
	pollWait time.Duration
	silence  int
}

func run() int {
	if os.Getenv(roleEnv) == "server" {
		return serve()
	}
	var cfg config
	fs := flag.NewFlagSet("agents", flag.ContinueOnError)
	fs.IntVar(&cfg.agents, "agents.count", DefaultAgents, "Number of simulated agents.")
	fs.DurationVar(&cfg.interval, "report.interval", DefaultInterval, "Report interval the server tells agents.")
	fs.DurationVar(&cfg.warmup, "warmup.duration", 0, "Warm-up before measuring (default: 5s more than one interval and than the long-poll wait, covering every agent's first report and first poll).")
	fs.DurationVar(&cfg.steady, "steady.duration", 0, "Measured steady-state window (default: three intervals).")
	fs.IntVar(&cfg.workers, "report.workers", DefaultWorkers, "Concurrent report senders (and keep-alive connections).")
	fs.IntVar(&cfg.replicas, "server.replicas", 1, "ecp replicas sharing the embedded etcd; agents spread their calls over all of them, as behind a load balancer.")
	fs.StringVar(&cfg.memLimit, "server.gomemlimit", "", "GOMEMLIMIT for the server process only (e.g. 400MiB); empty leaves Go's default.")
	fs.DurationVar(&cfg.pollWait, "agents.desired-wait", 30*time.Second, "Timeout each agent asks for on its desired-state long-poll (agent-exporter's default is 30s; ecp caps it at 60s).")
	fs.IntVar(&cfg.silence, "silence.count", 100, "After the steady window, agents to stop (reports and polls) to time their detection; 0 skips it.")
	fs.BoolVar(&cfg.longPoll, "agents.long-poll", true, "Have every agent hold a desired-state long-poll, as real agents do.")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if cfg.agents <= 0 || cfg.interval <= 0 || cfg.workers <= 0 || cfg.replicas <= 0 {
		fmt.Fprintln(os.Stderr, "--agents.count, --report.interval, --report.workers and --server.replicas must be positive")
		return 2
	}
	if cfg.warmup == 0 {
		cfg.warmup = cfg.interval + 5*time.Second
		if cfg.longPoll {
			cfg.warmup = max(cfg.warmup, cfg.pollWait+5*time.Second)
		}
	}
	if cfg.steady == 0 {
		cfg.steady = 3 * cfg.interval
	}
	// The load generator holds as many connections as the server; a lazier
	// GC keeps its pauses from showing up as server latency.
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := drive(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

// serve is the child: embedded etcd, one fleet, the agent API and
// /metrics; it creates the cluster specs and their tokens, prints the setup
// as one JSON line and serves until its stdin closes.
func serve() int {
	n, _ := strconv.Atoi(os.Getenv("ECP_BENCH_AGENTS"))
	interval, _ := time.ParseDuration(os.Getenv("ECP_BENCH_INTERVAL"))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	replicas, _ := strconv.Atoi(os.Getenv("ECP_BENCH_REPLICAS"))
	if err := serveCtx(ctx, n, max(replicas, 1), interval, logger); err != nil {
		logger.Error("bench server failed", "err", err)
		return 1
	}
	return 0
}

func serveCtx(ctx context.Context, n, replicas int, interval time.Duration, logger *slog.Logger) error {
	dir, err := os.MkdirTemp("", "ecp-bench-agents-")
	if err != nil {
		return fmt.Errorf("make data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	srv, err := etcdserver.Start(ctx, etcdserver.Options{Dir: dir}, logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	cli, err := etcdserver.NewClient([]string{srv.Endpoint()}, srv.ClientTLS())
	if err != nil {
		return err
	}
	defer cli.Close()

	// Each replica is a whole fleet with its own etcd client, registry and
	// listener, as separate ecp processes behind a load balancer would be.
	var fleets []*fleet.Fleet
	var urls []string
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range replicas {
		rcli, err := etcdserver.NewClient([]string{srv.Endpoint()}, srv.ClientTLS())
		if err != nil {
			return err
		}
		defer rcli.Close()
		reg := prometheus.NewRegistry()
		f, err := fleet.New(fleet.Options{ReportInterval: interval, MaxInFlight: 4096, ReplicaID: fmt.Sprintf("bench-%d", i)}, rcli, logger, reg)
		if err != nil {
			return err
		}
		r := mux.NewRouter()
		f.Register(r)
		r.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if os.Getenv("ECP_BENCH_PPROF") != "" {
			r.HandleFunc("/debug/pprof/profile", pprof.Profile)
			r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
		}
		ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		hs := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = hs.Serve(ln) }()
		defer hs.Close()
		wg.Go(func() { _ = f.Run(ctx) })
		select {
		case <-f.Ready():
		case <-ctx.Done():
			return ctx.Err()
		}
		fleets = append(fleets, f)
		urls = append(urls, "http://"+ln.Addr().String())
	}
	f := fleets[0]

	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-%05d", i)
	}
	for start := 0; start < n; start += 100 {
		var ops []clientv3.Op
		for _, id := range ids[start:min(start+100, n)] {
			b, err := registry.Spec{ID: id, Name: id, Project: "bench", MaxConnections: 1000,
				CreatedAt: time.Now(), UpdatedAt: time.Now()}.Encode()
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(registry.Key(id), string(b)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("create specs: %w", err)
		}
	}
	tokens := make([]string, n)
	if err := agentsim.Parallel(ctx, n, 32, func(i int) error {
		tok, _, err := f.IssueRegistration(ctx, ids[i], time.Hour)
		tokens[i] = tok.Reveal()
		return err
	}); err != nil {
		return err
	}
	if err := json.NewEncoder(os.Stdout).Encode(setup{URLs: urls, Etcd: srv.Endpoint(), EtcdTLS: srv.ClientTLS(), Tokens: tokens}); err != nil {
		return fmt.Errorf("write setup: %w", err)
	}
	<-ctx.Done()
	return nil
}

// simAgent is one simulated agent.
type simAgent struct {
	index    int
	cred     string
	started  time.Time
	offset   time.Duration
	revision int64
	conns    int
	// silenced agents stop reporting and polling, as a dead agent does.
	silenced   atomic.Bool
	lastReport atomic.Int64 // Unix nanoseconds of the last answered report
}

// stats collects report outcomes in the measured window.
type stats struct {
	mu        sync.Mutex
	measuring bool
	latencies []time.Duration
	codes     map[int]int
	errs      int
}

func (s *stats) add(d time.Duration, code int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.measuring {
		return
	}
	if err != nil {
		s.errs++
		return
	}
	s.codes[code]++
	s.latencies = append(s.latencies, d)
}

func drive(ctx context.Context, cfg config) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), roleEnv+"=server", "ECP_BENCH_AGENTS="+strconv.Itoa(cfg.agents), "ECP_BENCH_INTERVAL="+cfg.interval.String(),
		"ECP_BENCH_REPLICAS="+strconv.Itoa(cfg.replicas))
	if cfg.memLimit != "" {
		cmd.Env = append(cmd.Env, "GOMEMLIMIT="+cfg.memLimit)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("server stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("server stdout: %w", err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	var su setup
	rd := bufio.NewReaderSize(stdout, 1<<20)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read server setup: %w", err)
	}
	if err := json.Unmarshal(line, &su); err != nil {
		return fmt.Errorf("decode server setup: %w", err)
	}
	fmt.Printf("server pid %d ready with %d cluster specs and tokens in %s\n", cmd.Process.Pid, len(su.Tokens), time.Since(t0).Round(time.Millisecond))

	etcd, err := etcdserver.NewClient([]string{su.Etcd}, su.EtcdTLS)
	if err != nil {
		return err
	}
	defer etcd.Close()

	reportHC := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: cfg.workers, MaxIdleConnsPerHost: cfg.workers, MaxConnsPerHost: cfg.workers}}
	agents := make([]*simAgent, cfg.agents)
	t1 := time.Now()
	var retries atomic.Int64
	if err := agentsim.Parallel(ctx, cfg.agents, 32, func(i int) error {
		a := &simAgent{index: i, started: time.Now().Add(-time.Duration(rand.IntN(1000)) * time.Hour).Truncate(time.Second), offset: time.Duration(i) * cfg.interval / time.Duration(cfg.agents), conns: rand.IntN(1000)}
		for {
			var out agentproto.RegisterResponse
			code, err := agentsim.Post(ctx, reportHC, su.URLs[i%len(su.URLs)]+agentproto.PathRegister, "", agentproto.RegisterRequest{
				Token: su.Tokens[i], AgentVersion: "bench", Hostname: fmt.Sprintf("broker-%d", i)}, &out)
			if err != nil {
				return err
			}
			if code == http.StatusTooManyRequests {
				retries.Add(1)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if code != http.StatusOK {
				return fmt.Errorf("register agent %d: status %d", i, code)
			}
			a.cred, a.revision = out.Credential, out.Desired.Revision
			agents[i] = a
			return nil
		}
	}); err != nil {
		return err
	}
	fmt.Printf("registered %d agents in %s (%d retried after 429)\n", cfg.agents, time.Since(t1).Round(time.Millisecond), retries.Load())

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var pollCount atomic.Int64
	if cfg.longPoll {
		pollHC := &http.Client{Transport: &http.Transport{MaxIdleConns: cfg.agents + 10, MaxIdleConnsPerHost: cfg.agents + 10}}
		for _, a := range agents {
			wg.Go(func() {
				// Spread the polls like the reports, so their timeouts do not align.
				if !agentsim.Sleep(lctx, time.Duration(float64(a.offset)*float64(cfg.pollWait)/float64(cfg.interval))) {
					return
				}
				agentsim.Poller{HC: pollHC, Base: su.URLs[a.index%len(su.URLs)], Cred: a.cred, Revision: a.revision,
					Wait: cfg.pollWait, Backoff: cfg.interval, Stopped: a.silenced.Load, Answered: &pollCount}.Run(lctx)
			})
		}
	}
	st := &stats{codes: map[int]int{}}
	wg.Go(func() { schedule(lctx, reportHC, su.URLs, agents, cfg, st) })

	fmt.Printf("warming up for %s (every agent's first report, and the writes it causes)\n", cfg.warmup)
	if !agentsim.Sleep(ctx, cfg.warmup) {
		return ctx.Err()
	}
	before, err := snapshot(ctx, cmd.Process.Pid, su, etcd)
	if err != nil {
		return err
	}
	st.mu.Lock()
	st.measuring = true
	st.mu.Unlock()
	fmt.Printf("measuring steady state for %s (servers at %v)\n", cfg.steady, su.URLs)
	if !agentsim.Sleep(ctx, cfg.steady) {
		return ctx.Err()
	}
	st.mu.Lock()
	st.measuring = false
	st.mu.Unlock()
	after, err := snapshot(ctx, cmd.Process.Pid, su, etcd)
	if err != nil {
		return err
	}
	printResults(cfg, st, before, after, pollCount.Load())
	if cfg.silence > 0 {
		return measureSilence(ctx, cfg, su, agents)
	}
	return nil
}

// measureSilence stops some agents and watches the server mark them
// abnormal, from the per-cluster state gauge: the time from each one's last
// report to its abnormal state, and whether any other cluster was marked.
func measureSilence(ctx context.Context, cfg config, su setup, agents []*simAgent) error {
	n := min(cfg.silence, len(agents))
	silenced := map[string]*simAgent{}
	for i := range n {
		a := agents[i*len(agents)/n]
		a.silenced.Store(true)
		silenced[fmt.Sprintf("bench-%05d", a.index)] = a
	}
	fmt.Printf("\nsilencing %d agents; waiting up to %s for them to turn abnormal\n", n, 4*cfg.interval+10*time.Second)
	detected := map[string]time.Time{}
	deadline := time.Now().Add(4*cfg.interval + 10*time.Second)
	others := 0
	for len(detected) < n && time.Now().Before(deadline) {
		if !agentsim.Sleep(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
		abnormal, err := abnormalClusters(ctx, su.URLs[0])
		if err != nil {
			return err
		}
		now := time.Now()
		others = 0
		for _, id := range abnormal {
			if _, ok := silenced[id]; !ok {
				others++
				continue
			}
			if _, ok := detected[id]; !ok {
				detected[id] = now
			}
		}
	}
	var lags []time.Duration
	for id, at := range detected {
		lags = append(lags, at.Sub(time.Unix(0, silenced[id].lastReport.Load())))
	}
	slices.Sort(lags)
	fmt.Printf("silenced agents marked abnormal %d of %d; other clusters abnormal %d\n", len(detected), n, others)
	if len(lags) > 0 {
		fmt.Printf("last report → abnormal     min %s  p50 %s  p99 %s  max %s (threshold %s; sweeper tick 1s, gauge polled every 250ms)\n",
			lags[0].Round(time.Millisecond), lags[len(lags)/2].Round(time.Millisecond),
			lags[min(len(lags)-1, len(lags)*99/100)].Round(time.Millisecond), lags[len(lags)-1].Round(time.Millisecond),
			agentproto.SilentIntervals*cfg.interval)
	}
	return nil
}

// abnormalClusters lists the clusters ecp_cluster_state shows abnormal.
func abnormalClusters(ctx context.Context, base string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("build scrape: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape server: %w", err)
	}
	defer resp.Body.Close()
	var ids []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "ecp_cluster_state{") || !strings.Contains(l, `state="abnormal"`) {
			continue
		}
		id := l[strings.Index(l, `cluster="`)+9:]
		ids = append(ids, id[:strings.IndexByte(id, '"')])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return ids, nil
}

// schedule sends each agent's report at its offset within every interval.
func schedule(ctx context.Context, hc *http.Client, bases []string, agents []*simAgent, cfg config, st *stats) {
	type job struct {
		a    *simAgent
		base string
	}
	jobs := make(chan job, len(agents))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(jobs)
	for range cfg.workers {
		wg.Go(func() {
			for j := range jobs {
				a := j.a
				a.conns = max(0, a.conns+rand.IntN(21)-10)
				req := agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "bench", AppliedRevision: a.revision,
					EMQX: agentproto.EMQXStatus{Reachable: true, Version: "5.8.1", Edition: "Enterprise",
						StartedAt: a.started,
						Nodes: []agentproto.Node{
							{Name: "emqx@n1", Status: "running", Connections: a.conns / 2, LiveConnections: a.conns / 2},
							{Name: "emqx@n2", Status: "running", Connections: a.conns - a.conns/2, LiveConnections: a.conns - a.conns/2},
						},
						Connections: a.conns, LiveConnections: a.conns, MaxConnections: 1000,
						Rules: agentproto.ResourceCounts{Total: 3, Healthy: 3}, Connectors: agentproto.ResourceCounts{Total: 2, Healthy: 2}}}
				var out agentproto.ReportResponse
				start := time.Now()
				code, err := agentsim.Post(ctx, hc, j.base+agentproto.PathReport, a.cred, req, &out)
				if ctx.Err() != nil {
					return
				}
				st.add(time.Since(start), code, err)
				if err == nil && code == http.StatusOK {
					a.lastReport.Store(time.Now().UnixNano())
				}
			}
		})
	}
	start := time.Now()
	for round := 0; ; round++ {
		for _, a := range agents {
			at := start.Add(time.Duration(round)*cfg.interval + a.offset)
			if d := time.Until(at); d > 0 {
				if !agentsim.Sleep(ctx, d) {
					return
				}
			}
			// Round robin per report: with several replicas an agent's
			// consecutive reports land on different ones.
			if !a.silenced.Load() {
				jobs <- job{a: a, base: bases[(a.index+round)%len(bases)]}
			}
		}
	}
}

// sample is the server's counters at one moment.
type sample struct {
	at           time.Time
	cpuTicks     time.Duration
	rssKiB       int64
	hwmKiB       int64
	etcdRev      int64
	reports      float64
	writes       float64
	buckets      map[float64]float64 // server-side report latency histogram
	selfCPU      time.Duration
	waitersNow   float64
	digestWrites float64
	states       map[string]float64
}

func snapshot(ctx context.Context, pid int, su setup, etcd *clientv3.Client) (sample, error) {
	s := sample{at: time.Now(), buckets: map[float64]float64{}}
	p, err := agentsim.ReadProc(pid)
	if err != nil {
		return s, err
	}
	s.cpuTicks, s.rssKiB, s.hwmKiB = p.CPU, p.RSSKiB, p.HWMKiB
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.selfCPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	resp, err := etcd.Get(ctx, "/ecp/", clientv3.WithCountOnly())
	if err != nil {
		return s, fmt.Errorf("read etcd revision: %w", err)
	}
	s.etcdRev = resp.Header.Revision
	for i, u := range su.URLs {
		if err := scrape(ctx, u, i == 0, &s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// scrape adds one replica's counters to s; the cluster states, the same on
// every replica, are taken from the first.
func scrape(ctx context.Context, base string, states bool, s *sample) error {
	return agentsim.Scrape(ctx, http.DefaultClient, base, func(l string, v float64) {
		switch {
		case strings.HasPrefix(l, "ecp_agent_reports_total"):
			s.reports += v
		case strings.HasPrefix(l, "ecp_fleet_etcd_writes_total"):
			s.writes += v
			if strings.Contains(l, `reason="digest"`) {
				s.digestWrites += v
			}
		case strings.HasPrefix(l, "ecp_agent_desired_waiters"):
			s.waitersNow += v
		case states && strings.HasPrefix(l, "ecp_clusters{"):
			if s.states == nil {
				s.states = map[string]float64{}
			}
			st := l[strings.Index(l, `state="`)+7:]
			s.states[st[:strings.IndexByte(st, '"')]] = v
		case strings.HasPrefix(l, "ecp_http_request_duration_seconds_bucket") && strings.Contains(l, `route="`+agentproto.PathReport+`"`) && strings.Contains(l, `code="200"`):
			le := l[strings.Index(l, `le="`)+4:]
			le = le[:strings.IndexByte(le, '"')]
			b, err := strconv.ParseFloat(le, 64)
			if err == nil {
				s.buckets[b] += v
			}
		}
	})
}

func printResults(cfg config, st *stats, a, b sample, polls int64) {
	wall := b.at.Sub(a.at)
	st.mu.Lock()
	lat := slices.Clone(st.latencies)
	codes := st.codes
	errs := st.errs
	st.mu.Unlock()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	reports := b.reports - a.reports
	serverCPU := b.cpuTicks - a.cpuTicks
	fmt.Println()
	fmt.Printf("agents %d, replicas %d, report interval %s, long-polls %v (wait %s), server GOMEMLIMIT %q, steady window %s\n",
		cfg.agents, cfg.replicas, cfg.interval, cfg.longPoll, cfg.pollWait, cfg.memLimit, wall.Round(time.Millisecond))
	fmt.Printf("reports served            %.0f (%.1f/s; expected %.1f/s), client errors %d, statuses %v\n",
		reports, reports/wall.Seconds(), float64(cfg.agents)/cfg.interval.Seconds(), errs, codes)
	fmt.Printf("report latency (client)   p50 %s  p99 %s  max %s\n", pct(0.50), pct(0.99), pct(1))
	fmt.Printf("report latency (server)   p99 ≤ %s (histogram bucket)\n", bucketQuantile(a.buckets, b.buckets, 0.99))
	fmt.Printf("server CPU                %.1f%% of one core (%s CPU in %s wall, ecp + embedded etcd)\n",
		100*serverCPU.Seconds()/wall.Seconds(), serverCPU.Round(time.Millisecond), wall.Round(time.Millisecond))
	fmt.Printf("load generator CPU        %.1f%% of one core\n", 100*(b.selfCPU-a.selfCPU).Seconds()/wall.Seconds())
	fmt.Printf("server RSS                %d MiB (peak %d MiB)\n", b.rssKiB/1024, b.hwmKiB/1024)
	fmt.Printf("etcd revisions            %d in the window: %.4f writes/report (fleet's own count: %.0f, %.4f/report)\n",
		b.etcdRev-a.etcdRev, float64(b.etcdRev-a.etcdRev)/max(reports, 1), b.writes-a.writes, (b.writes-a.writes)/max(reports, 1))
	fmt.Printf("  of which digests        %.0f\n", b.digestWrites-a.digestWrites)
	fmt.Printf("desired long-polls        %.0f held open now, %d answered since start\n", b.waitersNow, polls)
	fmt.Printf("cluster states at the end %v\n", b.states)
}

// bucketQuantile is the upper bound of the histogram bucket holding the
// q-quantile of the observations between a and b.
func bucketQuantile(a, b map[float64]float64, q float64) string {
	les := make([]float64, 0, len(b))
	for le := range b {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 {
		return "n/a"
	}
	total := b[les[len(les)-1]] - a[les[len(les)-1]]
	for _, le := range les {
		if b[le]-a[le] >= q*total {
			return time.Duration(le * float64(time.Second)).String()
		}
	}
	return "+Inf"
}
