package connlimit

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// logs is a slog.Handler keeping messages.
type logs struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logs) Enabled(context.Context, slog.Level) bool { return true }
func (h *logs) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}
func (h *logs) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logs) WithGroup(string) slog.Handler      { return h }

func (h *logs) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestScaleShedsConnectionsBeforeDescriptorsRunOut: with the limit at 3,
// three held connections leave a fourth client a 503 with Retry-After
// that says why, counted and logged once however many are refused; the
// listener keeps serving, /-/ready's reason clears after LogEvery, and a
// closed connection frees its place.
func TestScaleShedsConnectionsBeforeDescriptorsRunOut(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, clk, reg := &logs{}, &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}, prometheus.NewRegistry()
	ln, err := Wrap(inner, Options{Max: 3, Plain: true, Source: "--web.max-connections", Now: clk.now}, slog.New(h), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	defer func() { _ = srv.Close(); <-served }()

	var held []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	get := func() (*http.Response, string) {
		t.Helper()
		tr := &http.Transport{DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("a client beyond the limit got no answer: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for range 5 {
		resp, body := get()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "5" ||
			!strings.Contains(body, `"code":"Unavailable"`) || !strings.Contains(body, "most connections (3, --web.max-connections)") {
			t.Fatalf("beyond the limit: %d Retry-After %q %s, want 503 with Retry-After 5 saying the limit", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if got := testutil.ToFloat64(ln.refused); got != 5 {
		t.Fatalf("ecp_http_connections_refused_total %v, want 5", got)
	}
	if n := h.count("refusing connections"); n != 1 {
		t.Fatalf("%d log lines for 5 refusals within %s, want 1", n, LogEvery)
	}
	if short := ln.Short(); !strings.Contains(short, "3 of 3") || !strings.Contains(short, "ulimit -n") {
		t.Fatalf("Short() = %q, want the open count, the limit and what to do", short)
	}
	clk.add(LogEvery)
	if short := ln.Short(); short != "" {
		t.Fatalf("Short() = %q %s after the last refusal, want empty", short, LogEvery)
	}
	get()
	if n := h.count("refusing connections"); n != 2 {
		t.Fatalf("%d log lines after a refusal %s later, want 2", n, LogEvery)
	}

	// A held connection goes away: its place is free again.
	_ = held[0].Close()
	held = held[1:]
	for deadline := time.Now().Add(5 * time.Second); ln.open.Load() > 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted open after one of 3 closed", ln.open.Load())
		}
		time.Sleep(time.Millisecond) // the server notices the close on its own goroutine
	}
	if resp, body := get(); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("after a connection closed: %d %s, want 200 ok", resp.StatusCode, body)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %v", problems, err)
	}
}

func TestHeadroom(t *testing.T) {
	for _, tc := range []struct{ nofile, want uint64 }{{200, 100}, {600, 256}, {1024, 256}, {20000, 4000}, {1 << 20, 1 << 20 / 5}} {
		if got := Headroom(tc.nofile); got != tc.want {
			t.Errorf("Headroom(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
}

// TestScaleCountsH2ConnectionsNotStreams: HTTP/2 streams on a held
// connection are served however many, and an h2c connection beyond the
// limit is closed without an HTTP/1 answer (which the agent would take for
// a server without HTTP/2).
func TestScaleCountsH2ConnectionsNotStreams(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Wrap(inner, Options{Max: 1, Plain: true, Source: "--web.max-connections"}, slog.New(&logs{}), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) }),
		ReadHeaderTimeout: 5 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	served := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(served) }()
	defer func() { _ = srv.Close(); <-served }()

	tr := &http.Transport{MaxConnsPerHost: 1, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := hc.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); string(b) != "HTTP/2.0" {
				t.Errorf("stream answered %q, want it served over HTTP/2", b)
			}
		})
	}
	wg.Wait()
	if got := testutil.ToFloat64(ln.refused); got != 0 {
		t.Fatalf("%v refusals for streams on one connection, want none", got)
	}

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil {
		t.Fatalf("h2c client beyond the limit read %q (%v), want the connection closed without an answer", b, err)
	}
	if got := testutil.ToFloat64(ln.refused); got != 1 {
		t.Fatalf("ecp_http_connections_refused_total %v, want 1", got)
	}
}

// pipeListener accepts one end of a fresh net.Pipe per Accept.
type pipeListener struct{ net.Listener }

func (pipeListener) Accept() (net.Conn, error) {
	c, _ := net.Pipe()
	return c, nil
}

// TestCrowdedFromHighWaterUntilLowWater: the listener says it is crowded
// from nine tenths of its limit until its connections fall to eight
// tenths, not in between on the way up nor on the way down (so polls are
// not held and released by turns around one mark), logs turning crowded
// once however often it turns so within a minute, shows it in
// ecp_http_connections_crowded, and is never crowded without a limit.
func TestCrowdedFromHighWaterUntilLowWater(t *testing.T) {
	h, clk, reg := &logs{}, &clock{t: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}, prometheus.NewRegistry()
	ln, err := Wrap(pipeListener{}, Options{Max: 20, Plain: true, Source: "--web.max-connections", Now: clk.now}, slog.New(h), reg)
	if err != nil {
		t.Fatal(err)
	}
	var open []net.Conn
	accept := func(n int) {
		t.Helper()
		for range n {
			c, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, c)
		}
	}
	closeSome := func(n int) {
		for _, c := range open[:n] {
			_ = c.Close()
		}
		open = open[n:]
	}
	defer func() { closeSome(len(open)) }()
	gauge := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "ecp_http_connections_crowded" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no ecp_http_connections_crowded")
		return 0
	}
	for _, step := range []struct {
		accept, close int
		want          bool
	}{
		{17, 0, false}, // 17 of 20: below the high-water mark of 18
		{1, 0, true},   // 18: crowded
		{0, 1, true},   // 17: still crowded on the way down
		{0, 1, false},  // 16: the low-water mark, holding again
		{1, 0, false},  // 17: not crowded on the way up
		{3, 0, true},   // 20
		{0, 4, false},  // 16
		{2, 0, true},   // 18 again within the minute
	} {
		accept(step.accept)
		closeSome(step.close)
		if got := ln.Crowded(); got != step.want {
			t.Fatalf("%d of 20 open: Crowded() = %v, want %v", len(open), got, step.want)
		}
		if g := gauge(); g != map[bool]float64{true: 1}[step.want] {
			t.Fatalf("%d of 20 open: ecp_http_connections_crowded %v", len(open), g)
		}
	}
	if n := h.count("crowded: ecp holds no long-poll open"); n != 1 {
		t.Fatalf("%d log lines for turning crowded twice within a minute, want 1", n)
	}
	closeSome(len(open))
	if ln.Crowded() {
		t.Fatal("crowded with no connection open")
	}
	clk.add(crowdedLogEvery)
	accept(18)
	if !ln.Crowded() || h.count("crowded: ecp holds no long-poll open") != 2 {
		t.Fatalf("crowded again a minute later: Crowded() %v, %d log lines, want true and 2", ln.Crowded(), h.count("crowded"))
	}

	unlimited, err := Wrap(pipeListener{}, Options{}, slog.New(&logs{}), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c, err := unlimited.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if unlimited.Crowded() {
		t.Fatal("a listener without a limit says it is crowded")
	}
}
