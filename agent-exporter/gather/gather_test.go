package gather

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

var (
	up     = NewDesc("emqx_up", "Up.")
	status = NewDesc("emqx_connector_status", "Status.", "status", "id") // label names out of order
	failed = NewDesc("emqx_rule_failed_total", "Failed.", "id")
)

// lines renders families in the text exposition format, one line each.
func lines(t *testing.T, mfs []*dto.MetricFamily) []string {
	t.Helper()
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return strings.Split(strings.TrimSpace(b.String()), "\n")
}

// TestBuildsWhatARegistryGathers: the families equal a registry's of the
// same series (labels sorted by name, types, help), once sorted.
func TestBuildsWhatARegistryGathers(t *testing.T) {
	var b Builder
	b.Reset(4)
	reg := prometheus.NewPedanticRegistry()
	gv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "emqx_connector_status", Help: "Status."}, []string{"status", "id"})
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "emqx_rule_failed_total", Help: "Failed."}, []string{"id"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "emqx_up", Help: "Up."})
	reg.MustRegister(gv, cv, g)
	b.Add(up, prometheus.GaugeValue, 1)
	g.Set(1)
	for i := range 100 { // past the chunk size hint
		id := fmt.Sprintf("http:c%03d", i)
		b.Add(status, prometheus.GaugeValue, 1, "connected", id)
		gv.WithLabelValues("connected", id).Set(1)
		b.Add(failed, prometheus.CounterValue, float64(i), id)
		cv.WithLabelValues(id).Add(float64(i))
	}
	want, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got, w := lines(t, b.Families()), lines(t, want)
	slices.Sort(got)
	slices.Sort(w)
	if !slices.Equal(got, w) {
		t.Fatalf("built:\n%v\nregistry:\n%v", got[:3], w[:3])
	}
}

// TestReuseKeepsNothingOfThePreviousBuild: a second build in the same
// Builder holds exactly its own series: a family not emitted again is
// gone, labels and values are the new ones.
func TestReuseKeepsNothingOfThePreviousBuild(t *testing.T) {
	var b Builder
	b.Reset(0)
	for i := range 50 {
		b.Add(failed, prometheus.CounterValue, 7, fmt.Sprint("r", i))
		b.Add(status, prometheus.GaugeValue, 0, "stopped", fmt.Sprint("c", i))
	}
	b.Reset(0)
	b.Add(up, prometheus.GaugeValue, 1)
	b.Add(failed, prometheus.CounterValue, 3, "r9")
	got := lines(t, b.Families())
	want := []string{"# HELP emqx_up Up.", "# TYPE emqx_up gauge", "emqx_up 1",
		"# HELP emqx_rule_failed_total Failed.", "# TYPE emqx_rule_failed_total counter", `emqx_rule_failed_total{id="r9"} 3`}
	if !slices.Equal(got, want) {
		t.Fatalf("second build: %q, want %q", got, want)
	}
}

// TestSharedPairsKeepEachSeriesLabels: series share label pairs and the
// gauges of 0 and 1 with recent series, and still each carry their own
// labels and value, with more values of a label than are kept for
// sharing and ids repeated out of order.
func TestSharedPairsKeepEachSeriesLabels(t *testing.T) {
	var b Builder
	b.Reset(0)
	reg := prometheus.NewPedanticRegistry()
	gv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "emqx_connector_status", Help: "Status."}, []string{"status", "id"})
	reg.MustRegister(gv)
	statuses := []string{"connected", "connecting", "disconnected", "inconsistent", "stopped", "s6", "s7", "s8"}
	for round := range 2 {
		for i := range 10 {
			id := fmt.Sprintf("http:c%03d", (i*7+round)%10)
			for j, st := range statuses {
				v := float64((i + j + round) % 3) // 0, 1 and 2
				b.Add(status, prometheus.GaugeValue, v, st, id)
				gv.WithLabelValues(st, id).Set(v)
			}
		}
	}
	want, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// The registry keeps the last value of each series; so does this
	// build for the second round, which comes last.
	got, w := lines(t, b.Families()), lines(t, want)
	last := map[string]string{}
	for _, l := range got[2:] {
		k, v, _ := strings.Cut(l, "} ")
		last[k] = v
	}
	var dedup []string
	for k, v := range last {
		dedup = append(dedup, k+"} "+v)
	}
	slices.Sort(dedup)
	if !slices.Equal(dedup, w[2:]) {
		t.Fatalf("built:\n%v\nregistry:\n%v", dedup, w[2:])
	}
	if n := len(got) - 2; n != 2*10*len(statuses) {
		t.Fatalf("built %d series, want %d", n, 2*10*len(statuses))
	}
}
