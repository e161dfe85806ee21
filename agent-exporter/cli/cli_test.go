package cli_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/internal/version"
)

// os/signal starts one process-wide goroutine on first use; it is not ours
// to stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("os/signal.loop")) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"no command", nil, cli.ExitUsage, "usage:"},
		{"unknown command", []string{"frobnicate"}, cli.ExitUsage, `unknown command "frobnicate"`},
		{"unknown flag", []string{"run", "--nope"}, cli.ExitUsage, "flag provided but not defined"},
		{"bad log level", []string{"run", "--log.level", "loud", "--log.file", "-"}, cli.ExitUsage, "--log.level"},
		{"negative series cap", []string{"run", "--remote-write.max-series", "-1", "--log.file", "-"}, cli.ExitUsage, "--remote-write.max-series -1: want 0 (no cap) or more"},
		{"version", []string{"version"}, cli.ExitOK, "agent-exporter "},
		{"help", []string{"run", "-h"}, cli.ExitOK, "collect.interval"},
		{"missing log dir", []string{"run", "--log.file", "/nonexistent-dir-for-test/agent.log"}, cli.ExitError, "--log.file /nonexistent-dir-for-test/agent.log: directory /nonexistent-dir-for-test does not exist"},
		{"register password-file missing", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password-file", "/nonexistent", "--dashboard-url", "http://d", "--api-url", "http://a"}, cli.ExitError, "--password-file"},
		{"register both passwords", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password", "p", "--password-file", "f", "--dashboard-url", "http://d", "--api-url", "http://a"}, cli.ExitUsage, "not both"},
		{"log collection without dir", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password", "p", "--dashboard-url", "http://d", "--api-url", "http://a", "--emqx-log-collection-enabled"}, cli.ExitUsage, "--emqx-log-collection-dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := cli.Main(tc.args, cli.Env{Stdout: &out, Stderr: &errOut, Context: t.Context()})
			if code != tc.wantCode || !strings.Contains(out.String()+errOut.String(), tc.wantOut) {
				t.Fatalf("code %d, output %q %q; want %d and %q", code, out.String(), errOut.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "agent.log")
	stdout := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apps := make(chan *daemon.App, 1)
	done := make(chan int, 1)
	go func() {
		done <- cli.Main([]string{"run", "--web.listen-address", "127.0.0.1:0", "--state.dir", filepath.Join(dir, "state"),
			"--log.file", logFile, "--collect.interval", "1s"},
			cli.Env{Stdout: stdout, Stderr: stdout, Context: ctx, Ready: func(a *daemon.App) { apps <- a }})
	}()
	app := <-apps
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stdout.String(), "is running!") {
		if time.Now().After(deadline) {
			t.Fatalf("no running line; stdout %q", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := stdout.String(); got != "EMQX Agent "+version.Version+" is running!\n" {
		t.Fatalf("stdout = %q", got)
	}
	for _, path := range []string{"/-/healthy", "/-/ready", "/metrics"} {
		resp, err := http.Get("http://" + app.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s = %d", path, resp.StatusCode)
		}
	}
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"status", "--state.dir", filepath.Join(dir, "state")}, cli.Env{Stdout: &out, Stderr: &errOut}); code != 0 ||
		!strings.Contains(out.String(), "registered:           no") {
		t.Fatalf("status: %d %q %q", code, out.String(), errOut.String())
	}
	cancel()
	if code := <-done; code != cli.ExitOK {
		t.Fatalf("run exit = %d", code)
	}
}

func TestRegisterWithoutPasswordOffTerminal(t *testing.T) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	var out, errOut bytes.Buffer
	code := cli.Main([]string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--dashboard-url", "http://d", "--api-url", "http://a"},
		cli.Env{Stdin: devNull, Stdout: &out, Stderr: &errOut})
	if code != cli.ExitUsage || !strings.Contains(errOut.String(), "--password-file") {
		t.Fatalf("code %d stderr %q", code, errOut.String())
	}
}
