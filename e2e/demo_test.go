package e2e

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestDemoStopsCleanly runs the demo as `make demo` does, waits until it
// manages both clusters, presses Ctrl-C and checks that no process it
// started is left.
func TestDemoStopsCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries")
	}
	for _, addr := range []string{"127.0.0.1:18083", "127.0.0.1:28083", "127.0.0.1:9733", "127.0.0.1:9734"} {
		if err := testbed.CheckFree(addr); err != nil {
			t.Fatalf("the demo's fixed ports must be free for this test: %v", err)
		}
	}
	dir := t.TempDir()
	demoBin := filepath.Join(dir, "demo")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", demoBin, "./demo")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}
	ecpAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	cmd := exec.CommandContext(t.Context(), demoBin, "--bin", bins.Dir, "--dist", bins.DistDir, "--dir", work)
	cmd.Env = append(os.Environ(), "DEMO_ECP_ADDR="+ecpAddr, "ECP_ADMIN_PASSWORD=demo-test-password")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	var transcript bytes.Buffer
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stdout, &transcript))
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C") {
				ready <- transcript.String()
			}
		}
	}()
	select {
	case out := <-ready:
		for _, want := range []string{"north-line-1   running", "south-line-1   running", "ecp is managing 2 clusters"} {
			if !strings.Contains(out, want) {
				t.Errorf("demo output lacks %q:\n%s", want, out)
			}
		}
	case <-time.After(3 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("demo not ready within 3 minutes:\n%s\n%s", transcript.String(), stderr.String())
	}

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo after Ctrl-C: %v\n%s", err, stderr.String())
	}
	if left := processesUnder(t, bins.Dir, work); len(left) > 0 {
		t.Fatalf("processes left after Ctrl-C: %v", left)
	}
}

// processesUnder lists running processes whose command line names any of dirs.
func processesUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(raw), "\x00", " ")
		for _, d := range dirs {
			if strings.Contains(cmdline, d) {
				found = append(found, e.Name()+": "+cmdline)
				break
			}
		}
	}
	return found
}
