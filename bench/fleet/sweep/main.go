// Command sweep runs bench/fleet at several fleet sizes, one after the
// other on a fresh ecp each, and writes what they measured as JSON and CSV
// and as an SVG chart of ecp's CPU, RSS and report p99 against fleet size
// (drawn by chart.go, no plotting dependency). Arguments after "--" go to
// every bench/fleet run, so one sweep is one load variant (remote write,
// logs); with --merge the runs join those already in --out.json, replacing
// a run of the same size and variant, so several sweeps (or a size run
// alone) share one chart with a line per variant. With no --sizes it only
// redraws the chart and the CSV from --out.json.
//
//	go run ./bench/fleet/sweep --sizes 1000,3000,10000,30000 -- --report.interval 15s --steady.duration 60s
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/ecpio/ecp/bench/internal/fleetreport"
)

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("sweep", flag.ContinueOnError)
	sizes := fs.String("sizes", "1000,3000,10000,30000", "Fleet sizes (--agents.count) to run, comma-separated; empty redraws from --out.json.")
	outJSON := fs.String("out.json", "docs/benchmarks-fleet.json", "Where the summaries go, as a JSON array.")
	outCSV := fs.String("out.csv", "docs/benchmarks-fleet.csv", "Where the summaries go, as CSV.")
	outSVG := fs.String("out.svg", "docs/benchmarks-fleet.svg", "Where the chart goes.")
	merge := fs.Bool("merge", false, "Keep the runs already in --out.json that this sweep does not replace.")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	ns, err := parseSizes(*sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sweep: --sizes:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var sums []fleetreport.Summary
	if *merge || len(ns) == 0 {
		if sums, err = readSummaries(*outJSON); err != nil {
			fmt.Fprintln(os.Stderr, "sweep:", err)
			return 1
		}
	}
	if len(ns) > 0 {
		runs, err := sweep(ctx, ns, fs.Args())
		if err != nil {
			fmt.Fprintln(os.Stderr, "sweep:", err)
			return 1
		}
		sums = mergeRuns(sums, runs)
	}
	if err := write(sums, *outJSON, *outCSV, *outSVG); err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "wrote %d runs to %s, %s and %s\n", len(sums), *outJSON, *outCSV, *outSVG)
	return 0
}

func parseSizes(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number of agents", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// sweep builds ecp and bench/fleet once and runs the benchmark at each
// size, its progress and summary line going to stderr.
func sweep(ctx context.Context, sizes []int, fleetArgs []string) ([]fleetreport.Summary, error) {
	dir, err := os.MkdirTemp("", "ecp-bench-sweep-")
	if err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(dir)
	ecp, fleet := filepath.Join(dir, "ecp"), filepath.Join(dir, "fleet")
	for bin, pkg := range map[string]string{ecp: "github.com/ecpio/ecp/ecp", fleet: "github.com/ecpio/ecp/bench/fleet"} {
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %w\n%s", pkg, err, out)
		}
	}
	var sums []fleetreport.Summary
	for _, n := range sizes {
		out := filepath.Join(dir, fmt.Sprintf("fleet-%d.json", n))
		args := append([]string{"--ecp.binary", ecp, "--agents.count", strconv.Itoa(n), "--summary.json", out}, fleetArgs...)
		fmt.Fprintf(os.Stderr, "$ bench/fleet %s\n", strings.Join(args[2:], " "))
		cmd := exec.CommandContext(ctx, fleet, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		// Interrupted, the benchmark stops its ecp and stores itself.
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("bench/fleet at %d agents: %w", n, err)
		}
		s, err := fleetreport.ReadFile(out)
		if err != nil {
			return nil, err
		}
		sums = append(sums, s)
	}
	return sums, nil
}

// mergeRuns adds runs to sums, replacing a summary of the same size and
// variant, ordered by variant and size.
func mergeRuns(sums, runs []fleetreport.Summary) []fleetreport.Summary {
	for _, r := range runs {
		sums = slices.DeleteFunc(sums, func(s fleetreport.Summary) bool { return s.Agents == r.Agents && s.Variant() == r.Variant() })
		sums = append(sums, r)
	}
	slices.SortStableFunc(sums, func(a, b fleetreport.Summary) int {
		return cmp.Or(cmp.Compare(a.Variant(), b.Variant()), cmp.Compare(a.Agents, b.Agents))
	})
	return sums
}

func readSummaries(path string) ([]fleetreport.Summary, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read summaries: %w", err)
	}
	var sums []fleetreport.Summary
	if err := json.Unmarshal(b, &sums); err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return sums, nil
}

// write stores the summaries as JSON and CSV and draws the chart.
func write(sums []fleetreport.Summary, outJSON, outCSV, outSVG string) error {
	b, err := json.MarshalIndent(sums, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summaries: %w", err)
	}
	if err := os.WriteFile(outJSON, append(b, '\n'), 0o644); err != nil { //nolint:gosec // a benchmark's figures, no secret.
		return fmt.Errorf("write summaries: %w", err)
	}
	var csv strings.Builder
	if err := fleetreport.WriteCSV(&csv, sums); err != nil {
		return err
	}
	if err := os.WriteFile(outCSV, []byte(csv.String()), 0o644); err != nil { //nolint:gosec // as above.
		return fmt.Errorf("write csv: %w", err)
	}
	var svg strings.Builder
	if err := Render(&svg, "ecp serve under a simulated fleet (bench/fleet)", "agents", panels(sums)); err != nil {
		return err
	}
	if err := os.WriteFile(outSVG, []byte(svg.String()), 0o644); err != nil { //nolint:gosec // as above.
		return fmt.Errorf("write chart: %w", err)
	}
	return nil
}

// panels are the chart's metrics, a line per variant, sorted by size.
func panels(sums []fleetreport.Summary) []Panel {
	metrics := []struct {
		title string
		value func(fleetreport.Summary) float64
	}{
		{"ecp CPU (% of one core)", func(s fleetreport.Summary) float64 { return s.ECPCPUPercent }},
		{"ecp RSS (MiB)", func(s fleetreport.Summary) float64 { return float64(s.RSSMiB) }},
		{"report p99 (ms)", func(s fleetreport.Summary) float64 { return s.ReportP99Millis }},
	}
	ps := make([]Panel, len(metrics))
	for i, m := range metrics {
		ps[i].Title = m.title
		for _, s := range sums {
			j := slices.IndexFunc(ps[i].Lines, func(l Line) bool { return l.Name == s.Variant() })
			if j < 0 {
				ps[i].Lines = append(ps[i].Lines, Line{Name: s.Variant()})
				j = len(ps[i].Lines) - 1
			}
			ps[i].Lines[j].Points = append(ps[i].Lines[j].Points, Point{X: float64(s.Agents), Y: m.value(s)})
		}
		for _, l := range ps[i].Lines {
			slices.SortFunc(l.Points, func(a, b Point) int { return cmp.Compare(a.X, b.X) })
		}
	}
	return ps
}
