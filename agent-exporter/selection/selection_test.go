package selection

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// family builds a gauge or counter family with one metric per id.
func family(name string, typ dto.MetricType, values map[string]float64, ids ...string) *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: proto.String(name), Type: typ.Enum()}
	for _, id := range ids {
		m := &dto.Metric{Label: []*dto.LabelPair{{Name: proto.String("id"), Value: proto.String(id)}}}
		if typ == dto.MetricType_COUNTER {
			m.Counter = &dto.Counter{Value: proto.Float64(values[id])}
		} else {
			m.Gauge = &dto.Gauge{Value: proto.Float64(values[id])}
		}
		mf.Metric = append(mf.Metric, m)
	}
	return mf
}

func up() *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String("emqx_up"), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}}
}

// kept lists the ids of family f that c keeps.
func kept(c Choice, mfs []*dto.MetricFamily, f int) []string {
	var ids []string
	for m, metric := range mfs[f].GetMetric() {
		if c.Kept(f, m) {
			ids = append(ids, metric.GetLabel()[0].GetValue())
		}
	}
	return ids
}

func TestNoCapKeepsEverything(t *testing.T) {
	c := New(0, 0).Choose([]*dto.MetricFamily{up(), family("emqx_rule_enabled", dto.MetricType_GAUGE, nil, "a", "b")}, time.Unix(1, 0))
	if c.Keep != nil || c.Capped != 0 || !c.Kept(1, 1) {
		t.Fatalf("no cap: %+v, want everything kept", c)
	}
}

// TestAbnormalConnectorOverTheCap: a cap that fits only the cluster-level
// series still keeps the enabled connector that is not connected, and
// leaves out the healthy one.
func TestAbnormalConnectorOverTheCap(t *testing.T) {
	ids := []string{"http:ok", "http:bad"}
	mfs := []*dto.MetricFamily{
		up(),
		family("emqx_connector_enabled", dto.MetricType_GAUGE, map[string]float64{"http:ok": 1, "http:bad": 1}, ids...),
		family("emqx_connector_status", dto.MetricType_GAUGE, map[string]float64{"http:ok": 1}, ids...),
	}
	for _, m := range mfs[2].Metric {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("status"), Value: proto.String("connected")})
	}
	c := New(1, 0).Choose(mfs, time.Unix(1, 0))
	if got := kept(c, mfs, 2); len(got) != 1 || got[0] != "http:bad" {
		t.Fatalf("kept %v of the status family, want only http:bad", got)
	}
	if !c.Kept(0, 0) || c.Capped != 2 {
		t.Fatalf("emqx_up kept %v, capped %d; want kept and 2", c.Kept(0, 0), c.Capped)
	}
}

// TestRuleStartsFailingCarriesItsPreviousSample: a rule left out by the
// cap whose failed counter grows is kept, with the previous collection's
// value as an earlier sample; the next collection, already pushed, has
// none.
func TestRuleStartsFailingCarriesItsPreviousSample(t *testing.T) {
	s := New(1, time.Minute)
	t0 := time.Unix(1000, 0)
	failed := map[string]float64{"r1": 3}
	collect := func() []*dto.MetricFamily {
		return []*dto.MetricFamily{up(), family("emqx_rule_failed_total", dto.MetricType_COUNTER, failed, "r1"),
			family("emqx_rule_actions_failed_total", dto.MetricType_COUNTER, nil, "r1")}
	}
	if c := s.Choose(collect(), t0); c.Kept(1, 0) {
		t.Fatal("quiet rule kept under a cap that fits only emqx_up")
	}
	failed["r1"] = 5
	t1 := t0.Add(15 * time.Second)
	c := s.Choose(collect(), t1)
	if !c.Kept(1, 0) {
		t.Fatal("failing rule left out")
	}
	if e := c.Earlier[Ref{1, 0}]; e.Value != 3 || e.Timestamp != t0.UnixMilli() {
		t.Fatalf("earlier sample %+v, want 3 at %d", e, t0.UnixMilli())
	}
	failed["r1"] = 6
	if c := s.Choose(collect(), t1.Add(15*time.Second)); !c.Kept(1, 0) || len(c.Earlier) != 0 {
		t.Fatalf("still failing: kept %v, earlier %v; want kept without earlier samples", c.Kept(1, 0), c.Earlier)
	}
}

// TestResetForgetsObjects: after Reset a rule's counters have no history,
// so growth since before the reset is not a failure.
func TestResetForgetsObjects(t *testing.T) {
	s := New(1, time.Minute)
	failed := map[string]float64{"r1": 1}
	mfs := func() []*dto.MetricFamily {
		return []*dto.MetricFamily{up(), family("emqx_rule_failed_total", dto.MetricType_COUNTER, failed, "r1")}
	}
	s.Choose(mfs(), time.Unix(1000, 0))
	s.Reset()
	failed["r1"] = 9
	if c := s.Choose(mfs(), time.Unix(1015, 0)); c.Kept(1, 0) {
		t.Fatal("rule kept as failing across a reset")
	}
}

// TestObjectsInAnyOrder: families listing the same objects in different
// orders still group each object's series (the lookup by the previous
// family's order is only a shortcut).
func TestObjectsInAnyOrder(t *testing.T) {
	enabled := map[string]float64{"http:a": 1, "http:b": 1, "http:c": 1}
	connected := map[string]float64{"http:a": 1, "http:b": 1}
	mfs := []*dto.MetricFamily{
		up(),
		family("emqx_connector_enabled", dto.MetricType_GAUGE, enabled, "http:a", "http:b", "http:c"),
		family("emqx_connector_status", dto.MetricType_GAUGE, connected, "http:c", "http:b", "http:a"),
	}
	for _, m := range mfs[2].Metric {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("status"), Value: proto.String("connected")})
	}
	c := New(1, 0).Choose(mfs, time.Unix(1, 0))
	for f := 1; f <= 2; f++ {
		if got := kept(c, mfs, f); len(got) != 1 || got[0] != "http:c" {
			t.Errorf("family %s: kept %v, want only the disconnected http:c", mfs[f].GetName(), got)
		}
	}
}

// TestFillAsSorted: taking the busiest objects from a heap until none
// fits keeps exactly what sorting them all and taking each that fits
// kept.
func TestFillAsSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + r.IntN(300)
		var a, b []*object
		for i := range n {
			o := object{kind: r.IntN(numKinds), id: fmt.Sprintf("o%d", r.IntN(1000)+i*1000), series: 1 + r.IntN(8),
				score: float64(r.IntN(4)), matched: float64(r.IntN(3))}
			oa, ob := o, o
			a, b = append(a, &oa), append(b, &ob)
		}
		budget := r.IntN(n * 5)
		fill(a, budget)
		slices.SortFunc(b, busier)
		left := budget
		for _, o := range b {
			if o.series <= left {
				o.keep, left = true, left-o.series
			}
		}
		kept := func(objs []*object) map[string]bool {
			m := map[string]bool{}
			for _, o := range objs {
				if o.keep {
					m[fmt.Sprint(o.kind, o.id)] = true
				}
			}
			return m
		}
		if ka, kb := kept(a), kept(b); !maps.Equal(ka, kb) {
			t.Fatalf("round %d (%d objects, budget %d): heap kept %d, sort kept %d", round, n, budget, len(ka), len(kb))
		}
	}
}
