package remotewrite

import (
	"fmt"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
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
	raw, err := req.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return snappy.Encode(nil, raw), len(req.Timeseries)
}

// BenchmarkStamp measures the gateway's per-request work: snappy decode,
// protobuf decode, stamping project and cluster, protobuf and snappy
// encode. It reports samples/s on one goroutine (one core).
func BenchmarkStamp(b *testing.B) {
	for _, size := range []struct{ rules, connectors int }{{10, 10}, {100, 100}, {1000, 1000}} {
		body, samples := agentRequest(b, size.rules, size.connectors)
		b.Run(fmt.Sprintf("rules=%d/connectors=%d", size.rules, size.connectors), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, n, err := Stamp(body, "project-1", "cluster-1", DefaultMaxDecodedBytes); err != nil || n != samples {
					b.Fatalf("stamp: %d samples, %v", n, err)
				}
			}
			b.ReportMetric(float64(samples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(float64(samples), "samples/op")
		})
	}
}
