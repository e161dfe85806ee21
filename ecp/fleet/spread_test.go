package fleet

import (
	"fmt"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestScaleFirstReportsSpreadOverInterval: 9,900 agents registered at once
// reported in the same instant, interval after interval, and the in-flight
// limit refused thousands. Each now gets its own place in the interval,
// evenly spread: no second of a 15 s interval holds more than 15 % over
// its share of 9,900 first reports.
func TestScaleFirstReportsSpreadOverInterval(t *testing.T) {
	const agents, interval = 9900, 15 * time.Second
	var perSecond [15]int
	for i := range agents {
		d := firstReportDelay(fmt.Sprintf("c%05d", i), interval)
		if d < 0 || d >= interval {
			t.Fatalf("cluster c%05d: first report after %s, want within [0, %s)", i, d, interval)
		}
		perSecond[d/time.Second]++
	}
	share := agents / len(perSecond)
	for s, n := range perSecond {
		if n > share*115/100 || n < share*85/100 {
			t.Fatalf("%d of %d first reports fall in second %d of the interval, want about %d: %v", n, agents, s, share, perSecond)
		}
	}
}

// TestScaleRegistrationBurstSpreadsFirstReports: a registration on its
// own reports at once; in a burst, beyond burstRegistrations within one
// interval, the reply carries the cluster's place in the interval; the
// next interval starts afresh.
func TestScaleRegistrationBurstSpreadsFirstReports(t *testing.T) {
	const interval = 10 * time.Second
	cli := etcdtest.Client(t)
	clk := newClock()
	f := startFleet(t, cli, clk, "r1", func(o *Options) { o.ReportInterval = interval })
	register := func(id string) int64 {
		putSpec(t, cli, id, 10)
		return mustRegister(t, newAgent(f.url), issue(t, f, id, time.Hour)).FirstReportDelayMillis
	}
	for i := range burstRegistrations {
		if got := register(fmt.Sprintf("alone-%d", i)); got != 0 {
			t.Fatalf("registration %d of the interval: first report after %d ms, want at once", i+1, got)
		}
	}
	seen := map[int64]bool{}
	for _, id := range []string{"burst-a", "burst-b", "burst-c"} {
		got, want := register(id), firstReportDelay(id, interval).Milliseconds()
		if got != want || want <= 0 || want >= interval.Milliseconds() {
			t.Fatalf("cluster %s in a burst: registration reply says first report after %d ms, want %d ms within the %s interval", id, got, want, interval)
		}
		seen[want] = true
	}
	if len(seen) != 3 {
		t.Fatalf("three clusters share first report delays %v", seen)
	}
	clk.Add(interval)
	if got := register("later"); got != 0 {
		t.Fatalf("first registration of a new interval: first report after %d ms, want at once", got)
	}
}
