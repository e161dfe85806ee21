package remotewrite

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"

	"github.com/gorilla/mux"
	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// agentRequest is what one agent pushes per collection for a cluster with
// rules rules and connectors connectors (about the collector's series
// count: a few per rule, six per connector, a dozen for the cluster).
func agentRequest(b *testing.B, rules, connectors int) ([]byte, int) {
	var req prompb.WriteRequest
	add := func(ls ...string) {
		var labels []prompb.Label
		for i := 0; i < len(ls); i += 2 {
			labels = append(labels, prompb.Label{Name: ls[i], Value: ls[i+1]})
		}
		req.Timeseries = append(req.Timeseries, prompb.TimeSeries{Labels: labels, Samples: []prompb.Sample{{Value: 1, Timestamp: 1_764_000_000_000}}})
	}
	for i := range 12 {
		add("__name__", fmt.Sprintf("emqx_cluster_series_%d", i), "instance", "127.0.0.1:9733", "job", "agent")
	}
	for i := range rules {
		for _, n := range []string{"emqx_rule_enabled", "emqx_rule_matched_total", "emqx_rule_failed_total", "emqx_rule_actions_failed_total"} {
			add("__name__", n, "id", fmt.Sprintf("rule_%04d", i), "instance", "127.0.0.1:9733", "job", "agent")
		}
	}
	for i := range connectors {
		for _, st := range []string{"connected", "connecting", "disconnected", "stopped", "inconsistent"} {
			add("__name__", "emqx_connector_status", "id", fmt.Sprintf("http:conn_%04d", i), "instance", "127.0.0.1:9733", "job", "agent", "status", st)
		}
		add("__name__", "emqx_connector_enabled", "id", fmt.Sprintf("http:conn_%04d", i), "instance", "127.0.0.1:9733", "job", "agent")
	}
	return encodeWrite(b, &req), len(req.Timeseries)
}

// encodeWrite is req as an agent sends it: protobuf, snappy-compressed.
func encodeWrite(b *testing.B, req *prompb.WriteRequest) []byte {
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// benchGateway is a gateway with o and authn behind its HTTP routes.
func benchGateway(b *testing.B, o Options, authn *fakeAuthn) (*Gateway, *mux.Router) {
	reg := prometheus.NewRegistry()
	g, err := New(o, authn, nil, reg)
	if err != nil {
		b.Fatal(err)
	}
	r := mux.NewRouter()
	g.Register(r, httpapi.NewAdapter(slog.New(slog.DiscardHandler), reg))
	return g, r
}

// pushRequest is an agent's push of body, authenticated by bearer.
func pushRequest(body io.Reader, bearer string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, agentproto.PathWrite, body)
	SetHeaders(req.Header)
	req.Header.Set("Authorization", bearer)
	return req
}

// BenchmarkStamp measures the gateway's per-request work as it does it:
// snappy decode, stamping project and cluster into a reused buffer (in
// the agent's request), snappy encode into a reused buffer (in the
// sender, here one push per call). It reports samples/s on one goroutine
// (one core).
func BenchmarkStamp(b *testing.B) {
	for _, size := range []struct{ rules, connectors int }{{10, 10}, {100, 100}, {1000, 1000}} {
		body, samples := agentRequest(b, size.rules, size.connectors)
		b.Run(fmt.Sprintf("rules=%d/connectors=%d", size.rules, size.connectors), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			var raw, enc []byte
			for b.Loop() {
				var n int
				var err error
				if raw, n, err = appendStamped(raw[:0], body, "project-1", "cluster-1", DefaultMaxDecodedBytes); err != nil || n != samples {
					b.Fatalf("stamp: %d samples, %v", n, err)
				}
				enc = encode(enc, raw)
			}
			b.ReportMetric(float64(samples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(float64(samples), "samples/op")
		})
	}
}

// BenchmarkHandler measures the whole push path on all cores: the HTTP
// handler with authentication, body read, stamping and queueing (the queue
// is drained as fast as it fills, as by an instant backend). It reports
// samples/s in total and per core.
func BenchmarkHandler(b *testing.B) {
	body, samples := agentRequest(b, 100, 100)
	g, r := benchGateway(b, Options{URL: "http://backend.test/api/v1/write", QueueSize: 1024}, &fakeAuthn{projects: map[string]string{"Bearer a1": "p1"}})
	done := make(chan struct{})
	var drained sync.WaitGroup
	for _, q := range g.shards {
		drained.Go(func() {
			for {
				select {
				case <-q:
				case <-done:
					return
				}
			}
		})
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			rec := httptest.NewRecorder()
			r.ServeHTTP(rec, pushRequest(bytes.NewReader(body), "Bearer a1"))
			if rec.Code != http.StatusNoContent {
				b.Fatalf("push: %d %s", rec.Code, rec.Body)
			}
		}
	})
	perSecond := float64(samples) * float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(perSecond, "samples/s")
	b.ReportMetric(perSecond/float64(runtime.GOMAXPROCS(0)), "samples/s/core")
	close(done)
	drained.Wait()
}
