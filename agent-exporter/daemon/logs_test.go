package daemon_test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agent-exporter/logship"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// TestLogCollection: registered with log collection, the agent ships
// EMQX's log lines (once each, node named); ecp's desired state switches
// collection off (lines written meanwhile wait in EMQX's files) and on
// again (they arrive), and a restart of the agent resumes from the
// acknowledged offsets kept 0600 in the state dir.
func TestLogCollection(t *testing.T) {
	logDir := t.TempDir()
	emqx := startEMQX(t, func(o *sim.Options) {
		o.LogDir, o.LogLevel, o.LogRate, o.LogRotationSize, o.LogRotationCount = logDir, "info", 0, 64<<10, 16
	})
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok-1")
	state := t.TempDir()
	h := startDaemon(t, state)
	args := append(registerArgs(ecp.URL, "tok-1", emqx.URL, "public"), "--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir)
	if code, out, errOut := h.cli(args...); code != cli.ExitOK {
		t.Fatalf("register: code %d stdout %q stderr %q", code, out, errOut)
	}
	shipped := func(want int) func() bool {
		return func() bool {
			lines := ecp.LogLines()
			if len(lines) != want {
				return false
			}
			for raw, n := range lines {
				if n != 1 {
					t.Fatalf("line stored %d times: %s", n, raw)
				}
			}
			return true
		}
	}
	written := func() int { return int(emqx.LogLinesWritten()) }
	defer func() {
		if t.Failed() {
			t.Logf("stored %d of %d; logs:\n%s", len(ecp.LogLines()), written(), h.logs.String())
		}
	}()

	if err := emqx.WriteLogs(3000); err != nil { // 10 of the 16 wrap files
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the first lines shipped", shipped(written()))

	ecp.SetLogCollection(agentproto.LogCollection{Enabled: false})
	eventually(t, 5*time.Second, "the agent applied the desired state", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.AppliedRevision >= ecp.Desired().Revision
	})
	before := len(ecp.LogLines())
	if err := emqx.WriteLogs(200); err != nil {
		t.Fatal(err)
	}
	// Two more reports: the agent is alive and still ships nothing.
	reports := len(ecp.Reports())
	eventually(t, 5*time.Second, "two more reports", func() bool { return len(ecp.Reports()) >= reports+2 })
	if got := len(ecp.LogLines()); got != before {
		t.Fatalf("%d lines shipped while collection was off", got-before)
	}

	ecp.SetLogCollection(agentproto.LogCollection{Enabled: true, Dir: logDir})
	eventually(t, 10*time.Second, "the waiting lines shipped", shipped(written()))

	h.stop()
	st, err := os.Stat(filepath.Join(state, logship.OffsetsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("offsets file: %v (mode %v), want 0600", err, st.Mode())
	}
	if err := emqx.WriteLogs(100); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, state)
	eventually(t, 10*time.Second, "lines after the restart shipped, none twice", shipped(written()))
	for raw := range ecp.LogLines() {
		if !strings.Contains(raw, "[") {
			t.Fatalf("not an EMQX line: %q", raw)
		}
	}
}

// TestJourneyLogLinesNameTheirNode: in a cluster of several nodes whose
// names are not this machine's (emqx@10.0.0.x), an agent that reaches EMQX
// on this machine names the node that answers there on every line, the
// very first batch included, instead of leaving the node empty.
func TestJourneyLogLinesNameTheirNode(t *testing.T) {
	logDir := t.TempDir()
	emqx := startEMQX(t, func(o *sim.Options) {
		o.LogDir, o.LogLevel, o.LogRate = logDir, "info", 0
	})
	if err := emqx.WriteLogs(50); err != nil { // a backlog before the agent starts
		t.Fatal(err)
	}
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok-1")
	h := startDaemon(t, t.TempDir())
	args := append(registerArgs(ecp.URL, "tok-1", emqx.URL, "public"), "--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir)
	if code, out, errOut := h.cli(args...); code != cli.ExitOK {
		t.Fatalf("register: code %d stdout %q stderr %q", code, out, errOut)
	}
	eventually(t, 10*time.Second, "the lines shipped", func() bool { return len(ecp.LogLines()) == int(emqx.LogLinesWritten()) })
	want := map[string]int{"emqx@10.0.0.1": int(emqx.LogLinesWritten())}
	if got := ecp.LogNodes(); !maps.Equal(got, want) {
		t.Fatalf("lines per node %v, want %v", got, want)
	}
}
