package collector_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

// lines renders families as sorted "type name{labels} help value" lines,
// so that two gatherings compare whatever their order.
func lines(mfs []*dto.MetricFamily) []string {
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := fmt.Sprintf("%s %s{", mf.GetType(), mf.GetName())
			for _, p := range m.GetLabel() {
				l += p.GetName() + "=" + p.GetValue() + ","
			}
			l += fmt.Sprintf("} %q %v %v", mf.GetHelp(), m.GetGauge().GetValue(), m.GetCounter().GetValue())
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// TestGatherMatchesCollect: the exporter's own Gather (the push path)
// yields exactly the series a registry gathers from it (/metrics), before
// the first collection and after one with a failed connector and a
// stopped node.
func TestGatherMatchesCollect(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Nodes, opts.Rules, opts.Connectors = 3, 30, 20
	c := simtest.Start(t, opts)
	c.Step()
	col := collector.New(fixedNow)
	col.SetAPI(client(t, c.URL()))
	exp := collector.NewExporter(col)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(exp)
	compare := func(when string) {
		t.Helper()
		want, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got, err := exp.Gather()
		if err != nil {
			t.Fatal(err)
		}
		w, g := lines(want), lines(got)
		if len(w) != len(g) {
			t.Fatalf("%s: Gather gave %d series, the registry %d", when, len(g), len(w))
		}
		for i := range w {
			if w[i] != g[i] {
				t.Fatalf("%s: Gather gave\n%s\nthe registry\n%s", when, g[i], w[i])
			}
		}
	}
	compare("before the first collection")
	if err := c.FailConnector(firstConnector(t, c.URL()), "econnrefused"); err != nil {
		t.Fatal(err)
	}
	if err := c.StopNode("emqx@10.0.0.3"); err != nil {
		t.Fatal(err)
	}
	c.Step()
	col.Collect(t.Context())
	compare("after a collection")
}
