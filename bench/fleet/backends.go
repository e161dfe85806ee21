package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/internal/testbed"
)

// Values of --remote-write.backend.
const (
	backendSink       = "sink"
	backendPrometheus = "prometheus"
)

// backends are the stores ecp forwards to besides etcd: the sink or a real
// Prometheus for remote write, and a real VictoriaLogs for logs.
type backends struct {
	cfg     config
	sink    *sink
	started time.Time
	// promURL and vlURL are empty when that store was not started.
	promURL, vlURL string
	procs          []*testbed.Proc
}

// startBackends starts Prometheus (scraping ecp at ecpAddr, as a
// deployment's does) and VictoriaLogs as cfg asks.
func startBackends(ctx context.Context, cfg config, ecpAddr string, sk *sink) (*backends, error) {
	be := &backends{cfg: cfg, sink: sk, started: time.Now()}
	if cfg.backend != backendPrometheus && cfg.logLines == 0 {
		return be, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if cfg.backend == backendPrometheus {
		bin, err := testbed.Prometheus.Find(root)
		if err != nil {
			return nil, err
		}
		addr, err := testbed.FreeAddr()
		if err != nil {
			return nil, err
		}
		// No rules are loaded and no alert fires: the Alertmanager address
		// only completes the configuration.
		amAddr, err := testbed.FreeAddr()
		if err != nil {
			return nil, err
		}
		p, err := testbed.StartPrometheus(ctx, bin, cfg.dir, addr, testbed.PrometheusConfig{
			Interval: cfg.interval, RulesDir: filepath.Join(cfg.dir, "rules"), AlertmanagerAddr: amAddr, ECPAddr: ecpAddr})
		if err != nil {
			return nil, fmt.Errorf("start prometheus: %w", err)
		}
		be.procs, be.promURL = append(be.procs, p), "http://"+addr
	}
	if cfg.logLines > 0 {
		bin, err := testbed.VictoriaLogs.Find(root)
		if err != nil {
			be.stop()
			return nil, err
		}
		addr, err := testbed.FreeAddr()
		if err != nil {
			be.stop()
			return nil, err
		}
		p, err := testbed.StartVictoriaLogs(ctx, bin, cfg.dir, addr)
		if err != nil {
			be.stop()
			return nil, fmt.Errorf("start victoria-logs: %w", err)
		}
		be.procs, be.vlURL = append(be.procs, p), "http://"+addr
	}
	return be, nil
}

func (be *backends) stop() {
	for i := len(be.procs) - 1; i >= 0; i-- {
		_ = be.procs[i].Stop()
	}
}

// configureLogs sets VictoriaLogs as ecp's log receiver through the public
// API, as the system admin does (ecp tests the connection first).
func (be *backends) configureLogs(ctx context.Context, base string) error {
	if be.vlURL == "" {
		return nil
	}
	api, err := testbed.Login(ctx, base, "admin", adminPassword)
	if err != nil {
		return err
	}
	if err := api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver", map[string]any{"type": "victorialogs", "url": be.vlURL}, nil); err != nil {
		return fmt.Errorf("set the log receiver: %w", err)
	}
	return nil
}

// moduleRoot is the directory of this module's go.mod, above the working
// directory: where .tools holds the tools the install scripts built.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// settle stops the fleet once the measurements are taken, lets the last
// requests finish, and counts what the backends hold against what ecp
// accepted (pushed samples) so a loss shows as a difference.
func settle(ctx context.Context, d *deployment, ld load, be *backends, sum *summary, log io.Writer) error {
	a, err := ld.do(ctx, request{Op: opSettle})
	if err != nil {
		return err
	}
	t := a.Totals
	sum.rwAccepted, sum.rwRefused = t.Pushed, t.RWRefused
	sum.rwPending, sum.rwAgentDropped = t.RWPending, t.RWAgentDropped
	sum.linesAccepted, sum.linesRefused, sum.linesPending = t.LinesAccepted, t.LinesRefused, t.LinesPending
	sum.servedEver = t.Served
	sum.rwHeld, sum.linesHeld = -1, -1
	if be.cfg.series > 0 {
		fmt.Fprintf(log, "stopped the fleet; counting the %d samples ecp accepted in %s\n", sum.rwAccepted, be.cfg.backend)
		if sum.rwHeld, err = until(ctx, sum.rwAccepted, be.heldSamples); err != nil {
			return err
		}
	}
	if be.vlURL != "" {
		fmt.Fprintf(log, "counting the %d log lines ecp accepted in VictoriaLogs\n", sum.linesAccepted)
		if sum.linesHeld, err = until(ctx, sum.linesAccepted, be.heldLines); err != nil {
			return err
		}
	}
	// What ecp says it dropped, so that a difference has a reason.
	sum.dropped = map[string]float64{}
	return d.scrape(ctx, func(l string, v float64) {
		if m := dropped.FindStringSubmatch(l); m != nil && v > 0 {
			sum.dropped[m[1]] += v
		}
	})
}

// dropped matches ecp's counters of samples and log lines it accepted and
// did not store: ecp_remote_write_samples_dropped_total by reason and
// ecp_log_lines_rejected_total.
var dropped = regexp.MustCompile(`^(ecp_remote_write_samples_dropped_total\{reason="[^"]*"\}|ecp_log_lines_rejected_total) `)

// until polls count until it reaches want or has not moved for 10 s (ecp's
// remote-write queues and the stores' buffers drain in that time), and
// returns the last count.
func until(ctx context.Context, want int64, count func(context.Context) (int64, error)) (int64, error) {
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(3 * time.Minute); ; {
		n, err := count(ctx)
		if err != nil {
			return -1, err
		}
		if n != last {
			last, since = n, time.Now()
		}
		if n >= want || time.Since(since) > 10*time.Second || time.Now().After(deadline) {
			return n, nil
		}
		if !agentsim.Sleep(ctx, 500*time.Millisecond) {
			return -1, ctx.Err()
		}
	}
}

// heldSamples counts the benchmark's samples in the backend: in the sink
// what it received, in Prometheus every sample of emqx_bench_value stored
// since the start (the engine walks the series one at a time, so the
// query's memory does not grow with the fleet).
func (be *backends) heldSamples(ctx context.Context) (int64, error) {
	if be.promURL == "" {
		return be.sink.samples.Load(), nil
	}
	rng := int(time.Since(be.started).Seconds()) + 60
	q := fmt.Sprintf(`sum(count_over_time(emqx_bench_value[%ds]))`, rng)
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, be.promURL+"/api/v1/query?"+url.Values{"query": {q}}.Encode(), &out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("prometheus query %s: %s", q, out.Error)
	}
	var n int64
	for _, r := range out.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, fmt.Errorf("prometheus query %s: value %q", q, s)
		}
		n += int64(v)
	}
	return n, nil
}

// heldLines counts every line in VictoriaLogs after making what it took
// searchable.
func (be *backends) heldLines(ctx context.Context) (int64, error) {
	if err := getJSON(ctx, be.vlURL+"/internal/force_flush", nil); err != nil {
		return 0, err
	}
	form := url.Values{"query": {"* | stats count() as n"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, be.vlURL+"/select/logsql/query", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("build victoria-logs query: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("query victoria-logs: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, fmt.Errorf("query victoria-logs: %d %s", resp.StatusCode, b)
	}
	var n int64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var row struct {
			N string `json:"n"`
		}
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return 0, fmt.Errorf("decode victoria-logs count: %w", err)
		}
		v, err := strconv.ParseInt(row.N, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("decode victoria-logs count %q: %w", row.N, err)
		}
		n += v
	}
	return n, sc.Err()
}

// getJSON GETs u and decodes a 200 reply into out (nil: discarded).
func getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("get %s: %d %s", u, resp.StatusCode, b)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s: %w", u, err)
	}
	return nil
}
