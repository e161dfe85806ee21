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
