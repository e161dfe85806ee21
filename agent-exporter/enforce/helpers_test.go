package enforce_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// counter returns a collector that yields the value of the registry's
// unlabelled counter name.
func counter(t *testing.T, g prometheus.Gatherer, name string) prometheus.Collector {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: strings.TrimSuffix(name, "_total") + "_total", Help: "copy"})
			c.Add(mf.GetMetric()[0].GetCounter().GetValue())
			return c
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
