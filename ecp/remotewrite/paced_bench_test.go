//go:build unix

package remotewrite

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
)

// nullBackend answers every call 204 after reading its body, as a fast
// receiver does; it does no decoding, so the CPU measured is the gateway's.
type nullBackend struct{ calls atomic.Int64 }

func (n *nullBackend) RoundTrip(r *http.Request) (*http.Response, error) {
	n.calls.Add(1)
	_, _ = io.Copy(io.Discard, r.Body)
	return &http.Response{StatusCode: http.StatusNoContent, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// BenchmarkPacedPushes measures the process CPU (user+system, from
// getrusage) per push when pushes arrive paced as agents send them, not
// back to back: 200-series pushes of distinct clusters every 1.5 ms (about
// 667 a second, 10,000 agents at 15 s), through the handler, the queue,
// the batching sender and the s2 encoding, to a backend that only reads
// the body. Unlike BenchmarkHandler it counts what the pacing costs: the
// goroutine wake-ups of the senders and their timers. Run it on an idle
// machine: go test -run '^$' -bench PacedPushes -benchtime 2000x ./ecp/remotewrite/
func BenchmarkPacedPushes(b *testing.B) {
	const every = 1500 * time.Microsecond
	body := benchPush(b, 200)
	authn := &fakeAuthn{projects: map[string]string{}}
	for i := range 1000 {
		authn.projects[fmt.Sprintf("Bearer a%d", i)] = "p1"
	}
	be := &nullBackend{}
	g, r := benchGateway(b, Options{URL: "http://backend.test/api/v1/write", BatchWait: DefaultBatchWait, HTTPClient: &http.Client{Transport: be}}, authn)
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	reqs := make([]*http.Request, 1000)
	for i := range reqs {
		reqs[i] = pushRequest(nil, fmt.Sprintf("Bearer a%d", i))
	}
	rec := httptest.NewRecorder()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b.ReportAllocs()
	start := cpu()
	tick := time.NewTicker(every)
	defer tick.Stop()
	i := 0
	for b.Loop() {
		<-tick.C
		req := reqs[i%len(reqs)].Clone(b.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("push: %d %s", rec.Code, rec.Body)
		}
		i++
	}
	for g.QueueLength() > 0 {
		<-tick.C
	}
	b.ReportMetric(float64((cpu()-start).Microseconds())/float64(b.N), "cpu-µs/push")
	b.ReportMetric(float64(b.N)/float64(be.calls.Load()), "pushes/call")
}

// benchPush is a push of n gauge series as bench/fleet's agents send it
// (emqx_bench_value{i="0"} and so on, one sample each).
func benchPush(b *testing.B, n int) []byte {
	var req prompb.WriteRequest
	for i := range n {
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{
			Labels:  []prompb.Label{{Name: "__name__", Value: "emqx_bench_value"}, {Name: "i", Value: strconv.Itoa(i)}},
			Samples: []prompb.Sample{{Value: float64(i), Timestamp: 1_764_000_000_000}},
		})
	}
	return encodeWrite(b, &req)
}
