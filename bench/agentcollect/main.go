// Command agentcollect measures what agent-exporter costs per collection
// against emqx-sim (3 nodes, 1,000 rules, 1,000 connectors by default): one
// collection's wall and CPU time, the agent's RSS, its /metrics size and
// render time, and remote-write bytes per sample, full and under the
// series cap.
//
// The simulator runs in a child process (this binary re-executed), so the
// CPU time and memory measured are the agent's alone: the parent holds
// exactly what the agent daemon holds for collection (the EMQX client,
// the collector, the /metrics registry with Go and process collectors, and
// the remote-write selector) and serves /metrics over loopback HTTP.
//
//	go run ./bench/agentcollect
//	go run ./bench/agentcollect --target http://127.0.0.1:9100/metrics
//	go build -o /tmp/agent-exporter ./agent-exporter && go run ./bench/agentcollect --agent.binary /tmp/agent-exporter
//
// With --agent.binary it measures the built agent as users run it
// (process.go): `agent-exporter run` registered with a fake ecp that
// takes its remote write, collecting from the simulator every second, and
// prints its CPU per tick and peak RSS from /proc and the EMQX calls per
// tick the simulator served.
//
// With --target it measures only that URL's /metrics (size, fetch time,
// series, remote-write bytes per sample of the same series), for a
// side-by-side comparison with another exporter; the fetch time then
// includes whatever that exporter does per scrape.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/remotewrite"
	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// roleEnv makes the re-executed binary the simulator.
const roleEnv = "ECP_BENCH_AGENTCOLLECT_ROLE"

// Defaults of the flags, and the targets of issue 4.
const (
	DefaultNodes       = 3
	DefaultRules       = 1000
	DefaultConnectors  = 1000
	DefaultCollections = 20
	DefaultRenders     = 20

	targetWall = 100 * time.Millisecond
	targetCPU  = 30 * time.Millisecond
	targetRSS  = 40 << 20
)

func main() { os.Exit(run()) }

type config struct {
	target      string
	nodes       int
	rules       int
	connectors  int
	collections int
	renders     int
	maxSeries   int
	interval    time.Duration
	cpuProfile  string
	agentBinary string
	heapProfile string
	textOnly    bool
}

func run() int {
	var cfg config
	fs := flag.NewFlagSet("agentcollect", flag.ContinueOnError)
	fs.StringVar(&cfg.target, "target", "", "Measure this /metrics URL instead of the agent (another exporter, for comparison).")
	fs.IntVar(&cfg.nodes, "sim.nodes", DefaultNodes, "Simulated EMQX nodes.")
	fs.IntVar(&cfg.rules, "sim.rules", DefaultRules, "Simulated rules.")
	fs.IntVar(&cfg.connectors, "sim.connectors", DefaultConnectors, "Simulated connectors (each with one action).")
	fs.IntVar(&cfg.collections, "collections", DefaultCollections, "Measured collections (after two warm-up ones).")
	fs.IntVar(&cfg.renders, "renders", DefaultRenders, "Measured /metrics fetches.")
	fs.IntVar(&cfg.maxSeries, "remote-write.max-series", remotewrite.DefaultMaxSeries, "Series cap of the measured capped push (the agent's default).")
	fs.DurationVar(&cfg.interval, "collect.pause", 0, "Pause between collections, letting the simulator's counters move (0: back to back).")
	fs.StringVar(&cfg.cpuProfile, "profile.cpu", "", "Write a CPU profile of the measured collections and pushes to this file.")
	fs.StringVar(&cfg.heapProfile, "profile.heap", "", "With --agent.binary: write the agent's heap profile at the end of the measurement to this file.")
	fs.BoolVar(&cfg.textOnly, "sim.prometheus-text-only", false, "The simulator answers /prometheus/data_integration in text only, as a node without its JSON variant.")
	fs.StringVar(&cfg.agentBinary, "agent.binary", "", "Measure this built agent-exporter running as a process (its ticks at 1 s, remote write to a local sink) instead of the collection in this process.")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if cfg.nodes <= 0 || cfg.rules < 0 || cfg.connectors < 0 || cfg.collections <= 0 || cfg.renders <= 0 || cfg.maxSeries < 0 {
		fmt.Fprintln(os.Stderr, "--sim.nodes, --collections and --renders must be positive; --sim.rules, --sim.connectors and --remote-write.max-series not negative")
		return 2
	}
	if os.Getenv(roleEnv) == "sim" {
		return serveSim(cfg)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case cfg.target != "":
		err = measureTarget(ctx, cfg)
	case cfg.agentBinary != "":
		if _, serr := os.Stat(cfg.agentBinary); serr != nil {
			err = fmt.Errorf("%w (%w)", errNoBinary, serr)
			break
		}
		err = measureProcess(ctx, cfg)
	default:
		err = measureAgent(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentcollect:", err)
		return 1
	}
	return 0
}

// serveSim is the child: it serves the simulator on loopback, prints its
// URL and runs until its standard input closes.
func serveSim(cfg config) int {
	opts := sim.DefaultOptions()
	opts.Nodes, opts.Rules, opts.Connectors = cfg.nodes, cfg.rules, cfg.connectors
	opts.PrometheusTextOnly = cfg.textOnly
	s, err := sim.New(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentcollect sim:", err)
		return 1
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentcollect sim:", err)
		return 1
	}
	srv := &http.Server{Handler: countCalls(s.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = s.Run(ctx) }()
	fmt.Printf("http://%s\n", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	_ = s.Stop(sctx)
	return 0
}

// startSim re-executes this binary as the simulator and returns its URL
// and a function that stops it.
func startSim(ctx context.Context) (string, func(), error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), roleEnv+"=sim")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, fmt.Errorf("simulator stdin: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("simulator stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start simulator: %w", err)
	}
	stop := func() { _ = stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("simulator did not say where it listens: %w", err)
	}
	return strings.TrimSpace(line), stop, nil
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stats summarises repeated measurements.
type stats []time.Duration

func (s stats) avg() time.Duration {
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return sum / time.Duration(max(len(s), 1))
}

func (s stats) max() time.Duration { return slices.Max(s) }

func (s stats) median() time.Duration {
	c := slices.Clone(s)
	slices.Sort(c)
	return c[len(c)/2]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func mib(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MiB" }

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISSED"
}

func measureAgent(ctx context.Context, cfg config) error {
	url, stopSim, err := startSim(ctx)
	if err != nil {
		return err
	}
	defer stopSim()

	hc := transport.New(transport.Options{Timeout: 10 * time.Second})
	defer hc.CloseIdleConnections()
	api, err := emqx.New(emqx.Config{APIURL: url, Username: sim.DefaultUsername, Password: sim.DefaultPassword, HTTPClient: hc})
	if err != nil {
		return fmt.Errorf("emqx client: %w", err)
	}
	col := collector.New(nil)
	col.SetAPI(api)
	// As the daemon: /metrics from a registry with Go and process
	// collectors, the push gathered by the EMQX exporter itself.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.NewExporter(col), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pushed := collector.NewPushGatherer(col)
	sel := remotewrite.NewSelector(cfg.maxSeries, 0)

	collect := func() (*collector.Snapshot, time.Duration, time.Duration) {
		c0, t0 := cpuTime(), time.Now()
		snap := col.Collect(ctx)
		return snap, time.Since(t0), cpuTime() - c0
	}
	for range 2 { // login, connections, first counters
		if snap, _, _ := collect(); !snap.Up {
			return fmt.Errorf("emqx-sim at %s not reachable: %v", url, snap.Problem)
		}
	}
	var wall, cpu, pushWall, pushCPU stats
	var last remotewrite.Push
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	for range cfg.collections {
		if cfg.interval > 0 {
			time.Sleep(cfg.interval)
		}
		snap, w, c := collect()
		for _, r := range snap.Results {
			if r.Err != nil {
				return fmt.Errorf("sub-collector %s failed: %w", r.Name, r.Err)
			}
		}
		wall, cpu = append(wall, w), append(cpu, c)
		c0, t0 := cpuTime(), time.Now()
		mfs, err := pushed.Gather()
		if err != nil {
			return fmt.Errorf("gather pushed series: %w", err)
		}
		if last, err = sel.Encode(mfs, snap.CollectedAt); err != nil {
			return err
		}
		pushWall, pushCPU = append(pushWall, time.Since(t0)), append(pushCPU, cpuTime()-c0)
	}
	pprof.StopCPUProfile()
	snap := col.Latest()

	srv, metricsURL, err := serveMetrics(ctx, reg)
	if err != nil {
		return err
	}
	defer srv.Close()
	scrape, err := fetch(ctx, metricsURL, cfg.renders)
	if err != nil {
		return err
	}
	// Memory now, after collections, pushes and scrapes: what follows is
	// the benchmark's own analysis, which the agent never does.
	kib, err := agentsim.StatusKiB("self", "VmRSS", "VmHWM", "RssAnon", "RssFile")
	if err != nil {
		return err
	}
	rss, peak, anon, file := kib[0]<<10, kib[1]<<10, kib[2]<<10, kib[3]<<10
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	if err := scrape.analyse(); err != nil {
		return err
	}
	mfs, err := pushed.Gather()
	if err != nil {
		return fmt.Errorf("gather pushed series: %w", err)
	}
	full, fullSamples, err := remotewrite.Encode(mfs, snap.CollectedAt)
	if err != nil {
		return err
	}

	fmt.Printf("agentcollect: emqx-sim %d nodes, %d rules, %d connectors, %d actions, %d sources; %d collections, %d /metrics fetches; %s/%s, GOMAXPROCS %d\n",
		len(snap.Nodes), len(snap.Rules), len(snap.Connectors), len(snap.Actions), len(snap.Sources), cfg.collections, cfg.renders,
		runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	fmt.Printf("collection wall        avg %-9s median %-9s max %-9s (target ≤ %s) %s\n", ms(wall.avg()), ms(wall.median()), ms(wall.max()), ms(targetWall), verdict(wall.avg() <= targetWall))
	fmt.Printf("collection cpu         avg %-9s median %-9s max %-9s (target ≤ %s) %s\n", ms(cpu.avg()), ms(cpu.median()), ms(cpu.max()), ms(targetCPU), verdict(cpu.avg() <= targetCPU))
	fmt.Printf("push encode wall       avg %-9s median %-9s max %s\n", ms(pushWall.avg()), ms(pushWall.median()), ms(pushWall.max()))
	fmt.Printf("push encode cpu        avg %-9s median %-9s max %s\n", ms(pushCPU.avg()), ms(pushCPU.median()), ms(pushCPU.max()))
	fmt.Printf("agent rss              %s (anonymous %s, file-backed %s), peak %s, Go heap in use %s, released %s (target ≤ %s) %s\n",
		mib(rss), mib(anon), mib(file), mib(peak), mib(int64(mem.HeapInuse)), mib(int64(mem.HeapReleased)), mib(targetRSS), verdict(rss <= targetRSS))
	scrape.print("/metrics")
	fmt.Printf("remote write full      %d series, %d bytes, %.2f bytes/sample\n", fullSamples, len(full), float64(len(full))/float64(max(fullSamples, 1)))
	fmt.Printf("remote write capped    %d series (%d samples), %d left out by --remote-write.max-series %d, %d bytes, %.2f bytes/sample\n",
		last.Series, last.Samples, last.Capped, cfg.maxSeries, len(last.Body), float64(len(last.Body))/float64(max(last.Samples, 1)))
	return nil
}

// serveMetrics serves reg's /metrics on loopback as the daemon does.
func serveMetrics(ctx context.Context, reg *prometheus.Registry) (*http.Server, string, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("listen for /metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, "http://" + ln.Addr().String() + "/metrics", nil
}

// scrape is what fetching a /metrics URL gave.
type scrape struct {
	times     stats
	bytes     int
	gzipBytes int
	series    int
	rwBytes   int
	rwSamples int
	body      []byte // the last fetch
}

func (s scrape) print(what string) {
	gz := fmt.Sprintf("%d gzipped", s.gzipBytes)
	if s.gzipBytes == s.bytes {
		gz = "the server does not gzip"
	}
	fmt.Printf("%-22s %d bytes (%s), %d series, fetch+render avg %s median %s max %s\n", what, s.bytes, gz, s.series, ms(s.times.avg()), ms(s.times.median()), ms(s.times.max()))
	fmt.Printf("%-22s %d samples, %d bytes, %.2f bytes/sample (same series as remote write 1.0, snappy)\n", what+" as remote write", s.rwSamples, s.rwBytes, float64(s.rwBytes)/float64(max(s.rwSamples, 1)))
}

// fetch gets url n times in the text format, as Prometheus would without
// compression, then once gzipped, and encodes the series as a push.
func fetch(ctx context.Context, url string, n int) (scrape, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableCompression: true}}
	defer hc.CloseIdleConnections()
	get := func(gzip bool) ([]byte, time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, 0, fmt.Errorf("target %q: %w", url, err)
		}
		req.Header.Set("Accept", "text/plain;version=0.0.4")
		if gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return nil, 0, fmt.Errorf("fetch %s: %w", url, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, 0, fmt.Errorf("fetch %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, 0, fmt.Errorf("fetch %s: status %d", url, resp.StatusCode)
		}
		return body, time.Since(t0), nil
	}
	var out scrape
	var body []byte
	for range n + 1 {
		b, d, err := get(false)
		if err != nil {
			return out, err
		}
		if body != nil { // the first fetch warms connections up
			out.times = append(out.times, d)
		}
		body = b
	}
	out.bytes = len(body)
	gz, _, err := get(true)
	if err != nil {
		return out, err
	}
	out.gzipBytes = len(gz)
	out.body = body
	return out, nil
}

// analyse counts the series of the fetched exposition and encodes them as
// a remote-write request.
func (s *scrape) analyse() error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(s.body))
	if err != nil {
		return fmt.Errorf("parse the fetched exposition: %w", err)
	}
	mfs := make([]*dto.MetricFamily, 0, len(fams))
	for _, mf := range fams {
		mfs = append(mfs, mf)
	}
	s.rwBytesFrom(mfs)
	for line := range strings.SplitSeq(string(s.body), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			s.series++
		}
	}
	return nil
}

func (s *scrape) rwBytesFrom(mfs []*dto.MetricFamily) {
	body, n, err := remotewrite.Encode(mfs, time.Now())
	if err == nil {
		s.rwBytes, s.rwSamples = len(body), n
	}
}

func measureTarget(ctx context.Context, cfg config) error {
	s, err := fetch(ctx, cfg.target, cfg.renders)
	if err != nil {
		return err
	}
	if err := s.analyse(); err != nil {
		return err
	}
	fmt.Printf("agentcollect: target %s, %d fetches\n", cfg.target, cfg.renders)
	s.print("/metrics")
	return nil
}
