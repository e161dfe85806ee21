package main

import (
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/bench/internal/agentsim"
)

// TestFleetSmoke runs the benchmark end to end at a handful of agents: the
// real ecp built and started, clusters created through the API, agents
// registered, reporting, pushing and polling, one of them silenced.
func TestFleetSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the built ecp")
	}
	var log strings.Builder
	sum, err := bench(t.Context(), config{agents: 5, projects: 2, interval: time.Second, warmup: 3 * time.Second,
		steady: 3 * time.Second, workers: 4, pollWait: 2 * time.Second, abnormal: 0.2, silence: 1, series: 5, conns: agentsim.ConnsH2, dir: t.TempDir()}, &log)
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
