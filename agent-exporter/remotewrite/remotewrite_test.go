package remotewrite

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func decode(t *testing.T, body []byte) prompb.WriteRequest {
	t.Helper()
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		t.Fatal(err)
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return req
}

func seriesOfRequest(req prompb.WriteRequest) map[string]float64 {
	out := map[string]float64{}
	for _, ts := range req.Timeseries {
		key := ""
		for _, l := range ts.Labels {
			key += l.Name + "=" + l.Value + ","
		}
		out[key] = ts.Samples[0].Value
	}
	return out
}

func TestEncode(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "emqx_connector_status", Help: "h"}, []string{"id", "status"})
	g.WithLabelValues("http:a", "connected").Set(1)
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "emqx_rule_failed_total", Help: "h"})
	c.Add(3)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "x_seconds", Help: "h", Buckets: []float64{1}})
	h.Observe(0.5)
	reg.MustRegister(g, c, h)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	at := time.UnixMilli(1_764_000_000_123)
	body, n, err := Encode(mfs, at)
	if err != nil {
		t.Fatal(err)
	}
	req := decode(t, body)
	want := map[string]float64{
		"__name__=emqx_connector_status,id=http:a,status=connected,": 1,
		"__name__=emqx_rule_failed_total,":                           3,
		"__name__=x_seconds_bucket,le=1,":                            1,
		"__name__=x_seconds_bucket,le=+Inf,":                         1,
		"__name__=x_seconds_sum,":                                    0.5,
		"__name__=x_seconds_count,":                                  1,
	}
	got := seriesOfRequest(req)
	if n != len(want) || len(got) != len(want) {
		t.Fatalf("got %d samples %v, want %v", n, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, ts := range req.Timeseries {
		if ts.Samples[0].Timestamp != at.UnixMilli() {
			t.Fatalf("timestamp %d, want %d", ts.Samples[0].Timestamp, at.UnixMilli())
		}
	}
}

// fakeECP answers pushes with the statuses in script, then 204; it is an
// http.RoundTripper, so tests run in a synctest bubble without network.
type fakeECP struct {
	mu     sync.Mutex
	script []int
	header string
	got    []prompb.WriteRequest
	auth   []string
	calls  int
}

// callCount, firstAuth and received read what the sender's goroutine
// wrote under mu: synctest's fake clock orders them for the test, not for
// the race detector.
func (f *fakeECP) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeECP) firstAuth() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auth) == 0 {
		return ""
	}
	return f.auth[0]
}

func (f *fakeECP) received() []prompb.WriteRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

func (f *fakeECP) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	resp := &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}
	switch {
	case r.URL.Path != agentproto.PathWrite || r.Header.Get("Content-Encoding") != "snappy" ||
		r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0":
		resp.StatusCode = http.StatusBadRequest
	case len(f.script) > 0:
		resp.StatusCode = f.script[0]
		f.script = f.script[1:]
		resp.Header.Set("Retry-After", "2")
	default:
		raw, err := snappy.Decode(nil, body)
		var req prompb.WriteRequest
		if err != nil || req.Unmarshal(raw) != nil {
			resp.StatusCode = http.StatusBadRequest
			break
		}
		f.got = append(f.got, req)
		if f.header != "" {
			resp.Header.Set(agentproto.HeaderRemoteWrite, f.header)
		}
	}
	return resp, nil
}

type fixture struct {
	s      *Sender
	ecp    *fakeECP
	gauge  prometheus.Gauge
	target *Target
	stop   func()
}

// newFixture builds a sender pushing to a fake ecp; call it inside the
// bubble.
func newFixture(t *testing.T, queue int, script ...int) *fixture {
	t.Helper()
	src := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "emqx_up", Help: "h"})
	src.MustRegister(g)
	f := &fakeECP{script: script}
	s, err := New(Options{Gatherer: src, QueueSize: queue, BackoffBase: time.Second, BackoffMax: 4 * time.Second}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{s: s, ecp: f, gauge: g, stop: func() {}}
	fx.target = &Target{ECPURL: "http://ecp.test", Credential: "ecpagent_c1.secret", Client: &http.Client{Transport: f}}
	return fx
}

func (fx *fixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = fx.s.Run(ctx); close(done) }()
	fx.stop = func() { cancel(); <-done }
}

// settle lets the sender finish everything it can, backoff included (the
// bubble's clock jumps over the waits).
func settle() {
	time.Sleep(10 * time.Minute)
	synctest.Wait()
}

func TestSenderRetriesThenDelivers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t, 4, http.StatusServiceUnavailable, http.StatusTooManyRequests)
		fx.run()
		defer fx.stop()
		fx.gauge.Set(1)
		start := time.Now()
		if err := fx.s.Push(fx.target, start); err != nil {
			t.Fatal(err)
		}
		settle()
		if got := testutil.ToFloat64(fx.s.sent); got != 1 {
			t.Fatalf("sent %v, want 1", got)
		}
		if got := testutil.ToFloat64(fx.s.failures); got != 2 {
			t.Fatalf("failures %v, want 2", got)
		}
		if fx.ecp.callCount() != 3 || fx.ecp.firstAuth() != "Bearer ecpagent_c1.secret" {
			t.Fatalf("calls %d, authorization %q", fx.ecp.callCount(), fx.ecp.firstAuth())
		}
	})
}

func TestSenderHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t, 4, http.StatusTooManyRequests)
		fx.run()
		defer fx.stop()
		if err := fx.s.Push(fx.target, time.Now()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// The fake asked for 2 s: nothing is resent before.
		time.Sleep(1900 * time.Millisecond)
		synctest.Wait()
		if fx.ecp.callCount() != 1 {
			t.Fatalf("%d calls before Retry-After passed, want 1", fx.ecp.callCount())
		}
		settle()
		if fx.ecp.callCount() != 2 || testutil.ToFloat64(fx.s.sent) != 1 {
			t.Fatalf("after Retry-After: %d calls, sent %v", fx.ecp.callCount(), testutil.ToFloat64(fx.s.sent))
		}
	})
}

func TestSenderQueueDropsOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t, 2)
		// Not running: collections pile up as while ecp is unreachable.
		for i := range 3 {
			fx.gauge.Set(float64(i))
			if err := fx.s.Push(fx.target, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		if got := testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonQueueFull)); got != 1 {
			t.Fatalf("dropped queue_full %v, want 1", got)
		}
		fx.run()
		defer fx.stop()
		settle()
		got := fx.ecp.received()
		if len(got) != 2 || got[0].Timeseries[0].Samples[0].Value != 1 || got[1].Timeseries[0].Samples[0].Value != 2 {
			t.Fatalf("delivered %v, want the two newest collections in order", got)
		}
	})
}

func TestSenderDropsOnRefusal(t *testing.T) {
	tests := []struct {
		name   string
		status int
		reason string
	}{
		{"4xx drops the collection", http.StatusBadRequest, ReasonRejected},
		{"401 drops everything", http.StatusUnauthorized, ReasonUnregistered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fx := newFixture(t, 4, tt.status)
				if err := fx.s.Push(fx.target, time.Now()); err != nil {
					t.Fatal(err)
				}
				fx.run()
				defer fx.stop()
				settle()
				if got := testutil.ToFloat64(fx.s.dropped.WithLabelValues(tt.reason)); got != 1 {
					t.Fatalf("dropped %s %v, want 1", tt.reason, got)
				}
				if got := testutil.ToFloat64(fx.s.queued); got != 0 {
					t.Fatalf("queue length %v, want 0", got)
				}
				if fx.ecp.callCount() != 1 {
					t.Fatalf("%d calls, want 1: a refusal is not retried", fx.ecp.callCount())
				}
			})
		})
	}
}

func TestSenderResetForgetsTheQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t, 4)
		for range 2 {
			if err := fx.s.Push(fx.target, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		fx.s.Reset()
		fx.run()
		defer fx.stop()
		settle()
		if fx.ecp.callCount() != 0 || testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonUnregistered)) != 2 {
			t.Fatalf("after Reset: %d calls, dropped unregistered %v; want 0 and 2", fx.ecp.callCount(), testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonUnregistered)))
		}
	})
}

func TestSenderPausesWhenECPHasNoBackend(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t, 4)
		fx.ecp.header = agentproto.RemoteWriteDisabled
		fx.run()
		if err := fx.s.Push(fx.target, time.Now()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		fx.stop()
		// Paused: the next collection is counted, not queued.
		if err := fx.s.Push(fx.target, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonNotConfigured)); got != 2 {
			t.Fatalf("dropped not_configured %v, want 2", got)
		}
		if got := testutil.ToFloat64(fx.s.queued); got != 0 {
			t.Fatalf("queued %v during the pause, want 0", got)
		}
		// After the pause pushes queue again.
		time.Sleep(DefaultDisabledPause + time.Second)
		if err := fx.s.Push(fx.target, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(fx.s.queued); got != 1 {
			t.Fatalf("queued %v after the pause, want 1", got)
		}
	})
}

// TestSenderTried: Tried is closed at once with nothing queued, and
// otherwise once the collections queued before it were pushed once, even
// when that push failed and waits for its retry (a held report must not
// wait for ecp's Retry-After).
func TestSenderTried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fx := newFixture(t, 4, http.StatusServiceUnavailable)
		select {
		case <-fx.s.Tried():
		default:
			t.Fatal("Tried with nothing queued is not closed")
		}
		if err := fx.s.Push(fx.target, time.Now()); err != nil {
			t.Fatal(err)
		}
		tried := fx.s.Tried()
		synctest.Wait()
		select {
		case <-tried:
			t.Fatal("Tried closed before the push was tried")
		default:
		}
		fx.run()
		defer fx.stop()
		synctest.Wait()
		select {
		case <-tried:
		default:
			t.Fatalf("Tried not closed after the push failed once (%d calls)", fx.ecp.callCount())
		}
		if fx.ecp.callCount() != 1 {
			t.Fatalf("%d calls, want the one failed push (its retry waits)", fx.ecp.callCount())
		}
	})
}
