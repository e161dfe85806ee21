package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a child's stderr while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestScaleServeUnderLowOpenFileLimit runs `ecp serve` (this test binary,
// re-executed) under `ulimit -n 200` and opens 300 connections to it: ecp
// refuses the surplus before its descriptors run out, logs why, keeps
// serving and recovers when the connections go. Before, the surplus met
// "accept4: too many open files" and the embedded etcd's next file
// operation could end the process without a word.
func TestScaleServeUnderLowOpenFileLimit(t *testing.T) {
	if args := os.Getenv("ECP_TEST_SERVE_ARGS"); args != "" {
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	}
	if testing.Short() {
		t.Skip("starts ecp with an embedded etcd")
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	_ = probe.Close()
	cmd := exec.CommandContext(t.Context(), "sh", "-c", `ulimit -n 200 && exec "$0" -test.run='^TestScaleServeUnderLowOpenFileLimit$'`, os.Args[0]) //nolint:gosec // this test binary
	cmd.Env = append(os.Environ(), "ECP_TEST_SERVE_ARGS=serve --web.listen-address "+addr+" --data.dir "+t.TempDir(), "ECP_ADMIN_PASSWORD=correct-horse-battery")
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		if waitErr != nil && !t.Failed() {
			t.Errorf("ecp after SIGTERM: %v, want exit 0", waitErr)
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) { // a real process starting
		if code, _ := get("/-/ready"); code == http.StatusOK {
			break
		}
		select {
		case <-exited:
			t.Fatalf("ecp exited while starting: %v\n%s", waitErr, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ecp not ready:\n%s", logs)
		}
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for range 300 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			break // ecp's backlog is full: refused, which is fine
		}
		conns = append(conns, c)
	}
	// The first refused connections are answered 503; in a storm of
	// silent ones beyond that, some are only closed (a reset, which
	// clients back off from too), so a client may need a retry.
	tr := &http.Transport{DisableKeepAlives: true}
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/-/healthy")
		if err == nil {
			_ = resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client beyond the limit got no answer: %v\n%s", err, logs)
		}
	}
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("beyond the limit: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if out := logs.String(); !strings.Contains(out, "refusing connections") || !strings.Contains(out, "open-file limit 200") {
		t.Fatalf("ecp's log does not say why it refuses connections:\n%s", out)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, err := get("/-/healthy")
		if err == nil && code == http.StatusOK {
			break
		}
		select {
		case <-exited:
			t.Fatalf("ecp exited: %v\n%s", waitErr, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ecp did not serve again after the connections closed: %d %v", code, err)
		}
	}
	select {
	case <-exited:
		t.Fatalf("ecp exited: %v\n%s", waitErr, logs)
	default:
	}
}
