package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecpio/ecp/bench/internal/agentsim"
)

// binDir holds the ecp the tests build once; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		// A load process of a test run with --agents.processes.
		os.Exit(childMain())
	}
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ecpBinary builds ./ecp once for the tests of this package.
var ecpBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "ecp-bench-fleet-test-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "ecp")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ecpio/ecp/ecp").CombinedOutput(); err != nil {
		return "", &exec.Error{Name: string(out), Err: err}
	}
	return bin, nil
})

// smokeConfig is a handful of agents at a 1 s interval.
func smokeConfig(t *testing.T) config {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the built ecp")
	}
	bin, err := ecpBinary()
	if err != nil {
		t.Fatalf("build ecp: %v", err)
	}
	return config{ecpBinary: bin, agents: 5, projects: 2, interval: time.Second, warmup: 3 * time.Second,
		steady: 3 * time.Second, workers: 4, pollWait: 2 * time.Second, abnormal: 0.2, silence: 1, series: 5, backend: backendSink, conns: agentsim.ConnsOneConn, dir: t.TempDir()}
}

// TestFleetSmoke runs the benchmark end to end at a handful of agents: the
// real ecp built and started, clusters created through the API, agents
// registered, reporting, pushing and polling, one of them silenced; agents
// on one HTTP/1.1 connection each (the agent's default) and on HTTP/2.
func TestFleetSmoke(t *testing.T) {
	for _, conns := range []string{agentsim.ConnsOneConn, agentsim.ConnsH2} {
		t.Run(conns, func(t *testing.T) { fleetSmoke(t, conns) })
	}
}

func fleetSmoke(t *testing.T, conns string) {
	cfg := smokeConfig(t)
	cfg.conns = conns
	var log strings.Builder
	sum, err := bench(t.Context(), cfg, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(sum.String())
	if sum.reports < 5 || sum.errs != 0 || sum.tooMany != 0 {
		t.Errorf("reports %d, errors %d, 429s %d; want at least one report per agent, no error, no 429\n%s", sum.reports, sum.errs, sum.tooMany, log.String())
	}
	if sum.rssMiB <= 0 || sum.p99 <= 0 {
		t.Errorf("rss %d MiB, p99 %s; want both measured", sum.rssMiB, sum.p99)
	}
	if sum.pushSamples == 0 || sum.sinkSamples == 0 {
		t.Errorf("samples pushed %d, at the sink %d; want both", sum.pushSamples, sum.sinkSamples)
	}
	if sum.rwHeld != sum.rwAccepted {
		t.Errorf("the sink holds %d samples, ecp accepted %d; want all of them", sum.rwHeld, sum.rwAccepted)
	}
	if sum.detected != 1 || sum.othersAbnormal != 0 {
		t.Errorf("silenced agents detected %d of %d, other clusters abnormal %d; want 1 of 1 and none\n%s", sum.detected, sum.silenced, sum.othersAbnormal, log.String())
	}
	// One connection per agent, plus the benchmark's own scrape and API
	// clients.
	if sum.ecpConns > 5+3 {
		t.Errorf("ecp holds %d connections for 5 agents, want one per agent (and the benchmark's own few)", sum.ecpConns)
	}
	if !strings.HasPrefix(sum.String(), "fleet agents=5 ") {
		t.Errorf("summary %q", sum.String())
	}
}

// TestFleetSmokeStores runs the benchmark at a handful of agents with a
// real Prometheus behind ecp's remote-write gateway and log batches stored
// in a real VictoriaLogs: every sample and line ecp accepted is in the
// store at the end.
func TestFleetSmokeStores(t *testing.T) {
	cfg := smokeConfig(t)
	cfg.agents, cfg.silence, cfg.backend, cfg.logLines = 3, 0, backendPrometheus, 20
	var log strings.Builder
	sum, err := bench(t.Context(), cfg, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(sum.String())
	if sum.errs != 0 || sum.tooMany != 0 || sum.rwRefused != 0 || sum.linesRefused != 0 {
		t.Errorf("errors %d, 429s %d, samples refused %d, lines refused %d; want none\n%s", sum.errs, sum.tooMany, sum.rwRefused, sum.linesRefused, log.String())
	}
	if sum.rwAccepted == 0 || sum.rwHeld != sum.rwAccepted {
		t.Errorf("Prometheus holds %d samples, ecp accepted %d; want all of them, and some", sum.rwHeld, sum.rwAccepted)
	}
	if sum.linesWindow == 0 || sum.linesAccepted == 0 || sum.linesHeld != sum.linesAccepted || sum.linesPending != 0 {
		t.Errorf("lines in the window %d, accepted %d, in VictoriaLogs %d, pending %d; want all accepted lines stored and none pending",
			sum.linesWindow, sum.linesAccepted, sum.linesHeld, sum.linesPending)
	}
	r := sum.record()
	if r.RemoteWriteBackend != backendPrometheus || r.LogLines != 20 || r.SamplesHeld != r.SamplesAccepted || r.LinesPerSecond <= 0 {
		t.Errorf("record %+v", r)
	}
}

// TestFleetSmokeProcesses drives the agents from two child processes (the
// test binary re-executed): both register and report their share, and the
// parent's summary merges them (every agent served, every report in the
// latency count, the silenced agent's last report found in its child).
func TestFleetSmokeProcesses(t *testing.T) {
	cfg := smokeConfig(t)
	cfg.agents, cfg.processes = 6, 2
	var log strings.Builder
	sum, err := bench(t.Context(), cfg, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(sum.String())
	if sum.servedWindow != 6 || sum.servedEver != 6 || sum.reports < 6*2 || sum.errs != 0 {
		t.Errorf("agents served in the window %d, ever %d, reports %d, errors %d; want all 6 agents of both processes served, at least 12 reports, no error\n%s",
			sum.servedWindow, sum.servedEver, sum.reports, sum.errs, log.String())
	}
	if sum.pushSamples == 0 || sum.rwHeld != sum.rwAccepted {
		t.Errorf("samples pushed %d; the sink holds %d of %d accepted; want all of them", sum.pushSamples, sum.rwHeld, sum.rwAccepted)
	}
	if sum.detected != 1 || sum.detectMax <= 0 || sum.detectMax > 3*cfg.interval+5*time.Second {
		t.Errorf("silenced agents detected %d in %s; want 1 within 3 intervals and 5 s\n%s", sum.detected, sum.detectMax, log.String())
	}
	if !strings.Contains(sum.String(), " load_processes=2 ") {
		t.Errorf("summary does not name its 2 load processes: %s", sum.String())
	}
}

// TestFleetSmokeReplicas runs three replicas on a real three-member etcd
// cluster, the agents spread over the replicas: every replica's and every
// member's cost is read, and every agent (two per replica) is served.
func TestFleetSmokeReplicas(t *testing.T) {
	cfg := smokeConfig(t)
	cfg.agents, cfg.replicas, cfg.members = 6, 3, 3
	var log strings.Builder
	sum, err := bench(t.Context(), cfg, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(sum.String())
	if sum.servedWindow != 6 || sum.errs != 0 || sum.tooMany != 0 {
		t.Errorf("agents served %d, errors %d, 429s %d; want all 6 over the 3 replicas, no error\n%s", sum.servedWindow, sum.errs, sum.tooMany, log.String())
	}
	var replicas, members int
	for _, c := range sum.costs {
		if c.rssMiB <= 0 || c.fds <= 0 {
			t.Errorf("%s: rss %d MiB, %d descriptors; want both read from /proc", c.name, c.rssMiB, c.fds)
		}
		if c.etcd {
			members++
		} else {
			replicas++
		}
	}
	if replicas != 3 || members != 3 || sum.etcdRSSMiB <= 0 {
		t.Errorf("costs of %d replicas and %d etcd members (etcd rss %d MiB); want 3 and 3", replicas, members, sum.etcdRSSMiB)
	}
	if sum.detected != 1 || sum.othersAbnormal != 0 {
		t.Errorf("silenced agents detected %d of %d, other clusters abnormal %d; want 1 of 1 and none\n%s", sum.detected, sum.silenced, sum.othersAbnormal, log.String())
	}
	r := sum.record()
	if r.Replicas != 3 || r.EtcdMembers != 3 || len(r.Processes) != 6 || r.PerAgent.RSSKiB <= 0 {
		t.Errorf("record replicas %d, members %d, processes %d, per agent %+v", r.Replicas, r.EtcdMembers, len(r.Processes), r.PerAgent)
	}
}

// TestFleetAtOpenFileLimit runs ecp under a 200-descriptor limit (room for
// 100 connections) with 160 agents each holding one: ecp stays up and, past
// nine tenths of its connections, holds no long-poll (package longpoll,
// "Crowding"), so agents take turns on connections and every one of them
// is served every interval. Before, the first 100 agents held their
// connections and the other 60 were refused and never served. The same
// run at 20,000 agents against 20,000 descriptors is in docs/benchmarks.md.
func TestFleetAtOpenFileLimit(t *testing.T) {
	cfg := smokeConfig(t)
	cfg.agents, cfg.nofile, cfg.series, cfg.silence = 160, 200, 0, 0
	var log strings.Builder
	sum, err := bench(t.Context(), cfg, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Log(sum.String())
	if !sum.ecpUp {
		t.Error("ecp is down")
	}
	if sum.servedWindow != cfg.agents {
		t.Errorf("agents served in the window %d of %d; want every agent served", sum.servedWindow, cfg.agents)
	}
	// Each agent reports once per interval; a few turns at the window's
	// edges may fall out.
	if want := int(float64(cfg.agents) * cfg.steady.Seconds() / cfg.interval.Seconds() * 0.9); sum.reports < want || sum.p99 > time.Second {
		t.Errorf("reports %d, p99 %s; want at least %d (every agent each interval), promptly", sum.reports, sum.p99, want)
	}
}
