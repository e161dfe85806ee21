// Package depfaults is a fault campaign on the built binaries (ecp,
// agent-exporter, emqx-sim) against the real Prometheus, Alertmanager and
// VictoriaLogs: each test takes one dependency away (ecp itself, the
// metrics store, the notifier, the log store, a healthy EMQX), brings it
// back, and states in one t.Logf line what was lost, so the figures can be
// pasted. The default run keeps the outages short; -depfaults.full runs the
// durations of issue 14 (ecp down 10 min, Prometheus 5 min, VictoriaLogs
// 2 min):
//
//	go test -count=1 -timeout 40m -v ./e2e/depfaults/ -depfaults.full
package depfaults

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

var full = flag.Bool("depfaults.full", false, "run the outages at issue 14's durations (ecp 10m, Prometheus 5m, VictoriaLogs 2m) instead of seconds")

// outage is short by default and d under -depfaults.full.
func outage(short, d time.Duration) time.Duration {
	if *full {
		return d
	}
	return short
}

var bins testbed.Binaries

// TestMain builds the binaries once for the package. Every test runs its
// own stack on its own ports and directories and mostly waits (outages,
// intervals, backoff), so all of them run side by side. Their bounds are
// whole intervals wide (a silent agent shows after 3 intervals, the agent
// collected within 5, Prometheus holds all but 3 collections of an
// outage), not a margin for scheduling delays.
func TestMain(m *testing.M) {
	flag.Parse()
	testbed.AllowParallel(5)
	os.Exit(testbed.RunTests(m, testing.Short(), "../..", &bins))
}
