package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profiler takes pprof profiles of the first replica over the measured
// window (--ecp.profile), so a figure the benchmark prints can be explained
// from the same run: a CPU profile of the whole window, then the heap and
// goroutines at its end, and the Go runtime's memory breakdown from
// /metrics (heap in use, stacks, what the runtime holds from the system).
// A heap profile at the window's start as well lets the window's own
// allocations be read apart from the setup's:
//
//	go tool pprof -sample_index=alloc_space -base ecp-1.heap-start.pprof ecp-1.heap.pprof
type profiler struct {
	dir, base string
	hc        *http.Client
	cpu       chan error
	// start holds the runtime's allocation counters at the window's start
	// (windowCounters), to print what the window allocated.
	start map[string]float64
}

// windowCounters are the runtime's cumulative counters whose growth over
// the window finish prints: what ecp allocated (GC work grows with it)
// and how many collections that took.
var windowCounters = []string{"go_memstats_alloc_bytes_total", "go_memstats_mallocs_total", "go_gc_duration_seconds_count"}

// startProfile begins the window's CPU profile; it returns nil when
// --ecp.profile is empty.
func startProfile(ctx context.Context, dir, base string, window time.Duration) *profiler {
	if dir == "" {
		return nil
	}
	p := &profiler{dir: dir, base: base, hc: &http.Client{}, cpu: make(chan error, 1)}
	if err := p.fetch(ctx, "/debug/pprof/heap", "ecp-1.heap-start.pprof"); err != nil {
		p.cpu <- err
		return p
	}
	body, err := p.get(ctx, "/metrics")
	if err != nil {
		p.cpu <- err
		return p
	}
	p.start = counters(body)
	seconds := max(1, int(window.Seconds()))
	go func() {
		p.cpu <- p.fetch(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), "ecp-1.cpu.pprof")
	}()
	return p
}

// finish waits for the CPU profile, then takes the heap and goroutine
// profiles and writes the runtime's memory breakdown to log.
func (p *profiler) finish(ctx context.Context, log io.Writer) error {
	if p == nil {
		return nil
	}
	if err := <-p.cpu; err != nil {
		return err
	}
	for path, file := range map[string]string{
		"/debug/pprof/heap":      "ecp-1.heap.pprof",
		"/debug/pprof/goroutine": "ecp-1.goroutine.pprof",
	} {
		if err := p.fetch(ctx, path, file); err != nil {
			return err
		}
	}
	body, err := p.get(ctx, "/metrics")
	if err != nil {
		return err
	}
	var parts []string
	for _, l := range strings.Split(string(body), "\n") {
		for _, name := range []string{"go_goroutines ", "go_memstats_heap_inuse_bytes ", "go_memstats_stack_inuse_bytes ", "go_memstats_sys_bytes ", "go_memstats_next_gc_bytes "} {
			if strings.HasPrefix(l, name) {
				parts = append(parts, strings.Replace(l, " ", "=", 1))
			}
		}
	}
	fmt.Fprintf(log, "ecp-1 runtime at the window's end: %s; profiles in %s\n", strings.Join(parts, " "), p.dir)
	end := counters(body)
	fmt.Fprintf(log, "ecp-1 during the window: %.1f MiB allocated in %.0f objects, %.0f GC cycles\n",
		(end[windowCounters[0]]-p.start[windowCounters[0]])/(1<<20), end[windowCounters[1]]-p.start[windowCounters[1]],
		end[windowCounters[2]]-p.start[windowCounters[2]])
	return nil
}

// counters reads windowCounters from a /metrics body.
func counters(body []byte) map[string]float64 {
	m := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(l, " ")
		if ok && slices.Contains(windowCounters, name) {
			m[name], _ = strconv.ParseFloat(value, 64)
		}
	}
	return m
}

func (p *profiler) fetch(ctx context.Context, path, file string) error {
	body, err := p.get(ctx, path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.dir, file), body, 0o644)
}

func (p *profiler) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("profile %s: %s", path, resp.Status)
	}
	return body, err
}
