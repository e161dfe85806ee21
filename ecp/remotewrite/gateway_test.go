package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gorilla/mux"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAuthn maps bearer credentials to clusters; project can change
// between calls, as a transfer does.
type fakeAuthn struct {
	mu       sync.Mutex
	projects map[string]string // credential -> project
}

func (f *fakeAuthn) AuthenticateAgent(r *http.Request) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cred := r.Header.Get("Authorization")
	p, ok := f.projects[cred]
	if !ok {
		return "", "", httpapi.Unauthorized("no such agent")
	}
	return "c-" + cred[len("Bearer "):], p, nil
}

func (f *fakeAuthn) move(cred, project string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.projects["Bearer "+cred] = project
}

// backend is a fake remote-write receiver behind an http.RoundTripper, so
// tests run in a synctest bubble with no network and no real time.
type backend struct {
	mu sync.Mutex
	// script holds the statuses of the next calls; then 204.
	script []int
	got    []prompb.WriteRequest
	calls  int
}

func (b *backend) RoundTrip(r *http.Request) (*http.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	reply := func(code int) (*http.Response, error) {
		return &http.Response{StatusCode: code, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
	if len(b.script) > 0 {
		code := b.script[0]
		b.script = b.script[1:]
		return reply(code)
	}
	if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
		return reply(http.StatusBadRequest)
	}
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		return reply(http.StatusBadRequest)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		return reply(http.StatusBadRequest)
	}
	b.got = append(b.got, req)
	return reply(http.StatusNoContent)
}

func (b *backend) requests() []prompb.WriteRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]prompb.WriteRequest(nil), b.got...)
}

func writeRequest(t testing.TB, series ...[]prompb.Label) []byte {
	t.Helper()
	var req prompb.WriteRequest
	for i, ls := range series {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: ls, Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1000}}})
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func labels(kv ...string) []prompb.Label {
	var ls []prompb.Label
	for i := 0; i < len(kv); i += 2 {
		ls = append(ls, prompb.Label{Name: kv[i], Value: kv[i+1]})
	}
	return ls
}

type harness struct {
	g       *Gateway
	reg     *prometheus.Registry
	authn   *fakeAuthn
	router  *mux.Router
	backend *backend
}

// newHarness builds a gateway forwarding to a fake backend (when url is
// set). Call it inside the synctest bubble.
func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	authn := &fakeAuthn{projects: map[string]string{"Bearer a1": "p1", "Bearer a2": "p2"}}
	be := &backend{}
	opts.HTTPClient = &http.Client{Transport: be}
	g, err := New(opts, authn, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	g.Register(r, httpapi.NewAdapter(slog.New(slog.DiscardHandler), reg))
	return &harness{g: g, reg: reg, authn: authn, router: r, backend: be}
}

func (h *harness) push(t *testing.T, cred string, body []byte) *http.Response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, agentproto.PathWrite, bytes.NewReader(body))
	SetHeaders(req.Header)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	rec := httptest.NewRecorder()
	h.router.ServeHTTP(rec, req)
	return rec.Result()
}

// run starts the senders and returns a stop that waits for them.
func (h *harness) run() func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = h.g.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

const backendURL = "http://backend.test/api/v1/write"

func labelMap(ls []prompb.Label) map[string]string {
	m := map[string]string{}
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

func TestStamp(t *testing.T) {
	tests := []struct {
		name string
		in   []prompb.Label
		want []prompb.Label
	}{
		{"adds both", labels("__name__", "emqx_up"), labels("__name__", "emqx_up", "cluster", "c1", "project", "p1")},
		{"overwrites forged ones", labels("__name__", "emqx_up", "cluster", "other", "project", "evil"),
			labels("__name__", "emqx_up", "cluster", "c1", "project", "p1")},
		{"keeps order around them", labels("__name__", "x", "a", "1", "cluster", "zz", "status", "ok", "zone", "z"),
			labels("__name__", "x", "a", "1", "cluster", "c1", "project", "p1", "status", "ok", "zone", "z")},
		{"sorts unsorted input", labels("zone", "z", "__name__", "x", "project", "evil"),
			labels("__name__", "x", "cluster", "c1", "project", "p1", "zone", "z")},
		{"labels after both", labels("__name__", "x", "status", "s"), labels("__name__", "x", "cluster", "c1", "project", "p1", "status", "s")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := prompb.WriteRequest{
				Timeseries: []prompb.TimeSeries{{Labels: tt.in, Samples: []prompb.Sample{{Value: 1.5, Timestamp: 1000}, {Value: 2.5, Timestamp: 2000}},
					Exemplars: []prompb.Exemplar{{Labels: labels("trace_id", "t"), Value: 1, Timestamp: 1000}}}},
				Metadata: []prompb.MetricMetadata{{MetricFamilyName: "x", Help: "h"}},
			}
			raw, err := in.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			body, n, err := Stamp(snappy.Encode(nil, raw), "p1", "c1", DefaultMaxDecodedBytes)
			if err != nil || n != 2 {
				t.Fatalf("stamp: %d samples, %v", n, err)
			}
			dec, err := snappy.Decode(nil, body)
			if err != nil {
				t.Fatal(err)
			}
			var got prompb.WriteRequest
			if err := got.Unmarshal(dec); err != nil {
				t.Fatal(err)
			}
			ts := got.Timeseries[0]
			if len(ts.Labels) != len(tt.want) {
				t.Fatalf("labels %v, want %v", ts.Labels, tt.want)
			}
			for i := range ts.Labels {
				if ts.Labels[i].Name != tt.want[i].Name || ts.Labels[i].Value != tt.want[i].Value {
					t.Fatalf("labels %v, want %v", ts.Labels, tt.want)
				}
			}
			// Everything else passes unchanged.
			if len(ts.Samples) != 2 || ts.Samples[1].Value != 2.5 || ts.Samples[1].Timestamp != 2000 ||
				len(ts.Exemplars) != 1 || ts.Exemplars[0].Labels[0].Value != "t" || len(got.Metadata) != 1 || got.Metadata[0].Help != "h" {
				t.Fatalf("stamping changed other fields: %+v", got)
			}
		})
	}
}

func TestStampRefusesMalformed(t *testing.T) {
	for name, raw := range map[string][]byte{
		"truncated field": {0x0a, 0x05, 0x01},
		"bad tag":         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"bad label":       {0x0a, 0x03, 0x0a, 0x01, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Stamp(snappy.Encode(nil, raw), "p", "c", DefaultMaxDecodedBytes); err == nil {
				t.Fatal("malformed request accepted")
			}
		})
	}
	t.Run("over the decoded limit", func(t *testing.T) {
		if _, _, err := Stamp(snappy.Encode(nil, make([]byte, 100)), "p", "c", 99); err == nil {
			t.Fatal("oversized request accepted")
		}
	})
}

func TestGatewayStampsAndForwards(t *testing.T) { synctest.Test(t, testStampsAndForwards) }

func testStampsAndForwards(t *testing.T) {
	h := newHarness(t, Options{URL: backendURL, Shards: 2, QueueSize: 4})
	be := h.backend
	stop := h.run()
	defer stop()

	// The agent tries to write into another tenant's series.
	body := writeRequest(t, labels("__name__", "emqx_up", "cluster", "victim", "project", "victim-project"), labels("__name__", "emqx_node_running", "node", "n1"))
	if resp := h.push(t, "a1", body); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("push: %d, want 204", resp.StatusCode)
	}
	synctest.Wait()
	if len(be.requests()) != 1 {
		t.Fatalf("backend got %d requests, want 1", len(be.requests()))
	}
	for _, ts := range be.requests()[0].Timeseries {
		m := labelMap(ts.Labels)
		if m["project"] != "p1" || m["cluster"] != "c-a1" {
			t.Fatalf("series %v stamped project=%q cluster=%q, want p1 and c-a1", m, m["project"], m["cluster"])
		}
	}
	if got := testutil.ToFloat64(h.g.forwarded); got != 2 {
		t.Fatalf("forwarded %v, want 2", got)
	}
	if err := testutil.GatherAndCompare(h.reg, bytes.NewBufferString(`
# HELP ecp_remote_write_samples_received_total Samples agents pushed to ecp and ecp accepted (stamped and queued, or counted as not configured).
# TYPE ecp_remote_write_samples_received_total counter
ecp_remote_write_samples_received_total 2
`), "ecp_remote_write_samples_received_total"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(h.reg); err != nil || len(problems) > 0 {
		t.Fatalf("metrics lint: %v %v", problems, err)
	}
}

func TestGatewayTransferChangesStamp(t *testing.T) { synctest.Test(t, testTransferChangesStamp) }

func testTransferChangesStamp(t *testing.T) {
	h := newHarness(t, Options{URL: backendURL, Shards: 1, QueueSize: 4})
	be := h.backend
	stop := h.run()
	defer stop()

	body := writeRequest(t, labels("__name__", "emqx_up"))
	h.push(t, "a1", body)
	synctest.Wait()
	h.authn.move("a1", "p9")
	h.push(t, "a1", body)
	synctest.Wait()
	if len(be.requests()) != 2 {
		t.Fatalf("backend got %d requests, want 2", len(be.requests()))
	}
	for i, want := range []string{"p1", "p9"} {
		if got := labelMap(be.requests()[i].Timeseries[0].Labels)["project"]; got != want {
			t.Fatalf("request %d stamped project %q, want %q", i, got, want)
		}
	}
}

func TestGatewayQueueFullAnswers429(t *testing.T) {
	// No Run: nothing drains the one-slot queue.
	h := newHarness(t, Options{URL: backendURL, Shards: 1, QueueSize: 1, RetryAfter: 7 * time.Second})
	body := writeRequest(t, labels("__name__", "emqx_up"))
	if resp := h.push(t, "a1", body); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("first push: %d, want 204", resp.StatusCode)
	}
	resp := h.push(t, "a2", body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("second push: %d Retry-After %q, want 429 and 7", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if got := testutil.ToFloat64(h.g.throttled); got != 1 {
		t.Fatalf("throttled %v, want 1", got)
	}
	if got := h.g.QueueLength(); got != 1 {
		t.Fatalf("queue length %d, want 1", got)
	}
}

func TestGatewayRetriesAndDrops(t *testing.T) {
	tests := []struct {
		name          string
		script        []int
		wantCalls     int
		wantForwarded float64
		wantRejected  float64
	}{
		{"5xx is retried", []int{http.StatusServiceUnavailable, http.StatusBadGateway}, 3, 1, 0},
		{"429 is retried", []int{http.StatusTooManyRequests}, 2, 1, 0},
		{"4xx is dropped", []int{http.StatusBadRequest}, 1, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{URL: backendURL, Shards: 1})
				h.backend.script = tt.script
				stop := h.run()
				defer stop()
				h.push(t, "a1", writeRequest(t, labels("__name__", "emqx_up")))
				// Backoff sleeps on the bubble's clock: Wait returns once
				// every retry is done.
				time.Sleep(time.Minute)
				synctest.Wait()
				if h.backend.calls != tt.wantCalls {
					t.Fatalf("backend called %d times, want %d", h.backend.calls, tt.wantCalls)
				}
				if got := testutil.ToFloat64(h.g.forwarded); got != tt.wantForwarded {
					t.Fatalf("forwarded %v, want %v", got, tt.wantForwarded)
				}
				if got := testutil.ToFloat64(h.g.dropped.WithLabelValues(ReasonRejected)); got != tt.wantRejected {
					t.Fatalf("rejected %v, want %v", got, tt.wantRejected)
				}
			})
		})
	}
}

func TestGatewayShutdown(t *testing.T) {
	tests := []struct {
		name          string
		script        []int
		wantForwarded float64
		wantDropped   float64
	}{
		// The agents were told the samples were taken: Run flushes them.
		{"queued requests are flushed", nil, 1, 0},
		// A backend that stays down past DrainTimeout loses them, counted.
		{"a dead backend loses them, counted", slices.Repeat([]int{http.StatusServiceUnavailable}, 1000), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, Options{URL: backendURL, Shards: 1})
				h.backend.script = tt.script
				h.push(t, "a1", writeRequest(t, labels("__name__", "emqx_up")))
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				start := time.Now()
				if err := h.g.Run(ctx); err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took > DefaultDrainTimeout {
					t.Fatalf("shutdown took %s, over DrainTimeout %s", took, DefaultDrainTimeout)
				}
				if got := testutil.ToFloat64(h.g.forwarded); got != tt.wantForwarded {
					t.Fatalf("forwarded %v, want %v", got, tt.wantForwarded)
				}
				if got := testutil.ToFloat64(h.g.dropped.WithLabelValues(ReasonShutdown)); got != tt.wantDropped {
					t.Fatalf("dropped at shutdown %v, want %v", got, tt.wantDropped)
				}
			})
		})
	}
}

func TestGatewayRefusals(t *testing.T) {
	good := writeRequest(t, labels("__name__", "emqx_up"))
	tests := []struct {
		name   string
		cred   string
		body   []byte
		want   int
		header string
	}{
		{"no credential", "", good, http.StatusUnauthorized, ""},
		{"unknown credential", "zz", good, http.StatusUnauthorized, ""},
		{"not snappy", "a1", []byte("plain text"), http.StatusBadRequest, ""},
		{"snappy but not protobuf", "a1", snappy.Encode(nil, []byte{0xff, 0xff, 0xff}), http.StatusBadRequest, ""},
		{"not configured", "a1", good, http.StatusNoContent, agentproto.RemoteWriteDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			resp := h.push(t, tt.cred, tt.body)
			defer resp.Body.Close()
			if resp.StatusCode != tt.want || resp.Header.Get(agentproto.HeaderRemoteWrite) != tt.header {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get(agentproto.HeaderRemoteWrite), tt.want, tt.header)
			}
		})
	}
	t.Run("not configured is counted", func(t *testing.T) {
		h := newHarness(t, Options{})
		h.push(t, "a1", good)
		if got := testutil.ToFloat64(h.g.dropped.WithLabelValues(ReasonNotConfigured)); got != 1 {
			t.Fatalf("dropped not_configured %v, want 1", got)
		}
	})
}

func TestNewRefusesBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x/y", "127.0.0.1:9090/api/v1/write", "http://"} {
		t.Run(u, func(t *testing.T) {
			if _, err := New(Options{URL: u}, &fakeAuthn{}, nil, nil); err == nil {
				t.Fatalf("New accepted %q", u)
			}
		})
	}
}

// anyAuthn takes any bearer credential as the cluster of that name.
type anyAuthn struct{}

func (anyAuthn) AuthenticateAgent(r *http.Request) (string, string, error) {
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), "p", nil
}

// TestScaleForwarderKeepsOneConnectionPerSender: the senders post at once,
// round after round, to a real backend; they must reuse their connections
// rather than dial anew (Go's default transport keeps 2 idle per host).
func TestScaleForwarderKeepsOneConnectionPerSender(t *testing.T) {
	const shards, rounds = 4, 10
	var dials atomic.Int64
	arrived, release := make(chan struct{}), make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	g, err := New(Options{URL: srv.URL + "/api/v1/write", Shards: shards, QueueSize: 4}, anyAuthn{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	g.Register(r, httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry()))
	// One cluster per shard, so every sender has a request each round.
	var clusters []string
	seen := map[chan batch]bool{}
	for i := 0; len(clusters) < shards; i++ {
		c := fmt.Sprintf("c%d", i)
		if q := g.shardOf(c); !seen[q] {
			seen[q] = true
			clusters = append(clusters, c)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	body := writeRequest(t, labels("__name__", "emqx_up"))
	for round := range rounds {
		for _, c := range clusters {
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, agentproto.PathWrite, bytes.NewReader(body))
			SetHeaders(req.Header)
			req.Header.Set("Authorization", "Bearer "+c)
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, req)
			if rec.Code != http.StatusNoContent {
				t.Fatalf("push: %d %s", rec.Code, rec.Body)
			}
		}
		// All senders are in a call to the backend at the same time.
		for range shards {
			<-arrived
		}
		for range shards {
			release <- struct{}{}
		}
		want := float64(shards * (round + 1))
		for testutil.ToFloat64(g.forwarded) < want {
			time.Sleep(time.Millisecond) // a real backend: wait for the senders to finish the round
		}
	}
	if got := dials.Load(); got > shards {
		t.Fatalf("%d senders opened %d connections to the backend over %d rounds, want at most %d", shards, got, rounds, shards)
	}
}

func (b *backend) callCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// series is what the backend got, one "cluster/project/__name__" per
// series, in order.
func series(reqs []prompb.WriteRequest) []string {
	var out []string
	for _, r := range reqs {
		for _, ts := range r.Timeseries {
			m := labelMap(ts.Labels)
			out = append(out, m["cluster"]+"/"+m["project"]+"/"+m["__name__"])
		}
	}
	return out
}

// TestGatewayBatchesQueuedPushes: what waits in a shard goes to the
// backend in as few calls as it can, in the order the agents pushed it,
// each series stamped with its own agent's tenant, and never two pushes of
// one cluster in a call: Prometheus kept one of a series' samples from a
// call that named the series twice, so an agent's backlog after a
// Prometheus outage was lost but for one collection (e2e/depfaults
// TestPrometheusDown).
func TestGatewayBatchesQueuedPushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{URL: backendURL, Shards: 1, QueueSize: 4})
		for _, p := range []struct{ cred, name string }{{"a1", "m1"}, {"a2", "m2"}, {"a1", "m3"}} {
			if resp := h.push(t, p.cred, writeRequest(t, labels("__name__", p.name, "project", "forged"))); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("push: %d, want 204", resp.StatusCode)
			}
		}
		stop := h.run()
		defer stop()
		synctest.Wait()
		if h.backend.callCount() != 2 {
			t.Fatalf("backend called %d times for 3 queued pushes, two of them a1's, want 2", h.backend.callCount())
		}
		want := []string{"c-a1/p1/m1", "c-a2/p2/m2", "c-a1/p1/m3"}
		if got := series(h.backend.requests()); !slices.Equal(got, want) {
			t.Fatalf("backend got %v, want %v", got, want)
		}
		if got := testutil.ToFloat64(h.g.forwarded); got != 3 {
			t.Fatalf("forwarded %v, want 3", got)
		}
	})
}

// TestGatewayBatchWaitsForMorePushes: with BatchWait a sender holds the
// first push that long for others to join it.
func TestGatewayBatchWaitsForMorePushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{URL: backendURL, Shards: 1, BatchWait: time.Second})
		stop := h.run()
		defer stop()
		h.push(t, "a1", writeRequest(t, labels("__name__", "m1")))
		time.Sleep(500 * time.Millisecond)
		h.push(t, "a2", writeRequest(t, labels("__name__", "m2")))
		synctest.Wait()
		if h.backend.callCount() != 0 {
			t.Fatalf("backend called %d times before BatchWait ended, want 0", h.backend.callCount())
		}
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		want := []string{"c-a1/p1/m1", "c-a2/p2/m2"}
		if got := series(h.backend.requests()); h.backend.callCount() != 1 || !slices.Equal(got, want) {
			t.Fatalf("backend called %d times with %v, want once with %v", h.backend.callCount(), got, want)
		}
	})
}

// TestGatewayQueueTakesPushesDuringBatchWait: a sender waiting for more
// pushes to join its call takes them from the queue as it fills (it is
// woken when the queue is half full), so agents pushing during the wait
// are not told to come back later, and all of them go in the one call.
func TestGatewayQueueTakesPushesDuringBatchWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const pushes = 12
		h := newHarness(t, Options{URL: backendURL, Shards: 1, QueueSize: 4, BatchWait: time.Second})
		stop := h.run()
		defer stop()
		var want []string
		for i := range pushes {
			cred := fmt.Sprintf("b%d", i)
			h.authn.move(cred, "p1")
			if resp := h.push(t, cred, writeRequest(t, labels("__name__", "m"))); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("push %d of %d during the batch wait: %d, want 204", i+1, pushes, resp.StatusCode)
			}
			want = append(want, "c-"+cred+"/p1/m")
			synctest.Wait()
		}
		if h.backend.callCount() != 0 {
			t.Fatalf("backend called %d times before BatchWait ended, want 0", h.backend.callCount())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := series(h.backend.requests()); h.backend.callCount() != 1 || !slices.Equal(got, want) {
			t.Fatalf("backend called %d times with %v, want once with %v", h.backend.callCount(), got, want)
		}
	})
}

// TestGatewayRefusedBatchIsSplit: a call the backend refuses for good is
// sent again push by push, so only the push the backend refuses alone is
// dropped; the other agent's samples are stored.
func TestGatewayRefusedBatchIsSplit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{URL: backendURL, Shards: 1})
		// The call with both, then a1's push alone, are refused.
		h.backend.script = []int{http.StatusBadRequest, http.StatusBadRequest}
		h.push(t, "a1", writeRequest(t, labels("__name__", "too_old")))
		h.push(t, "a2", writeRequest(t, labels("__name__", "m2"), labels("__name__", "m3")))
		stop := h.run()
		defer stop()
		synctest.Wait()
		want := []string{"c-a2/p2/m2", "c-a2/p2/m3"}
		if got := series(h.backend.requests()); h.backend.callCount() != 3 || !slices.Equal(got, want) {
			t.Fatalf("backend called %d times and stored %v, want 3 calls storing %v", h.backend.callCount(), got, want)
		}
		if got := testutil.ToFloat64(h.g.forwarded); got != 2 {
			t.Fatalf("forwarded %v, want 2", got)
		}
		if got := testutil.ToFloat64(h.g.dropped.WithLabelValues(ReasonRejected)); got != 1 {
			t.Fatalf("rejected %v, want 1", got)
		}
	})
}

// TestGatewayQueuedPushHoldsItsOwnSize: a small push stamped into a pooled
// buffer that a large push grew is queued in a buffer of its own size, so
// a full queue of small pushes holds little memory.
func TestGatewayQueuedPushHoldsItsOwnSize(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Options{URL: backendURL, Shards: 1, QueueSize: 2})
		var large [][]prompb.Label
		for i := range 20000 {
			large = append(large, labels("__name__", "emqx_large_series_name", "id", fmt.Sprintf("rule_%06d", i)))
		}
		// Forwarded, the large push's buffer goes back to the pool.
		stop := h.run()
		if resp := h.push(t, "a1", writeRequest(t, large...)); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push: %d, want 204", resp.StatusCode)
		}
		synctest.Wait()
		stop()
		if resp := h.push(t, "a1", writeRequest(t, labels("__name__", "emqx_up"))); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("push: %d, want 204", resp.StatusCode)
		}
		if b := <-h.g.shards[0]; cap(b.raw) > 2*len(b.raw)+64<<10 {
			t.Fatalf("a push of %d bytes is queued in a buffer of %d", len(b.raw), cap(b.raw))
		}
	})
}

// TestStampRefusesOversizedWithoutAllocating: a 6-byte body announcing
// 268 MB decompressed (found by FuzzStamp) is refused before any buffer is
// sized from it.
func TestStampRefusesOversizedWithoutAllocating(t *testing.T) {
	body := []byte("\xe9\xe9\xff\x7f\xe9i")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := Stamp(body, "p", "c", DefaultMaxDecodedBytes)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "over the") {
		t.Fatalf("Stamp: %v, want the decompressed size refused", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("Stamp allocated %d bytes to refuse a 6-byte body", n)
	}
}

// TestStampGrowsItsBufferOnce: stamping into a buffer too small for the
// result (none left in the pool after a garbage collection) allocates the
// buffer once at its final size, instead of growing it step by step as
// the series are written, which allocated and copied several times its
// size for every such push.
func TestStampGrowsItsBufferOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts: the race detector allocates on its own")
	}
	var series [][]prompb.Label
	for i := range 200 {
		series = append(series, labels("__name__", "emqx_bench_value", "i", strconv.Itoa(i)))
	}
	body := writeRequest(t, series...)
	allocs := testing.AllocsPerRun(20, func() {
		if _, n, err := appendStamped(nil, body, "project-1", "5f0c2b8e-9d1a-4c47-a3b2-8e6f1d2c9a70", DefaultMaxDecodedBytes); err != nil || n != 200 {
			t.Fatalf("stamp: %d samples, %v", n, err)
		}
	})
	if allocs > 1 {
		t.Fatalf("stamping a 200-series push into an empty buffer allocated %v times, want 1", allocs)
	}
}
