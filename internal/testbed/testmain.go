package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// RunTests is the TestMain of a package of end-to-end tests: it builds
// the binaries from the module at moduleDir into a temporary directory,
// sets *bins, runs the tests and removes the directory. With short set
// (go test -short) it builds nothing; the tests skip themselves. It
// returns the exit code.
func RunTests(m interface{ Run() int }, short bool, moduleDir string, bins *Binaries) int {
	if short {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ecp-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	*bins, err = Build(ctx, moduleDir, dir, filepath.Join(dir, "dist"))
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// Fataler is the part of testing.TB Eventually needs.
type Fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Eventually polls cond every 100 ms until it holds, or fails t after
// timeout with what cond last saw.
func Eventually(t Fataler, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, got := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last seen: %s", what, timeout, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
