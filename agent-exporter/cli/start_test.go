package cli_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/daemon"
)

// TestJourneyRunWithoutTheDefaultLogDirStarts: the guide's
// `./agent-exporter run &` on a host without /opt/emqx/log (a deb/rpm
// install, a fresh VM) starts, logs to standard error and says why and what
// to do; a --log.file the operator chose still has to exist.
func TestJourneyRunWithoutTheDefaultLogDirStarts(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-dir", "agent.log")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stderr := &syncBuffer{}
	code := cli.Main([]string{"run", "--web.listen-address", "127.0.0.1:0", "--state.dir", filepath.Join(dir, "state")},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: stderr, Context: ctx, DefaultLogFile: missing,
			Ready: func(*daemon.App) { cancel() }})
	if code != cli.ExitOK {
		t.Fatalf("run exit %d, stderr %q", code, stderr.String())
	}
	want := "warning: " + filepath.Dir(missing) + " does not exist, so the agent logs to standard error; " +
		"create it or choose a file with --log.file (the log directory of deb/rpm installs is /var/log/emqx)\n"
	if got := stderr.String(); !strings.HasPrefix(got, want) || !strings.Contains(got, "msg=\"agent started\"") {
		t.Fatalf("stderr %q, want the warning %q then the agent's log", got, want)
	}

	var errOut bytes.Buffer
	code = cli.Main([]string{"run", "--web.listen-address", "127.0.0.1:0", "--state.dir", filepath.Join(dir, "state"), "--log.file", missing},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &errOut, Context: t.Context()})
	if code != cli.ExitError || !strings.Contains(errOut.String(), "--log.file "+missing+": directory "+filepath.Dir(missing)+" does not exist") {
		t.Fatalf("chosen missing log file: exit %d, stderr %q", code, errOut.String())
	}
}

// TestJourneyRunOnATakenPortSaysWhatToDo: where the agent's port is taken,
// run fails naming the address, the flag and a way out.
func TestJourneyRunOnATakenPortSaysWhatToDo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	var errOut bytes.Buffer
	code := cli.Main([]string{"run", "--web.listen-address", addr, "--state.dir", t.TempDir(), "--log.file", "-"},
		cli.Env{Stdout: &bytes.Buffer{}, Stderr: &errOut, Context: t.Context()})
	want := "cannot start the agent: " + addr + " (--web.listen-address) is taken. If an agent-exporter runs there already, " +
		"`agent-exporter status` shows it and no second one is needed; otherwise start the agent on a free address, " +
		"e.g. --web.listen-address 127.0.0.1:9734 (register finds it through its state directory)\n"
	if code != cli.ExitError || !strings.HasSuffix(errOut.String(), want) {
		t.Fatalf("exit %d, stderr\n%q\nwant it to end with\n%q", code, errOut.String(), want)
	}
}
