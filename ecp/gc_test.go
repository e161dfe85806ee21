package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeCollectsGarbageAtHalfTheLiveHeap: `ecp serve` runs the Go
// collector at GOGC 50 unless GOGC says otherwise, as /metrics shows an
// operator (go_gc_gogc_percent). At Go's 100 the collector's headroom was
// the largest part of ecp's memory that held nothing (defaultGCPercent).
func TestServeCollectsGarbageAtHalfTheLiveHeap(t *testing.T) {
	if args := os.Getenv("ECP_TEST_SERVE_ARGS"); args != "" {
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr))
	}
	if testing.Short() {
		t.Skip("starts ecp with an embedded etcd")
	}
	for _, tc := range []struct {
		name, gogc, want string
	}{
		{"GOGC unset", "", "\ngo_gc_gogc_percent 50\n"},
		{"GOGC=100", "100", "\ngo_gc_gogc_percent 100\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metrics := serveMetrics(t, tc.gogc)
			if !strings.Contains(metrics, tc.want) {
				i := strings.Index(metrics, "\ngo_gc_gogc_percent ") + 1
				t.Fatalf("/metrics says %q, want %q", metrics[i:i+strings.Index(metrics[i:], "\n")], strings.TrimSpace(tc.want))
			}
		})
	}
}

// serveMetrics runs `ecp serve` (this test binary, re-executed) with GOGC
// set to gogc (unset when empty) and returns its /metrics once ready.
func serveMetrics(t *testing.T, gogc string) string {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	_ = probe.Close()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestServeCollectsGarbageAtHalfTheLiveHeap$") //nolint:gosec // this test binary
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "ECP_TEST_SERVE_ARGS=serve --web.listen-address "+addr+" --data.dir "+t.TempDir(), "ECP_ADMIN_PASSWORD=correct-horse-battery")
	if gogc != "" {
		cmd.Env = append(cmd.Env, "GOGC="+gogc)
	}
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-exited
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) { // a real process starting
		resp, err := client.Get("http://" + addr + "/metrics")
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(body)
			}
		}
		select {
		case <-exited:
			t.Fatalf("ecp exited while starting:\n%s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("ecp's /metrics did not answer:\n%s", logs)
		}
	}
}
