package collector_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

// BenchmarkCollect measures one collection against the simulator with many
// rules: the load the agent puts on EMQX once per interval.
func BenchmarkCollect(b *testing.B) {
	opts := sim.DefaultOptions()
	opts.Rules, opts.Connectors, opts.Nodes = 1000, 50, 3
	c := simtest.Start(b, opts)
	c.Step()
	col := collector.New(nil)
	col.SetAPI(benchClient(b, c.URL()))
	b.ResetTimer()
	for b.Loop() {
		col.Collect(b.Context())
	}
	b.ReportMetric(float64(len(col.Latest().Rules)), "rules")
}

// BenchmarkScrape measures one /metrics gather of that snapshot: what a
// scraper costs (EMQX is not called).
func BenchmarkScrape(b *testing.B) {
	opts := sim.DefaultOptions()
	opts.Rules, opts.Connectors, opts.Nodes = 1000, 50, 3
	c := simtest.Start(b, opts)
	c.Step()
	col := collector.New(nil)
	col.SetAPI(benchClient(b, c.URL()))
	col.Collect(b.Context())
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector.NewExporter(col))
	var series int
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		series = 0
		for _, mf := range mfs {
			series += len(mf.Metric)
		}
	}
	b.ReportMetric(float64(series), "series")
}
