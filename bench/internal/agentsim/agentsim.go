// Package agentsim holds what the fleet benchmarks share to play agents
// against ecp through the agent protocol (agentproto) and to read the
// server process's cost from /proc: bench/agents drives the fleet package
// in a custom server, bench/fleet the real `ecp serve`.
package agentsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/agentproto"
)

// Post sends body as JSON to url with the agent credential cred (none when
// empty) and decodes a 200 reply into out. Any other status is returned
// with its body discarded: a 429 is an answer the caller counts, not an
// error.
func Post(ctx context.Context, hc *http.Client, url, cred string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0, fmt.Errorf("decode reply: %w", err)
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, nil
}

// HeldReport is a report sent as agent-exporter sends it on one HTTP/1.1
// connection: held by ecp as the desired-state long-poll for at most hold
// (agentproto.HeaderReportHeld). Held says ecp honoured the hold; then
// Recorded is how long ecp took to record the report (its Server-Timing),
// the report's latency that the held reply no longer shows. NextSend says
// ecp is crowded: it answered at once and wants no poll before the agent's
// next send (agentproto.HeaderHold).
type HeldReport struct {
	Code     int
	Reply    agentproto.ReportResponse
	Held     bool
	Recorded time.Duration
	NextSend bool
}

// ReportHeld posts body to base's report path asking ecp to hold the reply
// until the desired revision is newer than after, at most hold.
func ReportHeld(ctx context.Context, hc *http.Client, base, cred string, body agentproto.ReportRequest, after int64, hold time.Duration) (HeldReport, error) {
	var out HeldReport
	b, err := json.Marshal(body)
	if err != nil {
		return out, fmt.Errorf("encode report: %w", err)
	}
	url := fmt.Sprintf("%s%s?%s=%d&%s=%s", base, agentproto.PathReport, agentproto.QueryAfter, after, agentproto.QueryTimeout, hold)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return out, fmt.Errorf("build report: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("post report: %w", err)
	}
	defer resp.Body.Close()
	out.Code = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return out, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&out.Reply); err != nil {
		return out, fmt.Errorf("decode reply: %w", err)
	}
	out.Held = resp.Header.Get(agentproto.HeaderReportHeld) == agentproto.ReportHeld
	out.NextSend = resp.Header.Get(agentproto.HeaderHold) == agentproto.HoldNextSend
	if v, ok := strings.CutPrefix(resp.Header.Get(agentproto.HeaderServerTiming), "record;dur="); ok {
		if ms, err := strconv.ParseFloat(v, 64); err == nil {
			out.Recorded = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return out, nil
}

// How a simulated agent holds its connections to ecp.
const (
	// ConnsH2 is agent-exporter's way: its own transport (package
	// transport), one HTTP/2 connection for report, long-poll and push.
	ConnsH2 = "h2"
	// ConnsHTTP1 is the agents' way before HTTP/2: a connection of its own
	// for the long-poll, reports and pushes on kept-alive connections.
	ConnsHTTP1 = "http1"
	// ConnsOneConn is agent-exporter's default: one HTTP/1.1 connection
	// per agent on which, each interval, the push and log batch go out
	// and then the report, held as the long-poll until just before the
	// next interval (ReportHeld): one request per interval beside the
	// push. A desired-state poll fills the rest of an interval only when
	// ecp did not hold the report or answered it early.
	ConnsOneConn = "http1-oneconn"
)

// PollMargin is how long before its next send an agent on one HTTP/1.1
// connection wants its poll answered (agent-exporter's daemon.pollMargin).
const PollMargin = time.Second

// AgentClients returns one agent's clients on one transport, as
// agent-exporter builds them (HTTP/2 with http2, else one HTTP/1.1
// connection): calls (report, push) bounded by timeout, and the long-poll
// bounded by its own wait.
func AgentClients(timeout time.Duration, http2 bool) (calls, poll *http.Client) {
	t := transport.NewECP(transport.Options{HTTP2: http2})
	return t.Client(timeout), t.Client(0)
}

// Parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func Parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// Sleep waits d and says false when ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Poller is one agent's desired-state long-poll.
type Poller struct {
	HC *http.Client
	// Base is ecp's URL, Cred the agent's credential.
	Base, Cred string
	// Revision is the desired-state revision the agent has applied.
	Revision int64
	// Wait is the timeout the agent asks for; Backoff the pause after a
	// failed poll.
	Wait, Backoff time.Duration
	// Stopped, when it says true, ends the loop as a dead agent's would.
	Stopped func() bool
	// Answered counts the polls ecp answered.
	Answered *atomic.Int64
}

// Run keeps one long-poll open until ctx ends or Stopped says so. When
// ecp asks for no poll before the agent's next send (agentproto.HeaderHold)
// it waits Backoff, an interval, as it knows no send schedule.
func (p Poller) Run(ctx context.Context) {
	for ctx.Err() == nil && !p.Stopped() {
		ok, nextSend := p.Once(ctx, p.Wait)
		if !ok || (nextSend && !Sleep(ctx, p.Backoff)) {
			return
		}
	}
}

// Once sends one long-poll held at most wait, and after a failure waits
// Backoff with jitter, as the agent backs off; ok is false when ctx ended,
// nextSend says that ecp answered at once and wants no poll before the
// agent's next send (agentproto.HeaderHold).
func (p Poller) Once(ctx context.Context, wait time.Duration) (ok, nextSend bool) {
	url := fmt.Sprintf("%s%s?%s=%d&%s=%s", p.Base, agentproto.PathDesired, agentproto.QueryAfter, p.Revision, agentproto.QueryTimeout, wait)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, false
	}
	req.Header.Set("Authorization", "Bearer "+p.Cred)
	resp, err := p.HC.Do(req)
	if err != nil {
		return Sleep(ctx, Jitter(p.Backoff)), false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	p.Answered.Add(1)
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return Sleep(ctx, Jitter(p.Backoff)), false
	}
	return true, resp.Header.Get(agentproto.HeaderHold) == agentproto.HoldNextSend
}

// Jitter is d spread over [d/2, 3d/2), so that agents refused together do
// not come back together.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + rand.N(d)
}

// ClockTicks is USER_HZ, 100 on every Linux this runs on.
const ClockTicks = 100

// Proc is one reading of a process's cost.
type Proc struct {
	// CPU is user plus system time so far.
	CPU time.Duration
	// RSSKiB is the resident set now, HWMKiB its peak.
	RSSKiB, HWMKiB int64
}

// ReadProc reads pid's CPU time and memory from /proc.
func ReadProc(pid int) (Proc, error) {
	var p Proc
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, fmt.Errorf("read server stat: %w", err)
	}
	// Fields after the command name (which may hold spaces) start at ")".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 > len(stat) {
		return p, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+2:]))
	if len(fields) < 13 {
		return p, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	p.CPU = time.Duration(utime+stime) * time.Second / ClockTicks
	kib, err := StatusKiB(strconv.Itoa(pid), "VmRSS", "VmHWM")
	if err != nil {
		return p, err
	}
	p.RSSKiB, p.HWMKiB = kib[0], kib[1]
	return p, nil
}

// StatusKiB reads fields given in kB of /proc/<pid>/status (VmRSS, VmHWM,
// RssAnon...), in the order asked; pid "self" is this process. A field the
// kernel does not show reads 0.
func StatusKiB(pid string, fields ...string) ([]int64, error) {
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, fmt.Errorf("read /proc/%s/status: %w", pid, err)
	}
	kib := make([]int64, len(fields))
	for line := range strings.SplitSeq(string(status), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if i := slices.Index(fields, name); ok && i >= 0 {
			kib[i], _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return kib, nil
}

// Scrape reads base's /metrics and calls sample with each sample's line
// (series and value, comments left out) and its value. It asks with hc
// (a scraper may need its connection kept, see bench/fleet).
func Scrape(ctx context.Context, hc *http.Client, base string, sample func(line string, value float64)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return fmt.Errorf("build scrape: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// A refusal (503 at ecp's connection limit) is no metrics at all,
		// not metrics that read zero.
		return fmt.Errorf("scrape %s: status %d", base, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		sample(l, v)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read metrics of %s: %w", base, err)
	}
	return nil
}
