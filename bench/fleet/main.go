// Command fleet measures the real `ecp serve`, started as users start it
// (embedded etcd, auth, audit, monitoring, the remote-write gateway
// forwarding to a sink), under a simulated fleet driven from outside through
// the public API and the agent protocol: it creates an organization,
// projects and clusters with an admin's token, registers one agent per
// cluster with a registration token, and has every agent hold its
// desired-state long-poll and report each interval, 1 % of them with a
// failing rule whose counters grow each report and now and then a node
// down. With --remote-write.series each agent also pushes that many series
// per interval (forwarded to the sink or, with --remote-write.backend
// prometheus, to a real Prometheus); with --logs.lines it ships that many
// log lines per interval, which ecp stores in a real VictoriaLogs. Each agent
// holds its connections as agent-exporter does (--agents.connections
// http1-oneconn, the agent's default: one HTTP/1.1 connection, its long-poll
// held until just before each report, push and log batch; h2: one HTTP/2
// connection for everything; either way ecp holds one descriptor per agent;
// http1 as agents before HTTP/2). After the measured window it stops a few
// agents and times how long ecp takes to call their clusters abnormal; then
// it stops the fleet and counts what the stores hold against what ecp
// accepted (backends.go).
//
// It prints one summary line: ecp's CPU (ecp with its embedded etcd, from
// /proc) and RSS, report latency, 429s, etcd revisions per report and the
// silent-to-abnormal times.
//
// Past one process and one ecp (deploy.go, load.go, children.go):
// --agents.processes drives the agents from child load processes (this
// binary re-executed) whose figures the parent merges, latency histograms
// bucket by bucket; --ecp.replicas and --etcd.members run several replicas
// on a cluster of real etcd processes, agents spread over the replicas and
// each process's CPU, RSS and descriptors read from /proc; --ecp.nofile
// runs ecp under a lowered open-file limit to show its refusals.
//
//	go run ./bench/fleet --agents.count 1000 --report.interval 15s --steady.duration 60s
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/klauspost/compress/snappy"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agent-exporter/remotewrite"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/bench/internal/fleetreport"
	"github.com/ecpio/ecp/bench/internal/latency"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/internal/testbed"
)

// adminPassword is the first admin's password on the benchmark's own ecp.
const adminPassword = "bench-admin-password-1"

type config struct {
	ecpBinary string
	agents    int
	projects  int
	interval  time.Duration
	warmup    time.Duration
	steady    time.Duration
	workers   int
	pollWait  time.Duration
	abnormal  float64
	// upgrades is the chance that a report is the first of its cluster's
	// next EMQX version.
	upgrades float64
	silence  int
	series   int
	conns    string
	dir      string
	// backend receives ecp's remote write: backendSink or backendPrometheus.
	backend string
	// logLines is what each agent ships to ecp per interval, stored in
	// a real VictoriaLogs.
	logLines    int
	summaryJSON string
	// processes is how many child processes drive the agents (1: this
	// one); see children.go.
	processes int
	// replicas is how many `ecp serve` run; members, when positive, the
	// external etcd cluster's size (0: each replica's embedded etcd, which
	// only one replica may have).
	replicas, members int
	// nofile, when positive, is the open-file limit ecp runs under.
	nofile int
	// profileDir, when set, receives pprof profiles of the first replica
	// over the window (profile.go).
	profileDir string
}

func main() { os.Exit(run()) }

func run() int {
	if os.Getenv(childEnv) != "" {
		return childMain()
	}
	var cfg config
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.StringVar(&cfg.ecpBinary, "ecp.binary", "", "ecp binary to run; empty builds ./ecp of this module into a temporary directory.")
	fs.IntVar(&cfg.agents, "agents.count", 1000, "Number of simulated agents (one cluster each).")
	fs.IntVar(&cfg.projects, "projects.count", 10, "Projects the clusters are spread over.")
	fs.DurationVar(&cfg.interval, "report.interval", 15*time.Second, "ecp's --agent.report-interval; agents report (and push) once per interval.")
	fs.DurationVar(&cfg.warmup, "warmup.duration", 0, "Warm-up before measuring (default: 5s more than one interval and than the long-poll wait).")
	fs.DurationVar(&cfg.steady, "steady.duration", 60*time.Second, "Measured steady-state window.")
	fs.IntVar(&cfg.workers, "report.workers", 64, "Concurrent report and push senders (and their kept-alive connections).")
	fs.DurationVar(&cfg.pollWait, "agents.desired-wait", 30*time.Second, "Timeout each agent asks for on its desired-state long-poll (agent-exporter's default).")
	fs.Float64Var(&cfg.abnormal, "agents.abnormal-share", 0.01, "Share of agents reporting a failing rule whose counters grow each report.")
	fs.Float64Var(&cfg.upgrades, "agents.upgrade-share", 0.0005, "Share of reports in which the agent's EMQX has moved to its next patch version (an upgrade: a change a user sees, so one status write each).")
	fs.IntVar(&cfg.silence, "silence.count", 5, "Agents stopped after the window to time their detection; 0 skips it.")
	fs.IntVar(&cfg.series, "remote-write.series", 0, "Series each agent pushes per interval through ecp's remote-write gateway; 0 pushes nothing.")
	fs.StringVar(&cfg.backend, "remote-write.backend", backendSink, "Where ecp forwards remote write: sink (an in-process receiver counting samples) or prometheus (a real Prometheus with its remote-write receiver, from PATH or .tools).")
	fs.IntVar(&cfg.logLines, "logs.lines", 0, "Log lines each agent ships per interval through ecp into a real VictoriaLogs (from PATH or .tools); 0 ships none.")
	fs.StringVar(&cfg.summaryJSON, "summary.json", "", "Also write the summary as JSON to this file (what bench/fleet/sweep reads).")
	fs.StringVar(&cfg.conns, "agents.connections", agentsim.ConnsOneConn, "How each agent holds its connections to ecp: http1-oneconn (agent-exporter's default: one HTTP/1.1 connection per agent, each interval its push and log batch, then its report held as the long-poll until just before the next interval), h2 (agent-exporter --ecp.http2: report, long-poll and push on one HTTP/2 connection per agent) or http1 (a long-poll connection per agent, reports and pushes on --report.workers shared kept-alive connections, as agents before HTTP/2).")
	fs.IntVar(&cfg.processes, "agents.processes", 1, "Processes the agents are driven from: above 1, this benchmark runs itself again that many times, each child driving every n-th agent, and merges what they measured (one process holds at most its open-file limit of connections).")
	fs.IntVar(&cfg.replicas, "ecp.replicas", 1, "ecp replicas to run; above 1 needs --etcd.members. Agent i reports to replica i mod n.")
	fs.IntVar(&cfg.members, "etcd.members", 0, "Members of an external etcd cluster of real etcd processes (built from etcd's Go modules) the replicas share; 0 runs one ecp with its embedded etcd.")
	fs.StringVar(&cfg.profileDir, "ecp.profile", "", "Directory to write pprof profiles of the first ecp replica into: CPU over the measured window, heap and goroutines at its end (ecp runs with --web.enable-pprof); empty takes none.")
	fs.IntVar(&cfg.nofile, "ecp.nofile", 0, "Open-file limit (soft and hard) ecp runs under, to show what it does at the limit; 0 leaves the benchmark's own.")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if cfg.processes <= 0 || cfg.replicas <= 0 || cfg.members < 0 || cfg.nofile < 0 || (cfg.replicas > 1 && cfg.members == 0) {
		fmt.Fprintln(os.Stderr, "--agents.processes and --ecp.replicas must be positive, --etcd.members and --ecp.nofile not negative, and more than one replica needs --etcd.members")
		return 2
	}
	if cfg.agents <= 0 || cfg.projects <= 0 || cfg.interval < time.Second || cfg.workers <= 0 || cfg.steady <= 0 ||
		cfg.series < 0 || cfg.silence < 0 || cfg.abnormal < 0 || cfg.abnormal > 1 || cfg.upgrades < 0 || cfg.upgrades > 1 || cfg.logLines < 0 || cfg.logLines > maxLogLines ||
		(cfg.backend != backendSink && cfg.backend != backendPrometheus) || !slices.Contains([]string{agentsim.ConnsOneConn, agentsim.ConnsH2, agentsim.ConnsHTTP1}, cfg.conns) {
		fmt.Fprintf(os.Stderr, "--agents.count, --projects.count, --report.workers and --steady.duration must be positive, --report.interval at least 1s, --agents.abnormal-share and --agents.upgrade-share within 0..1, --logs.lines within 0..%d, --remote-write.backend sink or prometheus, --agents.connections http1-oneconn, h2 or http1\n", maxLogLines)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "ecp-bench-fleet-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cfg.dir = dir
	sum, err := bench(ctx, cfg, os.Stderr)
	if err != nil {
		if !sum.ecpUp && sum.window > 0 {
			// What the fleet saw before ecp went is the finding.
			fmt.Println(sum.String())
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	fmt.Println(sum.String())
	if cfg.summaryJSON != "" {
		if err := fleetreport.WriteFile(cfg.summaryJSON, sum.record()); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	return 0
}

// summary is what one run measured.
type summary struct {
	cfg         config
	window      time.Duration
	cpu         float64 // share of one core, ecp and its embedded etcd
	rssMiB      int64
	hwmMiB      int64
	reports     int
	p50, p99    time.Duration
	tooMany     int // reports, pushes and log batches answered 429
	unavailable int // … answered 503
	errs        int // other statuses and calls without an answer
	// servedWindow counts the agents with a report answered in the
	// window, servedEver those with one answered at all.
	servedWindow, servedEver int
	// connsRefused is ecp_http_connections_refused_total's growth over the
	// window, connsRefusedTotal its value at the end; ecpUp says every
	// replica ran to the end.
	connsRefused, connsRefusedTotal int64
	ecpUp                           bool
	// costs is each replica's and etcd member's cost; cpu, rssMiB, hwmMiB
	// and ecpFDs sum the replicas, etcdCPU and etcdRSSMiB the external
	// etcd's members.
	costs      []cost
	ecpFDs     int
	etcdCPU    float64
	etcdRSSMiB int64
	revisions  int64
	// dbMiB and dbInUseMiB are etcd's database size and what of it is in
	// use at the window's end.
	dbMiB, dbInUseMiB float64
	regRetries        int64
	pushSamples       int64
	sinkSamples       int64
	detected          int
	silenced          int
	detectMin         time.Duration
	detectMax         time.Duration
	othersAbnormal    int
	// ecpConns is ecp_http_connections_open at the window's end.
	ecpConns int
	// fleetWrites is ecp_fleet_etcd_writes_total's growth by reason.
	fleetWrites map[string]float64
	// written counts the keys written from the window's first revision,
	// by prefix.
	written map[string]int
	// Remote write and logs over the whole run (see fleetreport.Summary);
	// held is -1 when the backend was not counted.
	rwAccepted, rwRefused, rwHeld                        int64
	linesWindow                                          int64
	linesAccepted, linesRefused, linesPending, linesHeld int64
	// dropped is what ecp counted as accepted and not stored, by counter.
	dropped map[string]float64
	// polls counts the desired-state polls answered in the window.
	polls int64
	// rwPending and rwAgentDropped are the refused samples the agents
	// still held at the end, and dropped from a full queue.
	rwPending, rwAgentDropped int64
}

func (s summary) String() string {
	detect := "n/a"
	if s.detected > 0 {
		detect = fmt.Sprintf("%d/%d in %s–%s", s.detected, s.silenced, s.detectMin.Round(100*time.Millisecond), s.detectMax.Round(100*time.Millisecond))
	}
	return fmt.Sprintf("fleet agents=%d projects=%d interval=%s series=%d window=%s ecp_cpu=%.1f%% rss=%dMiB peak_rss=%dMiB reports=%d report_p50=%s report_p99=%s 429s=%d errors=%d etcd_revisions=%d revisions_per_report=%.4f register_429_retries=%d rw_samples_pushed=%d rw_samples_at_sink=%d silent_to_abnormal=%s other_abnormal=%d fleet_etcd_writes=%v etcd_writes_by_prefix=%v"+
		" rw_backend=%s rw_samples_accepted_total=%d rw_samples_refused_total=%d rw_samples_held_total=%d rw_samples_per_s=%.0f log_lines=%d log_lines_per_s=%.0f log_lines_accepted_total=%d log_lines_refused_total=%d log_lines_pending_total=%d log_lines_held_total=%d ecp_dropped=%v connections=%s ecp_open_connections=%d"+
		" load_processes=%d replicas=%d etcd_members=%d ecp_nofile=%d 503s=%d agents_served_window=%d agents_served_ever=%d connections_refused=%d connections_refused_total=%d ecp_up=%t ecp_fds=%d etcd_cpu=%.1f%% etcd_rss=%dMiB"+
		" cpu_per_agent=%.3fmcore rss_per_agent=%.1fKiB fds_per_agent=%.2f per_process=%s polls=%d",
		s.cfg.agents, s.cfg.projects, s.cfg.interval, s.cfg.series, s.window.Round(time.Second), 100*s.cpu, s.rssMiB, s.hwmMiB,
		s.reports, s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.tooMany, s.errs,
		s.revisions, float64(s.revisions)/float64(max(s.reports, 1)), s.regRetries, s.pushSamples, s.sinkSamples, detect, s.othersAbnormal, s.fleetWrites, s.written,
		s.cfg.backend, s.rwAccepted, s.rwRefused, s.rwHeld, float64(s.pushSamples)/max(s.window.Seconds(), 1e-9), s.cfg.logLines, float64(s.linesWindow)/max(s.window.Seconds(), 1e-9),
		s.linesAccepted, s.linesRefused, s.linesPending, s.linesHeld, s.dropped, s.cfg.conns, s.ecpConns,
		max(1, s.cfg.processes), max(1, s.cfg.replicas), s.cfg.members, s.cfg.nofile, s.unavailable, s.servedWindow, s.servedEver, s.connsRefused, s.connsRefusedTotal, s.ecpUp, s.ecpFDs, 100*s.etcdCPU, s.etcdRSSMiB,
		s.perAgent().CPUMillicores, s.perAgent().RSSKiB, s.perAgent().FDs, s.perProcess(), s.polls) +
		fmt.Sprintf(" etcd_db=%.1fMiB etcd_db_in_use=%.1fMiB rw_samples_pending_total=%d rw_samples_agent_dropped_total=%d",
			s.dbMiB, s.dbInUseMiB, s.rwPending, s.rwAgentDropped)
}

// perAgent is the deployment's cost (replicas and external etcd together)
// divided by the fleet.
func (s summary) perAgent() fleetreport.PerAgent {
	n := float64(max(s.cfg.agents, 1))
	return fleetreport.PerAgent{CPUMillicores: 1000 * (s.cpu + s.etcdCPU) / n, RSSKiB: 1024 * float64(s.rssMiB+s.etcdRSSMiB) / n, FDs: float64(s.ecpFDs) / n}
}

// perProcess lists each process's cost: name:cpu%/rssMiB/fds.
func (s summary) perProcess() string {
	parts := make([]string, len(s.costs))
	for i, c := range s.costs {
		parts[i] = fmt.Sprintf("%s:%.1f%%/%dMiB/%dfds", c.name, 100*c.cpu, c.rssMiB, c.fds)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// agent is one simulated agent.
type agent struct {
	index   int
	cluster string
	// base is the replica the agent reports to.
	base     string
	cred     string
	revision int64
	offset   time.Duration
	started  time.Time
	conns    int
	// failing agents report a rule whose failure counters grow.
	failing  bool
	failures int
	// upgrades is the chance that a report finds EMQX upgraded, patch the
	// patch version it reports (5.8.<patch>).
	upgrades float64
	patch    int
	// registered: the agent has its credential and schedule hands it turns.
	registered atomic.Bool
	// silenced agents stop reporting, pushing and polling, as a dead one.
	silenced   atomic.Bool
	lastReport atomic.Int64 // Unix nanoseconds of the last answered report
	logs       logState
	// hc and pollHC are the agent's own clients (--agents.connections h2
	// or http1-oneconn), nil when agents share the benchmark's.
	hc, pollHC *http.Client
	// turns carries the agent's turns (the round's push payload) to its
	// own loop (http1-oneconn), which sends them between polls.
	turns chan []byte
	// unsent holds the pushes ecp refused (429, 503), oldest first, sent
	// again before the next one as agent-exporter does; beyond
	// agentPushQueue the oldest is dropped (unsentDropped, in samples).
	unsentMu      sync.Mutex
	unsent        [][]byte
	unsentDropped int64
}

// agentPushQueue is agent-exporter's remote-write queue
// (remotewrite.DefaultQueueSize): the collections it keeps while ecp
// refuses them.
const agentPushQueue = 8

// results gathers report outcomes inside the measured window.
type results struct {
	mu          sync.Mutex
	measuring   bool
	latency     latency.Histogram
	tooMany     int
	unavailable int
	errs        int
	// Over the whole run: samples refused (429, 503), log lines ecp
	// accepted or refused, and the jobs queued or in a sender (see settle).
	rwRefused, linesAccepted, linesRefused atomic.Int64
	busy                                   atomic.Int64
}

func (r *results) add(d time.Duration, code int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.measuring {
		return
	}
	switch {
	case err != nil:
		r.errs++
	case code == http.StatusTooManyRequests:
		r.tooMany++
	case code == http.StatusServiceUnavailable:
		r.unavailable++
	case code == http.StatusOK || code == http.StatusNoContent:
		if d >= 0 {
			r.latency.Record(d)
		}
	default:
		r.errs++
	}
}

func (r *results) measure(on bool) {
	r.mu.Lock()
	r.measuring = on
	r.mu.Unlock()
}

// sink stands in for Prometheus: it counts the samples ecp forwards.
type sink struct{ samples atomic.Int64 }

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := 0
	for _, ts := range req.Timeseries {
		n += len(ts.Samples)
	}
	s.samples.Add(int64(n))
	w.WriteHeader(http.StatusNoContent)
}

func bench(ctx context.Context, cfg config, log io.Writer) (sum summary, err error) {
	cfg.replicas, cfg.processes = max(1, cfg.replicas), max(1, cfg.processes)
	log = &syncWriter{w: log}
	sum = summary{cfg: cfg, ecpUp: true}
	if cfg.warmup == 0 {
		cfg.warmup = max(cfg.interval, cfg.pollWait) + 5*time.Second
	}
	bin := cfg.ecpBinary
	if bin == "" {
		bin = filepath.Join(cfg.dir, "ecp")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ecpio/ecp/ecp")
		if out, err := cmd.CombinedOutput(); err != nil {
			return sum, fmt.Errorf("build ecp: %w\n%s", err, out)
		}
	}

	sk := &sink{}
	sinkLn, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return sum, fmt.Errorf("listen for the sink: %w", err)
	}
	sinkSrv := &http.Server{Handler: sk, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = sinkSrv.Serve(sinkLn) }()
	defer sinkSrv.Close()

	rwURL := "http://" + sinkLn.Addr().String() + "/api/v1/write"
	// Prometheus scrapes the first replica, as a deployment's scrapes one
	// of them through its Service.
	firstAddr, err := testbed.FreeAddr()
	if err != nil {
		return sum, err
	}
	be, err := startBackends(ctx, cfg, firstAddr, sk)
	if err != nil {
		return sum, err
	}
	defer be.stop()
	if be.promURL != "" {
		rwURL = be.promURL + "/api/v1/write"
	}
	d, err := deploy(ctx, cfg, bin, rwURL, firstAddr)
	if err != nil {
		return sum, err
	}
	defer d.stop()
	defer func() {
		// Whatever failed, a replica that exited is the first thing to say.
		if down := d.down(); err != nil && len(down) > 0 && sum.ecpUp {
			sum.ecpUp = false
			err = fmt.Errorf("ecp exited during the run: %s (then: %w)", strings.Join(down, "\n"), err)
		}
	}()
	base := d.bases[0]
	if err := be.configureLogs(ctx, base); err != nil {
		return sum, err
	}

	t0 := time.Now()
	agents, err := provision(ctx, cfg, base, d.bases)
	if err != nil {
		return sum, err
	}
	fmt.Fprintf(log, "%s: %d clusters in %d projects created and registration tokens issued in %s\n",
		d, cfg.agents, cfg.projects, time.Since(t0).Round(time.Millisecond))

	t1 := time.Now()
	var ld load
	var retries int64
	if cfg.processes > 1 {
		cs, n, err := startChildren(ctx, cfg, d.bases, agents, log)
		if err != nil {
			return sum, err
		}
		ld, retries = cs, n
	} else {
		g, err := startGen(ctx, cfg, agents)
		if err != nil {
			return sum, err
		}
		ld, retries = g, g.retries.Load()
	}
	defer ld.close()
	sum.regRetries = retries
	fmt.Fprintf(log, "registered %d agents over %d load processes in %s (%d retried after 429)\n",
		len(agents), max(1, cfg.processes), time.Since(t1).Round(time.Millisecond), sum.regRetries)

	fmt.Fprintf(log, "warming up for %s\n", cfg.warmup)
	if !agentsim.Sleep(ctx, cfg.warmup) {
		return sum, ctx.Err()
	}
	before, err := reading(ctx, d)
	if err != nil {
		return sum, err
	}
	sinkBefore := sk.samples.Load()
	// Which keys the window writes, from the revision read above.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var writtenMu sync.Mutex
	written := map[string]int{}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for wr := range d.etcd.Watch(wctx, "/", clientv3.WithPrefix(), clientv3.WithRev(before.rev+1)) {
			writtenMu.Lock()
			for _, ev := range wr.Events {
				if wctx.Err() != nil {
					continue
				}
				written[keyPrefix(string(ev.Kv.Key))]++
			}
			writtenMu.Unlock()
		}
	}()
	if _, err := ld.do(ctx, request{Op: opMeasure}); err != nil {
		return sum, err
	}
	fmt.Fprintf(log, "measuring for %s from etcd revision %d\n", cfg.steady, before.rev)
	prof := startProfile(ctx, cfg.profileDir, base, cfg.steady)
	if !agentsim.Sleep(ctx, cfg.steady) {
		return sum, ctx.Err()
	}
	if err := prof.finish(ctx, log); err != nil {
		return sum, err
	}
	w, err := ld.do(ctx, request{Op: opWindow})
	if err != nil {
		return sum, err
	}
	after, err := reading(ctx, d)
	if err != nil {
		return sum, err
	}
	sum.window = after.at.Sub(before.at)
	sum.costs = costs(d, before, after, sum.window)
	for _, c := range sum.costs {
		if c.etcd {
			sum.etcdCPU += c.cpu
			sum.etcdRSSMiB += c.rssMiB
		} else {
			sum.cpu += c.cpu
			sum.rssMiB += c.rssMiB
			sum.hwmMiB += c.hwmMiB
			sum.ecpFDs += c.fds
		}
	}
	sum.ecpConns = int(after.openConns)
	sum.connsRefused = int64(after.refused - before.refused)
	sum.revisions = after.rev - before.rev
	sum.dbMiB, sum.dbInUseMiB = float64(after.dbSize)/(1<<20), float64(after.dbInUse)/(1<<20)
	// Let the watch catch up with the window's last revision.
	for range 40 {
		writtenMu.Lock()
		n := 0
		for _, c := range written {
			n += c
		}
		writtenMu.Unlock()
		if int64(n) >= sum.revisions || !agentsim.Sleep(ctx, 50*time.Millisecond) {
			break
		}
	}
	stopWatch()
	<-watchDone
	sum.written = written
	sum.fleetWrites = map[string]float64{}
	for reason, v := range after.fleetWrites {
		if d := v - before.fleetWrites[reason]; d > 0 {
			sum.fleetWrites[reason] = d
		}
	}
	ww := w.Window
	sum.pushSamples, sum.sinkSamples = ww.Pushed, sk.samples.Load()-sinkBefore
	sum.linesWindow = ww.Lines
	sum.tooMany, sum.unavailable, sum.errs, sum.servedWindow, sum.polls = ww.TooMany, ww.Unavailable, ww.Errors, ww.Served, ww.Polls
	sum.reports = int(ww.Latency.Count())
	sum.p50, sum.p99 = ww.Latency.Quantile(0.5), ww.Latency.Quantile(0.99)
	if cfg.silence > 0 {
		if err := detect(ctx, cfg, base, agents, ld, &sum, log); err != nil {
			return sum, err
		}
	}
	if err := settle(ctx, d, ld, be, &sum, log); err != nil {
		return sum, err
	}
	var refused float64
	if err := d.scrape(ctx, func(l string, v float64) {
		if strings.HasPrefix(l, "ecp_http_connections_refused_total ") {
			refused += v
		}
	}); err == nil {
		sum.connsRefusedTotal = int64(refused)
	}
	if down := d.down(); len(down) > 0 {
		sum.ecpUp = false
		return sum, fmt.Errorf("ecp exited during the run: %s", strings.Join(down, "\n"))
	}
	return sum, nil
}

// provision creates the organization, projects and clusters through the
// public API as an admin and issues each cluster a registration token;
// agent i will report to bases[i%len(bases)].
func provision(ctx context.Context, cfg config, base string, bases []string) ([]*agent, error) {
	api, err := testbed.Login(ctx, base, "admin", adminPassword)
	if err != nil {
		return nil, err
	}
	org, err := api.CreateOrg(ctx, "bench")
	if err != nil {
		return nil, fmt.Errorf("create org: %w", err)
	}
	projects := make([]string, cfg.projects)
	for i := range projects {
		p, err := api.CreateProject(ctx, org.ID, fmt.Sprintf("bench-%02d", i))
		if err != nil {
			return nil, fmt.Errorf("create project: %w", err)
		}
		projects[i] = p.ID
	}
	agents := make([]*agent, cfg.agents)
	err = agentsim.Parallel(ctx, cfg.agents, 8, func(i int) error {
		name := fmt.Sprintf("bench-%05d", i)
		cl, err := api.CreateCluster(ctx, projects[i%len(projects)], name, "")
		if err != nil {
			return fmt.Errorf("create cluster %s: %w", name, err)
		}
		reg, err := api.Register(ctx, cl.ID)
		if err != nil {
			return fmt.Errorf("issue registration for %s: %w", name, err)
		}
		agents[i] = newAgent(cfg, i, cl.ID, reg.Token, bases)
		return nil
	})
	return agents, err
}

// register swaps the agent's registration token for its credential, as
// `agent-exporter register` does, retrying after a 429.
func register(ctx context.Context, hc *http.Client, a *agent, retries *atomic.Int64) error {
	token := a.cred
	for {
		var out agentproto.RegisterResponse
		// With the cluster's identity, as agent-exporter registers: ecp
		// writes its keys with the binding. Without it the first report
		// ecp accepts claims them, a write that a 429 storm after mass
		// registration pushes into the measured window.
		code, err := agentsim.Post(ctx, hc, a.base+agentproto.PathRegister, "", agentproto.RegisterRequest{
			Token: token, AgentVersion: "bench", Hostname: fmt.Sprintf("broker-%d", a.index), Cluster: a.identity()}, &out)
		if err != nil {
			return err
		}
		if code == http.StatusTooManyRequests {
			retries.Add(1)
			if !agentsim.Sleep(ctx, 100*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		if code != http.StatusOK {
			return fmt.Errorf("register agent %d: status %d", a.index, code)
		}
		a.cred, a.revision = out.Credential, out.Desired.Revision
		return nil
	}
}

// identity is the agent's EMQX cluster: each agent's is its own, since a
// name and node names shared with another entry would make ecp refuse it
// as managed elsewhere.
func (a *agent) identity() *agentproto.ClusterIdentity {
	return &agentproto.ClusterIdentity{Name: fmt.Sprintf("emqx-%05d", a.index),
		Nodes: []string{fmt.Sprintf("emqx@n1.c%05d", a.index), fmt.Sprintf("emqx@n2.c%05d", a.index)}}
}

// report is the agent's next report: two nodes, one stopped now and then,
// EMQX upgraded now and then, and for a failing agent a rule whose
// counters grew since the last one.
func (a *agent) report() agentproto.ReportRequest {
	a.conns = max(0, a.conns+rand.IntN(21)-10)
	if rand.Float64() < a.upgrades {
		a.patch++
	}
	version := fmt.Sprintf("5.8.%d", 1+a.patch)
	id := a.identity()
	n1, n2 := agentproto.Node{Name: id.Nodes[0], Status: "running", Version: version, Connections: a.conns / 2, LiveConnections: a.conns / 2},
		agentproto.Node{Name: id.Nodes[1], Status: "running", Version: version, Connections: a.conns - a.conns/2, LiveConnections: a.conns - a.conns/2}
	if rand.IntN(200) == 0 {
		// A node down for one report, back at the next.
		n2 = agentproto.Node{Name: n2.Name, Status: "stopped", Version: version}
	}
	st := agentproto.EMQXStatus{Reachable: true, Version: version, Edition: "Enterprise", StartedAt: a.started,
		Nodes: []agentproto.Node{n1, n2}, Connections: n1.Connections + n2.Connections, LiveConnections: n1.LiveConnections + n2.LiveConnections,
		MaxConnections: 1000, ClusterName: id.Name,
		Rules: agentproto.ResourceCounts{Total: 3, Healthy: 3}, Connectors: agentproto.ResourceCounts{Total: 2, Healthy: 2}}
	if a.failing {
		a.failures += 1 + rand.IntN(5)
		st.Rules = agentproto.ResourceCounts{Total: 3, Healthy: 2, Unhealthy: 1}
		st.Abnormal = []agentproto.Resource{{Kind: agentproto.KindRule, ID: "rule_bench", Name: "bench", Status: "failing",
			Reason: fmt.Sprintf("failed %d, actions failed %d", a.failures, a.failures)}}
	}
	return agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "bench", AppliedRevision: a.revision, EMQX: st}
}

// schedule hands each agent its turn (report, push, log batch) at its
// offset within every interval after start: to cfg.workers senders, or to
// the agent's own loop (http1-oneconn).
func schedule(ctx context.Context, start time.Time, hc *http.Client, agents []*agent, cfg config, res *results, pushed *atomic.Int64) {
	// A job is one agent's turn in a round, with the round's push payload
	// (nil without remote write): a turn sent late still pushes its own
	// round's samples, not a copy of the next round's.
	type job struct {
		a       *agent
		payload []byte
	}
	jobs := make(chan job, len(agents))
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(jobs)
	var payload []byte
	for range cfg.workers {
		wg.Go(func() {
			for j := range jobs {
				c := hc
				if j.a.hc != nil {
					c = j.a.hc
				}
				if ok, _ := turn(ctx, c, j.a, j.payload, cfg, res, pushed, 0); !ok {
					return
				}
			}
		})
	}
	for round := 0; ; round++ {
		if cfg.series > 0 {
			// One payload per round: ecp stamps each push with the
			// agent's project and cluster, so agents may share it.
			var err error
			if payload, err = seriesPayload(cfg.series, time.Now()); err != nil {
				return
			}
		}
		for _, a := range agents {
			if d := time.Until(start.Add(time.Duration(round)*cfg.interval + a.offset)); d > 0 {
				if !agentsim.Sleep(ctx, d) {
					return
				}
			}
			if !a.registered.Load() || a.silenced.Load() {
				continue
			}
			res.busy.Add(1)
			if a.turns == nil {
				jobs <- job{a, payload}
				continue
			}
			select {
			case a.turns <- payload:
			default:
				// The agent has not taken its last turn yet (its poll
				// failed and it is backing off): it skips this one, as
				// a ticker drops the ticks of a slow receiver.
				res.busy.Add(-1)
			}
		}
	}
}

// turn is one agent's turn in a round on c: its report, then its push
// (payload, nil without remote write) and its log batch. With hold > 0
// (http1-oneconn) the push and log batch go first and the report last,
// held by ecp as the long-poll for at most hold, as agent-exporter sends
// it; its latency is then ecp's own time to record it (Server-Timing),
// since the reply comes at the end of the hold. ok is false when ctx
// ended; crowded says ecp answered the held report at once and wants no
// poll before the next turn (agentproto.HeaderHold).
func turn(ctx context.Context, c *http.Client, a *agent, payload []byte, cfg config, res *results, pushed *atomic.Int64, hold time.Duration) (ok, crowded bool) {
	if hold <= 0 && !report(ctx, c, a, res) {
		return false, false
	}
	if payload != nil && !a.pushAll(ctx, c, payload, cfg, res, pushed) {
		return false, false
	}
	if cfg.logLines > 0 {
		code, err := a.shipLogs(ctx, c, a.base, cfg, res)
		if ctx.Err() != nil {
			return false, false
		}
		res.add(-1, code, err)
	}
	if hold > 0 {
		start := time.Now()
		r, err := agentsim.ReportHeld(ctx, c, a.base, a.cred, a.report(), a.revision, hold)
		if ctx.Err() != nil {
			return false, false
		}
		d := time.Since(start)
		if r.Held {
			d = r.Recorded
		}
		res.add(d, r.Code, err)
		if err == nil && r.Code == http.StatusOK {
			// When ecp recorded it: a held reply comes at the hold's end.
			a.lastReport.Store(start.UnixNano())
			// Applied, as an agent would: the next hold waits for a newer one.
			a.revision = max(a.revision, r.Reply.Desired.Revision)
		}
		crowded = r.NextSend
	}
	res.busy.Add(-1)
	return true, crowded
}

// report sends the agent's report unheld; false when ctx ended.
func report(ctx context.Context, c *http.Client, a *agent, res *results) bool {
	var out agentproto.ReportResponse
	start := time.Now()
	code, err := agentsim.Post(ctx, c, a.base+agentproto.PathReport, a.cred, a.report(), &out)
	if ctx.Err() != nil {
		return false
	}
	res.add(time.Since(start), code, err)
	if err == nil && code == http.StatusOK {
		a.lastReport.Store(time.Now().UnixNano())
	}
	return true
}

// pushAll sends the agent's refused pushes again, oldest first, then
// payload; it stops at the first one ecp refuses and keeps it and those
// after it for the next turn. It says false when ctx ended.
func (a *agent) pushAll(ctx context.Context, c *http.Client, payload []byte, cfg config, res *results, pushed *atomic.Int64) bool {
	a.unsentMu.Lock()
	defer a.unsentMu.Unlock()
	queue := slices.Concat(a.unsent, [][]byte{payload})
	a.unsent = nil
	for i, p := range queue {
		code, err := push(ctx, c, a.base, a.cred, p)
		if ctx.Err() != nil {
			return false
		}
		// Pushes count for 429s and errors, not for report latency.
		res.add(-1, code, err)
		if err == nil && code/100 == 2 {
			pushed.Add(int64(cfg.series))
			continue
		}
		res.countPush(code, err, cfg.series)
		if err == nil && (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) {
			a.unsent = queue[i:]
			if over := len(a.unsent) - agentPushQueue; over > 0 {
				a.unsent = a.unsent[over:]
				a.unsentDropped += int64(over * cfg.series)
			}
		}
		return true
	}
	return true
}

// oneConnAgent is an agent on one HTTP/1.1 connection, as agent-exporter
// by default: when schedule hands it its turn (due at start + its offset +
// whole intervals) it pushes, ships its log batch and sends its report
// held as the long-poll until a margin before its next turn; only when ecp
// did not hold the report (or answered it early) does it long-poll (p)
// for the rest of the interval. A silenced agent stops and drops the turns
// still handed to it, so settle's count of busy turns comes back to zero.
func oneConnAgent(ctx context.Context, a *agent, p agentsim.Poller, start time.Time, cfg config, res *results, pushed *atomic.Int64) {
	next := func(now time.Time) time.Time {
		first := start.Add(a.offset)
		if now.Before(first) {
			return first
		}
		return first.Add((now.Sub(first)/cfg.interval + 1) * cfg.interval)
	}
	// As the agent: a tenth of a shorter interval.
	margin := min(agentsim.PollMargin, cfg.interval/10)
	// hold is how long a call sent now may be held: until the margin
	// before the next turn, 0 when less than the margin would be left.
	hold := func() time.Duration {
		now := time.Now()
		if h := min(p.Wait, next(now).Sub(now)-margin); h >= margin {
			return h
		}
		return 0
	}
	// crowded: ecp answered the turn's held report at once and wants no
	// poll before the next turn (agentproto.HeaderHold), as the agent.
	crowded := false
	for !a.silenced.Load() {
		select {
		case payload := <-a.turns:
			var ok bool
			if ok, crowded = turn(ctx, a.hc, a, payload, cfg, res, pushed, max(hold(), time.Millisecond)); !ok {
				return
			}
			continue
		default:
		}
		if h := hold(); h > 0 && !crowded {
			p.Revision = a.revision
			ok, nextSend := p.Once(ctx, h)
			if !ok {
				return
			}
			if !nextSend {
				continue
			}
			// ecp is crowded and closed the connection: as the agent,
			// poll again only after the next turn.
		}
		select {
		case <-ctx.Done():
			return
		case payload := <-a.turns:
			var ok bool
			if ok, crowded = turn(ctx, a.hc, a, payload, cfg, res, pushed, max(hold(), time.Millisecond)); !ok {
				return
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.turns:
			res.busy.Add(-1)
		}
	}
}

// seriesPayload is a remote-write body of n gauge series, encoded by the
// agent's own encoder.
func seriesPayload(n int, at time.Time) ([]byte, error) {
	name, help := "emqx_bench_value", "bench series"
	typ := dto.MetricType_GAUGE
	mf := &dto.MetricFamily{Name: &name, Help: &help, Type: &typ}
	for i := range n {
		lname, lval, v := "i", fmt.Sprint(i), float64(rand.IntN(1000))
		mf.Metric = append(mf.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: &lname, Value: &lval}}, Gauge: &dto.Gauge{Value: &v}})
	}
	b, _, err := remotewrite.Encode([]*dto.MetricFamily{mf}, at)
	return b, err
}

func push(ctx context.Context, hc *http.Client, base, cred string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+agentproto.PathWrite, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build push: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("push: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// detect stops some agents and times, through the public API, how long ecp
// takes from each one's last report to its cluster being abnormal.
func detect(ctx context.Context, cfg config, base string, agents []*agent, ld load, sum *summary, log io.Writer) error {
	api, err := testbed.Login(ctx, base, "admin", adminPassword)
	if err != nil {
		return err
	}
	n := min(cfg.silence, len(agents))
	var silenced []int
	isSilenced := map[int]bool{}
	for i := range n {
		// Not a failing one: their clusters are abnormal already.
		a := agents[(i*len(agents)/n+1)%len(agents)]
		if a.failing {
			continue
		}
		silenced = append(silenced, a.index)
		isSilenced[a.index] = true
	}
	if _, err := ld.do(ctx, request{Op: opSilence, Agents: silenced}); err != nil {
		return err
	}
	wait := 4*cfg.interval + 10*time.Second
	fmt.Fprintf(log, "silenced %d agents; waiting up to %s for their clusters to turn abnormal\n", len(silenced), wait)
	sum.silenced = len(silenced)
	deadline := time.Now().Add(wait)
	found := map[int]time.Time{}
	for len(found) < len(silenced) && time.Now().Before(deadline) {
		if !agentsim.Sleep(ctx, 250*time.Millisecond) {
			return ctx.Err()
		}
		for _, i := range silenced {
			if _, ok := found[i]; ok {
				continue
			}
			cl, err := api.Cluster(ctx, agents[i].cluster)
			if err != nil {
				return fmt.Errorf("read cluster %s: %w", agents[i].cluster, err)
			}
			if cl.State == "abnormal" && cl.StateReason != nil && cl.StateReason.Code == "AgentSilent" {
				found[i] = time.Now()
			}
		}
	}
	last, err := ld.do(ctx, request{Op: opLast, Agents: silenced})
	if err != nil {
		return err
	}
	lags := make([]time.Duration, 0, len(found))
	for i, at := range found {
		lags = append(lags, at.Sub(time.Unix(0, last.Last[i])))
	}
	slices.Sort(lags)
	sum.detected = len(lags)
	if len(lags) > 0 {
		sum.detectMin, sum.detectMax = lags[0], lags[len(lags)-1]
	}
	// Clusters abnormal without reason: neither failing nor silenced.
	var list struct {
		Items []testbed.Cluster `json:"items"`
	}
	if err := api.Do(ctx, http.MethodGet, "/api/v1/clusters?state=abnormal&limit=1000", nil, &list); err != nil {
		return fmt.Errorf("list abnormal clusters: %w", err)
	}
	expected := map[string]bool{}
	for _, a := range agents {
		if a.failing || isSilenced[a.index] {
			expected[a.cluster] = true
		}
	}
	for _, c := range list.Items {
		if c.State == "abnormal" && !expected[c.ID] {
			sum.othersAbnormal++
			if sum.othersAbnormal <= 3 && c.StateReason != nil {
				fmt.Fprintf(log, "cluster %s abnormal unexpectedly: %s: %s\n", c.Name, c.StateReason.Code, c.StateReason.Message)
			}
		}
	}
	return nil
}

// measurement is the deployment's cost and etcd's revision at one moment.
type measurement struct {
	at time.Time
	// procs is each replica's and etcd member's cost by name.
	procs map[string]procReading
	rev   int64
	// fleetWrites is ecp_fleet_etcd_writes_total by reason, openConns
	// ecp_http_connections_open, refused
	// ecp_http_connections_refused_total, all summed over the replicas.
	fleetWrites        map[string]float64
	openConns, refused float64
	// dbSize and dbInUse are etcd's database file and the part of it in
	// use (the largest member's), in bytes.
	dbSize, dbInUse int64
}

func reading(ctx context.Context, d *deployment) (measurement, error) {
	m := measurement{at: time.Now(), fleetWrites: map[string]float64{}}
	var err error
	if m.procs, err = d.readProcs(); err != nil {
		return m, err
	}
	resp, err := d.etcd.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return m, fmt.Errorf("read etcd revision: %w", err)
	}
	m.rev = resp.Header.Revision
	for _, ep := range d.etcd.Endpoints() {
		st, err := d.etcd.Status(ctx, ep)
		if err != nil {
			return m, fmt.Errorf("read etcd status of %s: %w", ep, err)
		}
		m.dbSize, m.dbInUse = max(m.dbSize, st.DbSize), max(m.dbInUse, st.DbSizeInUse)
	}
	err = d.scrape(ctx, func(l string, v float64) {
		if w := fleetWrite.FindStringSubmatch(l); w != nil {
			m.fleetWrites[w[1]] += v
		}
		switch {
		case strings.HasPrefix(l, "ecp_http_connections_open "):
			m.openConns += v
		case strings.HasPrefix(l, "ecp_http_connections_refused_total "):
			m.refused += v
		}
	})
	return m, err
}

// cost is one process's share of the window.
type cost struct {
	name           string
	etcd           bool
	cpu            float64 // share of one core
	rssMiB, hwmMiB int64
	fds            int
}

// costs is every replica's and etcd member's cost over the window, at its
// end for memory and descriptors.
func costs(d *deployment, before, after measurement, window time.Duration) []cost {
	var out []cost
	for _, p := range append(append([]process(nil), d.ecps...), d.members...) {
		b, a := before.procs[p.name], after.procs[p.name]
		out = append(out, cost{name: p.name, etcd: slices.Contains(d.members, p),
			cpu: (a.CPU - b.CPU).Seconds() / window.Seconds(), rssMiB: a.RSSKiB / 1024, hwmMiB: a.HWMKiB / 1024, fds: a.fds})
	}
	return out
}

// keyPrefix is key cut to its first three segments (/ecp/<kind>/<sub>),
// leaving out the ids after them.
func keyPrefix(key string) string {
	parts := strings.SplitN(key, "/", 5)
	return strings.Join(parts[:min(len(parts), 4)], "/")
}

var fleetWrite = regexp.MustCompile(`^ecp_fleet_etcd_writes_total\{.*reason="([^"]*)".*\} `)

var etcdReady = regexp.MustCompile(`embedded etcd ready.*endpoint=(\S+)`)

// etcdClient connects to ecp's embedded etcd as an operator would with
// etcdctl: at the endpoint its log names, with the client certificate in
// <data.dir>/tls.
func etcdClient(logPath, dataDir string) (*clientv3.Client, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return nil, fmt.Errorf("open ecp log: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := etcdReady.FindStringSubmatch(sc.Text()); m != nil {
			tls := filepath.Join(dataDir, "tls")
			return etcdserver.NewClient([]string{strings.Trim(m[1], `"`)}, etcdserver.TLSFiles{
				CAFile: filepath.Join(tls, "ca.crt"), CertFile: filepath.Join(tls, "client.crt"), KeyFile: filepath.Join(tls, "client.key")})
		}
	}
	return nil, errors.New("ecp's log names no embedded etcd endpoint")
}
