package remotewrite

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
)

// world is a cluster's series as the exporter would give them: a few
// cluster-level series, connectors (enabled + status set) and rules
// (enabled + counters).
type world struct {
	connStatus  map[string]string
	connEnabled map[string]float64
	ruleFailed  map[string]float64
	ruleMatched map[string]float64
	connectors  []string
	rules       []string
	// results adds the connectors sub-collector's
	// emqx_scrape_collector_success, 0 while failing.
	results, failing bool
}

const clusterSeries = 3

func newWorld(connectors, rules int) *world {
	w := &world{connStatus: map[string]string{}, connEnabled: map[string]float64{}, ruleFailed: map[string]float64{}, ruleMatched: map[string]float64{}}
	for i := range connectors {
		id := fmt.Sprintf("http:c%03d", i)
		w.connectors = append(w.connectors, id)
		w.connStatus[id], w.connEnabled[id] = "connected", 1
	}
	for i := range rules {
		w.rules = append(w.rules, fmt.Sprintf("r%03d", i))
	}
	return w
}

// families gathers the world as the exporter would.
func (w *world) families(t *testing.T) []*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	gauge := func(name string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: "h"}, labels)
		reg.MustRegister(g)
		return g
	}
	counter := func(name string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: "h"}, []string{"id"})
		reg.MustRegister(c)
		return c
	}
	gauge("emqx_up").WithLabelValues().Set(1)
	if w.results {
		gauge("emqx_scrape_collector_success", "collector").WithLabelValues("connectors").Set(b2f(!w.failing))
	}
	gauge("emqx_node_running", "node").WithLabelValues("n1").Set(1)
	gauge("emqx_node_connections", "node").WithLabelValues("n1").Set(100)
	enabled, status := gauge("emqx_connector_enabled", "id"), gauge("emqx_connector_status", "id", "status")
	for _, id := range w.connectors {
		enabled.WithLabelValues(id).Set(w.connEnabled[id])
		for _, st := range []string{"connected", "connecting", "disconnected", "stopped", "inconsistent"} {
			status.WithLabelValues(id, st).Set(b2f(w.connStatus[id] == st))
		}
	}
	ruleEnabled := gauge("emqx_rule_enabled", "id")
	matched, failed, actFailed := counter("emqx_rule_matched_total"), counter("emqx_rule_failed_total"), counter("emqx_rule_actions_failed_total")
	for _, id := range w.rules {
		ruleEnabled.WithLabelValues(id).Set(1)
		matched.WithLabelValues(id).Add(w.ruleMatched[id])
		failed.WithLabelValues(id).Add(w.ruleFailed[id])
		actFailed.WithLabelValues(id)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// pushed indexes a push by "name{id,status}".
func pushed(series []prompb.TimeSeries) map[string][]prompb.Sample {
	out := map[string][]prompb.Sample{}
	for _, ts := range series {
		name, id := nameAndID(ts.Labels)
		key := name
		if id != "" {
			key += "{" + id
			if st := labelValue(ts.Labels, "status"); st != "" {
				key += "," + st
			}
			key += "}"
		}
		out[key] = ts.Samples
	}
	return out
}

func TestSelectionCap(t *testing.T) {
	const connectors, rules = 100, 100
	total := clusterSeries + connectors*6 + rules*4
	tests := []struct {
		name   string
		max    int
		fault  func(w *world)
		want   []string // keys that must be pushed
		absent []string // keys that must not be
		pushed int      // exact number of series pushed
	}{
		{name: "no cap pushes everything", max: 0, pushed: total},
		{name: "a cap above the total pushes everything", max: total, pushed: total},
		{
			name: "cluster-level series and an abnormal connector are kept; healthy ones fill the rest", max: 50,
			fault:  func(w *world) { w.connStatus["http:c057"] = "disconnected" },
			want:   []string{"emqx_up", "emqx_node_running", "emqx_connector_status{http:c057,connected}", "emqx_connector_enabled{http:c057}"},
			pushed: 3 + 6 + 10*4, // cluster, c057, then ten quiet rules fill the room (rules before connectors on a tie)
		},
		{
			name: "a disabled connector is not abnormal", max: clusterSeries,
			fault:  func(w *world) { w.connStatus["http:c057"], w.connEnabled["http:c057"] = "stopped", 0 },
			want:   []string{"emqx_up"},
			absent: []string{"emqx_connector_enabled{http:c057}"},
			pushed: clusterSeries,
		},
		{
			name: "abnormal objects are pushed even over the cap", max: 1,
			fault: func(w *world) {
				for _, id := range w.connectors[:3] {
					w.connStatus[id] = "connecting"
				}
			},
			want:   []string{"emqx_up", "emqx_connector_status{http:c000,connected}", "emqx_connector_status{http:c002,connecting}"},
			pushed: clusterSeries + 3*6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(connectors, rules)
			if tt.fault != nil {
				tt.fault(w)
			}
			sel := NewSelector(tt.max, DefaultRecoveryHold)
			got, capped := sel.choose(w.families(t), time.Unix(1000, 0))
			if len(got) != tt.pushed || capped != total-tt.pushed {
				t.Fatalf("pushed %d, capped %d; want %d and %d", len(got), capped, tt.pushed, total-tt.pushed)
			}
			p := pushed(got)
			for _, k := range tt.want {
				if _, ok := p[k]; !ok {
					t.Errorf("%s not pushed", k)
				}
			}
			for _, k := range tt.absent {
				if _, ok := p[k]; ok {
					t.Errorf("%s pushed, want it left out", k)
				}
			}
		})
	}
}

// TestSelectionRecovery: a connector that fails is pushed at once; after
// it heals its healthy sample keeps being pushed for the recovery hold, so
// the alert sees it resolve instead of the last abnormal sample lingering
// for Prometheus's lookback; after that it gives way to the cap again.
func TestSelectionRecovery(t *testing.T) {
	const interval = 15 * time.Second
	const id = "http:c042"
	key := "emqx_connector_status{" + id + ",connected}"
	w := newWorld(100, 0)
	sel := NewSelector(clusterSeries, DefaultRecoveryHold)
	at := time.Unix(1_764_000_000, 0)
	push := func() map[string][]prompb.Sample {
		at = at.Add(interval)
		got, _ := sel.choose(w.families(t), at)
		return pushed(got)
	}
	if _, ok := push()[key]; ok {
		t.Fatal("healthy connector pushed under a cap that only fits the cluster series")
	}
	w.connStatus[id] = "disconnected"
	if got := push()[key]; len(got) != 1 || got[0].Value != 0 {
		t.Fatalf("failed connector: pushed %v, want connected=0", got)
	}
	// Prometheus shows the abnormal sample of lastBad for a lookback
	// (the hold): healthy samples must be pushed until then.
	lastBad := at
	w.connStatus[id] = "connected"
	for at.Add(interval).Sub(lastBad) <= DefaultRecoveryHold {
		if got := push()[key]; len(got) != 1 || got[0].Value != 1 {
			t.Fatalf("%s after the last failure: pushed %v, want connected=1", at.Sub(lastBad), got)
		}
	}
	if got, ok := push()[key]; ok {
		t.Fatalf("%s after the last failure, past the hold: still pushed %v", at.Sub(lastBad), got)
	}
}

// TestSelectionRuleStartsFailing: a rule left out by the cap that starts
// failing is pushed with its failure counter's previous sample too, so
// the alert's increase() over its window sees the growth at the first
// failing collection; a busy rule wins over quiet ones for the free room.
func TestSelectionRuleStartsFailing(t *testing.T) {
	const interval = 15 * time.Second
	w := newWorld(0, 50)
	sel := NewSelector(clusterSeries+4, DefaultRecoveryHold)
	t0 := time.Unix(1_764_000_000, 0)
	w.ruleMatched["r010"] = 5
	if _, capped := sel.choose(w.families(t), t0); capped != 49*4 {
		t.Fatalf("capped %d, want %d", capped, 49*4)
	}
	t1 := t0.Add(interval)
	w.ruleMatched["r010"], w.ruleMatched["r020"] = 6, 100 // r020 is now the busiest
	got := pushed(first(sel.choose(w.families(t), t1)))
	if _, ok := got["emqx_rule_matched_total{r020}"]; !ok {
		t.Fatalf("busiest rule r020 not pushed: %v", got)
	}
	t2 := t1.Add(interval)
	w.ruleFailed["r030"] = 7
	got = pushed(first(sel.choose(w.families(t), t2)))
	want := []prompb.Sample{{Value: 0, Timestamp: t1.UnixMilli()}, {Value: 7, Timestamp: t2.UnixMilli()}}
	if s := got["emqx_rule_failed_total{r030}"]; fmt.Sprint(s) != fmt.Sprint(want) {
		t.Fatalf("failing rule's counter pushed as %v, want %v", s, want)
	}
	if s := got["emqx_rule_enabled{r030}"]; len(s) != 1 {
		t.Fatalf("failing rule's enabled series pushed as %v", s)
	}
	// Still pushed (recovering) while it no longer fails, now without the
	// extra sample: the previous collection was pushed.
	t3 := t2.Add(interval)
	got = pushed(first(sel.choose(w.families(t), t3)))
	if s := got["emqx_rule_failed_total{r030}"]; len(s) != 1 || s[0].Value != 7 {
		t.Fatalf("recovering rule's counter pushed as %v", s)
	}
}

func first[T any](v T, _ int) T { return v }

func nameAndID(ls []prompb.Label) (name, id string) {
	for _, l := range ls {
		switch l.Name {
		case "__name__":
			name = l.Value
		case "id":
			id = l.Value
		}
	}
	return name, id
}

func labelValue(ls []prompb.Label, name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// TestClearedAlarmResolvesAtOnce: a series the agent stops exporting (an
// alarm EMQX cleared, here a connector deleted) is pushed once more as a
// staleness marker, as a scrape would record it, so Prometheus stops
// seeing it at once. Without it the series stayed visible for Prometheus'
// five-minute lookback, and e2e's TestJourneyAlertCatalogue saw the
// EMQXAlarm alert of a cleared alarm keep firing. A series the cap leaves
// out while it is still collected gets no marker until it vanishes, and a
// collection in which a sub-collector failed marks nothing.
func TestClearedAlarmResolvesAtOnce(t *testing.T) {
	const interval = 15 * time.Second
	w := newWorld(3, 0)
	w.results = true
	// Room for the cluster series and one connector's six.
	sel := NewSelector(clusterSeries+1+6, DefaultRecoveryHold)
	at := time.Unix(1_764_000_000, 0)
	push := func() map[string][]prompb.Sample {
		at = at.Add(interval)
		got, _ := sel.choose(w.families(t), at)
		return pushed(got)
	}
	stale := func(p map[string][]prompb.Sample) []string {
		var keys []string
		for k, s := range p {
			if len(s) == 1 && value.IsStaleNaN(s[0].Value) {
				if s[0].Timestamp != at.UnixMilli() {
					t.Errorf("%s marked stale at %d, want the push's time %d", k, s[0].Timestamp, at.UnixMilli())
				}
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return keys
	}
	first := push()
	var shown string // the connector the cap let through
	for _, id := range w.connectors {
		if _, ok := first["emqx_connector_enabled{"+id+"}"]; ok {
			shown = id
		}
	}
	if shown == "" {
		t.Fatalf("no connector pushed: %v", first)
	}
	without := func(id string) {
		w.connectors = slices.DeleteFunc(w.connectors, func(c string) bool { return c == id })
	}
	// A collection in which a sub-collector failed marks nothing: it
	// cannot tell a vanished series from one it could not read.
	without(shown)
	w.failing = true
	if got := stale(push()); len(got) != 0 {
		t.Fatalf("a partial collection marked %v stale", got)
	}
	w.failing = false
	want := []string{"emqx_connector_enabled{" + shown + "}"}
	for _, st := range []string{"connected", "connecting", "disconnected", "inconsistent", "stopped"} {
		want = append(want, "emqx_connector_status{"+shown+","+st+"}")
	}
	if got := stale(push()); !slices.Equal(got, want) {
		t.Fatalf("after %s vanished, marked stale %v, want %v", shown, got, want)
	}
	if got := stale(push()); len(got) != 0 {
		t.Fatalf("marked stale again: %v", got)
	}
	// A connector the cap leaves out, then deleted: never pushed, so no
	// marker.
	var capped string
	p := push()
	for _, id := range w.connectors {
		if _, ok := p["emqx_connector_enabled{"+id+"}"]; !ok {
			capped = id
		}
	}
	without(capped)
	if got := stale(push()); len(got) != 0 {
		t.Fatalf("a connector never pushed was marked stale: %v", got)
	}
}

// TestCappedSeriesMarkedOnceGone: a series pushed, then left out by the
// cap while still collected, gets no staleness marker; once it vanishes
// it gets one, as a series pushed to the end does. Only the series
// pushed before are looked for among those left out (stale.go), so this
// is the path that looks.
func TestCappedSeriesMarkedOnceGone(t *testing.T) {
	w := newWorld(3, 0)
	sel := NewSelector(clusterSeries+6, DefaultRecoveryHold) // room for one connector
	at := time.Unix(1_764_000_000, 0)
	push := func() (map[string][]prompb.Sample, []string) {
		at = at.Add(15 * time.Second)
		got, _ := sel.choose(w.families(t), at)
		p := pushed(got)
		var stale []string
		for k, s := range p {
			if len(s) == 1 && value.IsStaleNaN(s[0].Value) {
				stale = append(stale, k)
			}
		}
		slices.Sort(stale)
		return p, stale
	}
	first, _ := push()
	const shown = "http:c000" // the first connector by id fills the room
	if _, ok := first["emqx_connector_enabled{"+shown+"}"]; !ok {
		t.Fatalf("%s not pushed: %v", shown, first)
	}
	// A connector sorting before it takes the room: shown is capped while
	// still collected.
	w.connectors = append([]string{"http:a000"}, w.connectors...)
	w.connStatus["http:a000"], w.connEnabled["http:a000"] = "connected", 1
	for range 2 {
		p, stale := push()
		if _, ok := p["emqx_connector_enabled{"+shown+"}"]; ok || len(stale) != 0 {
			t.Fatalf("with %s capped: pushed it %v, marked stale %v; want neither", shown, ok, stale)
		}
	}
	w.connectors = slices.DeleteFunc(w.connectors, func(c string) bool { return c == shown })
	want := []string{"emqx_connector_enabled{" + shown + "}"}
	for _, st := range []string{"connected", "connecting", "disconnected", "inconsistent", "stopped"} {
		want = append(want, "emqx_connector_status{"+shown+","+st+"}")
	}
	if _, stale := push(); !slices.Equal(stale, want) {
		t.Fatalf("after %s vanished, marked stale %v, want %v", shown, stale, want)
	}
	if _, stale := push(); len(stale) != 0 {
		t.Fatalf("marked stale again: %v", stale)
	}
}
