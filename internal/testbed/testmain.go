package testbed

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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

// AllowParallel lets up to n of the package's tests that call t.Parallel
// run at once, unless the command line sets -parallel; call it from
// TestMain after flag.Parse. go test's default, GOMAXPROCS, suits tests
// that keep a CPU busy; end-to-end tests mostly wait on the processes
// they started (report intervals, alert timers, outages), so on a 2-core
// machine two at a time would leave the CPUs idle.
func AllowParallel(n int) {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
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
