package cli_test

import (
	"bytes"
	"context"
	"crypto/tls"
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
	"github.com/ecpio/ecp/internal/webconfig/webconfigtest"
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
	empty := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
	}{
		{"no command", nil, cli.ExitUsage, "usage:"},
		{"unknown command", []string{"frobnicate"}, cli.ExitUsage, `unknown command "frobnicate"`},
		{"unknown flag", []string{"run", "--nope"}, cli.ExitUsage, "unknown long flag '--nope'"},
		{"bad log level", []string{"run", "--log.level", "loud", "--log.file", "-"}, cli.ExitUsage, "--log.level"},
		{"negative series cap", []string{"run", "--remote-write.max-series", "-1", "--log.file", "-"}, cli.ExitUsage, "--remote-write.max-series -1: want 0 (no cap) or more"},
		{"interval too short", []string{"run", "--collect.interval", "500ms", "--log.file", "-"}, cli.ExitUsage, "--collect.interval 500ms: want 1s to 5m0s"},
		{"interval too long", []string{"run", "--collect.interval", "10m", "--log.file", "-"}, cli.ExitUsage, "--collect.interval 10m0s: want 1s to 5m0s"},
		{"version", []string{"version"}, cli.ExitOK, "agent-exporter "},
		{"help", []string{"run", "-h"}, cli.ExitOK, "collect.interval"},
		{"missing log dir", []string{"run", "--log.file", "/nonexistent-dir-for-test/agent.log"}, cli.ExitError, "--log.file /nonexistent-dir-for-test/agent.log: directory /nonexistent-dir-for-test does not exist"},
		{"register password-file missing", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password-file", "/nonexistent", "--dashboard-url", "http://d", "--api-url", "http://a"}, cli.ExitError, "--password-file"},
		{"register both passwords", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password", "p", "--password-file", "f", "--dashboard-url", "http://d", "--api-url", "http://a"}, cli.ExitUsage, "not both"},
		{"log collection without dir", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password", "p", "--dashboard-url", "http://d", "--api-url", "http://a", "--emqx-log-collection-enabled"}, cli.ExitUsage, "--emqx-log-collection-dir"},
		// The agent parses flags with kingpin now, as ecp does (issue #13).
		// What operators typed for Go's flag package with two dashes still
		// works; the one-dash spelling is refused naming the two-dash one;
		// bad values name the flag; help and version exit 0.
		// Parsed, then stopped by the missing daemon: the flags were taken.
		{"bool=true", []string{"unregister", "--force=true", "--state.dir", empty}, cli.ExitError, "the agent daemon is not running"},
		{"bool=false", []string{"unregister", "--force=false", "--state.dir=" + empty}, cli.ExitError, "the agent daemon is not running"},
		{"negated bool", []string{"unregister", "--no-force", "--state.dir", empty}, cli.ExitError, "the agent daemon is not running"},
		{"password starting with a dash", []string{"register", "--ecp-url", "http://e", "--token", "t", "--username", "u", "--password", "-secret",
			"--dashboard-url", "http://d", "--api-url", "http://a", "--state.dir", empty}, cli.ExitError, "the agent daemon is not running"},
		{"one dash", []string{"status", "-state.dir", empty}, cli.ExitUsage, "-state.dir: flags take two dashes: --state.dir"},
		{"bad duration", []string{"run", "--collect.interval", "soon"}, cli.ExitUsage, `invalid value "soon" for --collect.interval`},
		{"stray argument", []string{"status", "extra"}, cli.ExitUsage, "unexpected extra"},
		{"help flag", []string{"register", "--help"}, cli.ExitOK, "--[no-]insecure-skip-verify"},
		{"help command", []string{"help"}, cli.ExitOK, "unregister"},
		{"version flag", []string{"--version"}, cli.ExitOK, "agent-exporter "},
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

// issue #11 finding 9: the agent's /metrics answered anyone who reached its
// listener. With --web.config.file (the exporter-toolkit format) the
// listener serves https and /metrics needs the configured basic auth, while
// the agent's own CLI still drives the control API: it keeps its token from
// the state directory and pins the certificate the web configuration names.
func TestSec09AgentMetricsNeedTheWebConfigsBasicAuth(t *testing.T) {
	wc := webconfigtest.Write(t, map[string]string{"prometheus": "scrape-secret"}, true)
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	apps := make(chan *daemon.App, 1)
	done := make(chan int, 1)
	logs := &syncBuffer{}
	go func() {
		done <- cli.Main([]string{"run", "--web.listen-address", "127.0.0.1:0", "--state.dir", stateDir,
			"--log.file", "-", "--web.config.file", wc.Path},
			cli.Env{Stdout: logs, Stderr: logs, Context: ctx, Ready: func(a *daemon.App) { apps <- a }})
	}()
	app := <-apps
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: wc.Roots, MinVersion: tls.VersionTLS12}}}
	defer client.CloseIdleConnections()
	scrape := func(user, pass string) int {
		t.Helper()
		// The listener is bound before Ready: the request waits for Run
		// to serve it.
		req, _ := http.NewRequest(http.MethodGet, "https://"+app.Addr()+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("/metrics over https: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := scrape("", ""); code != http.StatusUnauthorized {
		t.Fatalf("/metrics without credentials = %d, want 401", code)
	}
	if code := scrape("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics with a wrong password = %d, want 401", code)
	}
	if code := scrape("prometheus", "scrape-secret"); code != http.StatusOK {
		t.Fatalf("/metrics with credentials = %d, want 200", code)
	}
	// The CLI reaches the control API over https without basic auth.
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"status", "--state.dir", stateDir}, cli.Env{Stdout: &out, Stderr: &errOut}); code != 0 ||
		!strings.Contains(out.String(), "registered:           no") {
		t.Fatalf("status over https: %d %q %q", code, out.String(), errOut.String())
	}
	// Another certificate on the daemon's address is refused.
	other := webconfigtest.Write(t, nil, true)
	ctl := filepath.Join(stateDir, "control.json")
	b, err := os.ReadFile(ctl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ctl, bytes.Replace(b, []byte(wc.Path), []byte(other.Path), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := cli.Main([]string{"status", "--state.dir", stateDir}, cli.Env{Stdout: &out, Stderr: &errOut}); code == 0 ||
		!strings.Contains(errOut.String(), "another certificate") {
		t.Fatalf("status against an unpinned certificate: %d %q %q", code, out.String(), errOut.String())
	}
	cancel()
	if code := <-done; code != cli.ExitOK {
		t.Fatalf("run exit = %d; log %s", code, logs.String())
	}
}
