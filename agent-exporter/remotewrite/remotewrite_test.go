package remotewrite

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
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

func series(req prompb.WriteRequest) map[string]float64 {
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
	got := series(req)
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

// fakeECP answers pushes with the statuses in script, then 204.
type fakeECP struct {
	srv    *httptest.Server
	mu     sync.Mutex
	script []int
	header string
	got    []prompb.WriteRequest
	auth   []string
	hit    chan struct{}
}

func newFakeECP(t *testing.T, script ...int) *fakeECP {
	f := &fakeECP{script: script, hit: make(chan struct{}, 100)}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { f.hit <- struct{}{} }()
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		if r.URL.Path != agentproto.PathWrite || r.Header.Get("Content-Encoding") != "snappy" ||
			r.Header.Get("Content-Type") != "application/x-protobuf" || r.Header.Get("X-Prometheus-Remote-Write-Version") != "0.1.0" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if len(f.script) > 0 {
			code := f.script[0]
			f.script = f.script[1:]
			if code != http.StatusNoContent {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(code)
				return
			}
		}
		f.got = append(f.got, decode(t, body))
		if f.header != "" {
			w.Header().Set(agentproto.HeaderRemoteWrite, f.header)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeECP) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.hit:
		case <-time.After(5 * time.Second):
			t.Fatal("no push reached the fake ecp")
		}
	}
}

// eventually waits for cond, which an asynchronous sender makes true
// right after the fake ecp answered.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

type fixture struct {
	s      *Sender
	gauge  prometheus.Gauge
	target *Target
	now    time.Time
	stop   func()
}

func newFixture(t *testing.T, f *fakeECP, queue int) *fixture {
	t.Helper()
	src := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "emqx_up", Help: "h"})
	src.MustRegister(g)
	fx := &fixture{gauge: g, now: time.Unix(1_764_000_000, 0)}
	s, err := New(Options{Gatherer: src, QueueSize: queue, BackoffBase: time.Millisecond, BackoffMax: 2 * time.Millisecond,
		Now: func() time.Time { return fx.now }}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	fx.s = s
	fx.target = &Target{ECPURL: f.srv.URL, Credential: "ecpagent_c1.secret", Client: f.srv.Client()}
	return fx
}

func (fx *fixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = fx.s.Run(ctx); close(done) }()
	fx.stop = func() { cancel(); <-done }
}

func TestSenderRetriesThenDelivers(t *testing.T) {
	f := newFakeECP(t, http.StatusServiceUnavailable, http.StatusTooManyRequests)
	fx := newFixture(t, f, 4)
	fx.run()
	defer fx.stop()
	fx.gauge.Set(1)
	if err := fx.s.Push(fx.target, fx.now); err != nil {
		t.Fatal(err)
	}
	f.wait(t, 3)
	eventually(t, func() bool { return testutil.ToFloat64(fx.s.sent) == 1 })
	if got := testutil.ToFloat64(fx.s.sent); got != 1 {
		t.Fatalf("sent %v, want 1", got)
	}
	if got := testutil.ToFloat64(fx.s.failures); got != 2 {
		t.Fatalf("failures %v, want 2", got)
	}
	if f.auth[0] != "Bearer ecpagent_c1.secret" {
		t.Fatalf("authorization %q", f.auth[0])
	}
}

func TestSenderQueueDropsOldest(t *testing.T) {
	f := newFakeECP(t)
	fx := newFixture(t, f, 2)
	// Not running: collections pile up as while ecp is unreachable.
	for i := range 3 {
		fx.gauge.Set(float64(i))
		if err := fx.s.Push(fx.target, fx.now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonQueueFull)); got != 1 {
		t.Fatalf("dropped queue_full %v, want 1", got)
	}
	fx.run()
	defer fx.stop()
	f.wait(t, 2)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) != 2 || f.got[0].Timeseries[0].Samples[0].Value != 1 || f.got[1].Timeseries[0].Samples[0].Value != 2 {
		t.Fatalf("delivered %v, want the two newest collections in order", f.got)
	}
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
			f := newFakeECP(t, tt.status)
			fx := newFixture(t, f, 4)
			if err := fx.s.Push(fx.target, fx.now); err != nil {
				t.Fatal(err)
			}
			fx.run()
			defer fx.stop()
			f.wait(t, 1)
			eventually(t, func() bool { return testutil.ToFloat64(fx.s.dropped.WithLabelValues(tt.reason)) > 0 })
			if got := testutil.ToFloat64(fx.s.dropped.WithLabelValues(tt.reason)); got != 1 {
				t.Fatalf("dropped %s %v, want 1", tt.reason, got)
			}
			if got := testutil.ToFloat64(fx.s.queued); got != 0 {
				t.Fatalf("queue length %v, want 0", got)
			}
		})
	}
}

func TestSenderPausesWhenECPHasNoBackend(t *testing.T) {
	f := newFakeECP(t)
	f.header = agentproto.RemoteWriteDisabled
	fx := newFixture(t, f, 4)
	fx.run()
	defer fx.stop()
	if err := fx.s.Push(fx.target, fx.now); err != nil {
		t.Fatal(err)
	}
	f.wait(t, 1)
	eventually(t, func() bool { return testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonNotConfigured)) == 1 })
	// Paused: the next collection is counted, not queued.
	if err := fx.s.Push(fx.target, fx.now); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(fx.s.dropped.WithLabelValues(ReasonNotConfigured)); got != 2 {
		t.Fatalf("dropped not_configured %v, want 2", got)
	}
	if got := testutil.ToFloat64(fx.s.queued); got != 0 {
		t.Fatalf("queued %v during the pause, want 0", got)
	}
	// After the pause pushes queue again (sender stopped, so it stays queued).
	fx.stop()
	fx.stop = func() {}
	fx.now = fx.now.Add(DefaultDisabledPause + time.Second)
	if err := fx.s.Push(fx.target, fx.now); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(fx.s.queued); got != 1 {
		t.Fatalf("queued %v after the pause, want 1", got)
	}
}
