// Package faults is the fault campaign of issue #14 on the built binaries:
// three `ecp serve` replicas on a real 3-member etcd cluster (etcd built from
// its own Go modules at the version ecp's go.mod pins), agents reaching the
// replicas through one loopback round-robin balancer as they would through a
// Service, each agent beside its own emqx-sim. Each test injects one fault
// while the agents report, watches what an operator would see through the
// API (every cluster's state, its record, its reports arriving) and ends
// with a summary line saying what was lost.
//
// The default run is small (a handful of agents, outages of seconds); the
// same scenarios run at scale with flags, e.g.
//
//	go test -count=1 -timeout 60m ./e2e/faults/ -faults.agents 30 -faults.quorum-outage 60s -v
package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

var (
	agentsFlag   = flag.Int("faults.agents", 3, "agents (each with its own emqx-sim) in each scenario")
	intervalFlag = flag.Duration("faults.interval", 2*time.Second, "ecp's --agent.report-interval")
	quorumFlag   = flag.Duration("faults.quorum-outage", 15*time.Second, "how long etcd stays without quorum")
)

const adminPassword = "faults-admin-password"

var (
	bins    testbed.Binaries
	etcdBin string
	binDir  string
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	var err error
	binDir, err = os.MkdirTemp("", "ecp-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	bins, err = testbed.Build(ctx, "../..", binDir, filepath.Join(binDir, "dist"))
	if err == nil {
		etcdBin, err = testbed.BuildEtcd(ctx, "../..", binDir)
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(binDir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(binDir)
	os.Exit(code)
}

// replica is one `ecp serve` behind the balancer.
type replica struct {
	name string
	addr string
	proc *testbed.Proc
}

func (r *replica) url() string { return "http://" + r.addr }

// agent is one registered agent-exporter and the entry it reports for.
type agent struct {
	id      string
	managed time.Time
	metrics string
	proc    *testbed.Proc
}

// fleet is the whole deployment of one scenario.
type fleet struct {
	t        *testing.T
	dir      string
	interval time.Duration
	etcd     *testbed.EtcdCluster
	replicas []*replica
	lb       *testbed.Balancer
	api      *testbed.Client
	project  string
	agents   []*agent
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("fault campaign: runs the built binaries and a real etcd cluster")
	}
	f := &fleet{t: t, dir: t.TempDir(), interval: *intervalFlag}
	ctx := t.Context()
	var err error
	f.etcd, err = testbed.StartEtcdCluster(ctx, etcdBin, filepath.Join(f.dir, "etcd"), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.etcd.Stop)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if err := os.WriteFile(f.keyFile(), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		addr, err := testbed.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		f.replicas = append(f.replicas, &replica{name: fmt.Sprintf("ecp-%d", i+1), addr: addr})
	}
	backends := make([]string, len(f.replicas))
	for i, r := range f.replicas {
		backends[i] = r.addr
	}
	if f.lb, err = testbed.StartBalancer(backends); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.lb.Close)
	for _, r := range f.replicas {
		f.startReplica(r, bins.Path("ecp"))
	}
	if f.api, err = testbed.Login(ctx, f.base(), "admin", adminPassword); err != nil {
		t.Fatal(err)
	}
	org, err := f.api.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.api.CreateProject(ctx, org.ID, "plant")
	if err != nil {
		t.Fatal(err)
	}
	f.project = p.ID
	for i := range *agentsFlag {
		f.addAgent(i)
	}
	return f
}

func (f *fleet) keyFile() string { return filepath.Join(f.dir, "secrets.key") }

// base is the one URL agents and the operator use: the balancer.
func (f *fleet) base() string { return "http://" + f.lb.Addr() }

// startReplica runs bin as replica r (its address, its data dir) and waits
// until it is ready.
func (f *fleet) startReplica(r *replica, bin string) {
	f.t.Helper()
	p, err := testbed.Start(r.name, bin, []string{"serve",
		"--web.listen-address", r.addr, "--web.external-url", f.base(),
		"--etcd.endpoints", f.etcd.Endpoints(), "--secrets.key-file", f.keyFile(),
		"--data.dir", filepath.Join(f.dir, r.name), "--downloads.dir", bins.DistDir,
		"--agent.report-interval", f.interval.String(), "--log.level", "debug"},
		[]string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword},
		filepath.Join(f.dir, "logs", r.name+".log"))
	if err != nil {
		f.t.Fatal(err)
	}
	r.proc = p
	f.t.Cleanup(func() {
		_ = p.Stop()
		if f.t.Failed() {
			f.t.Logf("log of %s (pid %d):\n%s", r.name, p.PID(), p.Tail(60000))
		}
	})
	if err := p.WaitReady(f.t.Context(), r.url()+"/-/ready", time.Minute); err != nil {
		f.t.Fatal(err)
	}
}

// addAgent creates an entry, runs an emqx-sim for it and registers an
// agent with the commands ecp renders, then waits until it runs.
func (f *fleet) addAgent(i int) {
	f.t.Helper()
	ctx := f.t.Context()
	simAddr, err := testbed.FreeAddr()
	if err != nil {
		f.t.Fatal(err)
	}
	sim, err := testbed.Start("emqx-sim", bins.Path("emqx-sim"), []string{"--listen", simAddr, "--nodes", "3", "--rules", "5",
		"--connectors", "2", "--seed", strconv.Itoa(i + 1), "--version", "5.8.9", "--tick-interval", "500ms"},
		nil, filepath.Join(f.dir, "logs", fmt.Sprintf("sim-%d.log", i)))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = sim.Stop() })
	if err := sim.WaitReady(ctx, "http://"+simAddr+"/status", 30*time.Second); err != nil {
		f.t.Fatal(err)
	}
	entry, err := f.api.CreateCluster(ctx, f.project, fmt.Sprintf("line-%d", i), "http://"+simAddr)
	if err != nil {
		f.t.Fatal(err)
	}
	reg, err := f.api.Register(ctx, entry.ID)
	if err != nil {
		f.t.Fatal(err)
	}
	setup := testbed.AgentSetup{Dir: filepath.Join(f.dir, fmt.Sprintf("agent-%d", i)), EMQXUsername: "admin", EMQXPassword: "public",
		CollectInterval: f.interval}
	if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
		f.t.Fatal(err)
	}
	p, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		_ = p.Stop()
		if f.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(setup.Dir, "agent.log"))
			f.t.Logf("agent log of %s (last 3000 bytes):\n%s", entry.ID, b[max(0, len(b)-3000):])
		}
	})
	cl, err := f.api.WaitState(ctx, entry.ID, "running", time.Minute)
	if err != nil {
		f.t.Fatal(err)
	}
	f.agents = append(f.agents, &agent{id: entry.ID, managed: cl.ManagedSince, metrics: "http://" + setup.ListenAddress + "/metrics", proc: p})
}

// clusters lists the project's entries through the balancer.
func (f *fleet) clusters(ctx context.Context) ([]testbed.Cluster, error) {
	var out struct {
		Items []testbed.Cluster `json:"items"`
	}
	err := f.api.Do(ctx, http.MethodGet, "/api/v1/projects/"+f.project+"/clusters", nil, &out)
	return out.Items, err
}

// watch is what the observer saw during a scenario.
type watch struct {
	// end stops the watch, so what it saw is the scenario's alone.
	end       context.CancelFunc
	mu        sync.Mutex
	notRun    []string // "cluster state (reason) at t"
	apiErrors int
	polls     int
	// sent holds each agent's successful report times, from its
	// agent_exporter_reports_sent_total counter.
	sent map[string][]time.Time
	last map[string]float64
	// failures is each agent's agent_exporter_report_failures_total at start and end.
	failStart, failEnd map[string]float64
}

// steadyFleet is the run-up of every fault scenario: a new fleet, watched
// (observe) until w.end or the end of the test, whose agents have
// reported for two intervals; ctx ends with the watch.
func steadyFleet(t *testing.T) (f *fleet, ctx context.Context, w *watch) {
	t.Helper()
	f = newFleet(t)
	ctx, end := context.WithCancel(t.Context())
	w = f.observe(ctx)
	w.end = end
	sleep(ctx, 2*f.interval)
	return f, ctx, w
}

// observe polls the API and every agent's metrics until ctx ends, noting
// any cluster seen in a state other than running and every report sent.
func (f *fleet) observe(ctx context.Context) *watch {
	w := &watch{sent: map[string][]time.Time{}, last: map[string]float64{}, failStart: map[string]float64{}, failEnd: map[string]float64{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			items, err := f.clusters(cctx)
			cancel()
			w.mu.Lock()
			w.polls++
			if err != nil {
				w.apiErrors++
			}
			for _, c := range items {
				if c.State != "running" {
					reason := ""
					if c.StateReason != nil {
						reason = c.StateReason.Code + ": " + c.StateReason.Message
					}
					w.notRun = append(w.notRun, fmt.Sprintf("%s %s (%s) at %s", c.ID, c.State, reason, time.Now().Format("15:04:05.000")))
				}
			}
			w.mu.Unlock()
			sleep(ctx, 200*time.Millisecond)
		}
	})
	for _, a := range f.agents {
		wg.Go(func() {
			first := true
			for ctx.Err() == nil {
				sent, fails, err := agentCounters(ctx, a.metrics)
				now := time.Now()
				w.mu.Lock()
				if err == nil {
					if first {
						w.failStart[a.id] = fails
						first = false
					} else if sent > w.last[a.id] {
						w.sent[a.id] = append(w.sent[a.id], now)
					}
					w.last[a.id] = sent
					w.failEnd[a.id] = fails
				}
				w.mu.Unlock()
				sleep(ctx, 100*time.Millisecond)
			}
		})
	}
	f.t.Cleanup(wg.Wait)
	return w
}

// gaps returns, over all agents, the longest time between two successful
// reports, and the first report after t of the slowest agent.
func (w *watch) gaps(t time.Time) (longest, resumed time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, times := range w.sent {
		for i := 1; i < len(times); i++ {
			longest = max(longest, times[i].Sub(times[i-1]))
		}
		for _, at := range times {
			if at.After(t) {
				resumed = max(resumed, at.Sub(t))
				break
			}
		}
	}
	return longest, resumed
}

// failed is how many report attempts failed on the agents during the watch.
func (w *watch) failed() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	total := 0.0
	for id, end := range w.failEnd {
		total += end - w.failStart[id]
	}
	return total
}

func (w *watch) abnormal() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.notRun...)
}

// agentCounters reads reports sent and failed from an agent's /metrics.
func agentCounters(ctx context.Context, url string) (sent, failed float64, err error) {
	err = scrape(ctx, url, func(name string, v float64) {
		switch name {
		case "agent_exporter_reports_sent_total":
			sent = v
		case "agent_exporter_report_failures_total":
			failed = v
		}
	})
	return sent, failed, err
}

// scrape calls sample with each sample line's series (name and labels) and
// value.
func scrape(ctx context.Context, url string, sample func(series string, v float64)) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", url, err)
	}
	for l := range strings.SplitSeq(string(body), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if v, err := strconv.ParseFloat(l[i+1:], 64); i > 0 && err == nil {
			sample(l[:i], v)
		}
	}
	return nil
}

// agentReplies sums, over the running replicas, the agent API's replies
// by status code (ecp_http_request_duration_seconds_count).
func (f *fleet) agentReplies(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	for _, r := range f.replicas {
		if exited, _ := r.proc.Exited(); exited {
			continue
		}
		_ = scrape(ctx, r.url()+"/metrics", func(series string, v float64) {
			if !strings.HasPrefix(series, "ecp_http_request_duration_seconds_count{") || !strings.Contains(series, `route="/api/v1/agent/`) {
				return
			}
			_, code, _ := strings.Cut(series, `code="`)
			code, _, _ = strings.Cut(code, `"`)
			out[code] += v
		})
	}
	return out
}

// leaderReplica returns the replica that runs the liveness sweeper.
func (f *fleet) leaderReplica(ctx context.Context) *replica {
	for _, r := range f.replicas {
		lead := false
		_ = scrape(ctx, r.url()+"/metrics", func(series string, v float64) {
			if series == "ecp_fleet_leader" && v == 1 {
				lead = true
			}
		})
		if lead {
			return r
		}
	}
	return nil
}

// intact checks through the API that every entry still runs with the
// record it had (same managed-since time) and reported after since.
func (f *fleet) intact(ctx context.Context, since time.Time) {
	f.t.Helper()
	for _, a := range f.agents {
		cl, err := f.api.Cluster(ctx, a.id)
		if err != nil {
			f.t.Errorf("cluster %s: %v", a.id, err)
			continue
		}
		if cl.State != "running" || !cl.ManagedSince.Equal(a.managed) || cl.Nodes != 3 || cl.Version != "5.8.9" {
			f.t.Errorf("cluster %s after the fault: state %s, managed since %s (was %s), %d nodes, version %q", a.id, cl.State, cl.ManagedSince, a.managed, cl.Nodes, cl.Version)
		}
		if !cl.LastReportAt.After(since) {
			f.t.Errorf("cluster %s: last report at %s, none since %s", a.id, cl.LastReportAt, since)
		}
	}
}

// buildSecond compiles ecp once more from the same commit into its own
// directory: the "new version" of a rolling upgrade.
func buildSecond(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", filepath.Join(dir, "ecp"), "./ecp")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second build of ecp: %v\n%s", err, out)
	}
	return filepath.Join(dir, "ecp")
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
