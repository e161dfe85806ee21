// Package selection chooses which series of one collection a remote-write
// push carries when a cluster has more objects than the push may hold.
//
// The rule, in order: every cluster-level series (emqx_up, nodes, licence,
// alarms, sub-collector results); every abnormal object (a rule whose
// failure counters grew, an enabled connector, action or source that is not
// connected), so an object ecp's alert rules would fire on is always pushed,
// even over the cap; every object that was abnormal less than the recovery
// hold ago, so the alert sees it resolve; then the busiest other objects
// (rules by matched and failed growth) while they fit.
//
// A Selector remembers each object across collections to see counters grow
// and recoveries, so one Selector serves one stream of collections. It
// works on gathered metric families and only marks what to keep: with
// thousands of objects most series are left out, and flattening them only
// to drop them would be most of a push's cost. The caller (remotewrite)
// flattens and encodes the kept ones.
package selection

import (
	"cmp"
	"container/heap"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agentproto/series"
)

// Defaults of a Selector.
const (
	// DefaultMaxSeries bounds one push: a cluster with a few hundred
	// objects is pushed whole, a cluster with thousands pushes its totals,
	// its abnormal objects and the busiest rest.
	DefaultMaxSeries = 2000
	// DefaultRecoveryHold is how long an object that was abnormal is still
	// pushed after it recovered. It is Prometheus's lookback delta: a
	// series that stops being pushed stays visible at its last (abnormal)
	// value that long, so the healthy samples must keep coming until the
	// abnormal one can no longer be the latest, whatever pushes got lost.
	DefaultRecoveryHold = 5 * time.Minute
)

// Ref names one metric of the gathered families: family and metric index.
type Ref struct{ Family, Metric int32 }

// Choice is what to push of one collection.
type Choice struct {
	// Keep is nil when everything is kept; else Keep[f] is nil for a family
	// kept whole and otherwise says, per metric, whether it is kept.
	Keep [][]bool
	// Earlier holds, per metric, a sample of the previous collection to
	// push before the current one: a rule that starts failing while it was
	// left out gets its failure counters' previous value too, so that
	// increase() over the alert's window sees the growth at once.
	Earlier map[Ref]prompb.Sample
	// Capped counts the object series left out.
	Capped int
}

// Selector chooses the series of one push under a cap. It is not safe for
// concurrent use.
type Selector struct {
	max  int
	hold time.Duration
	objs [numKinds]map[string]*objState
	gen  uint64 // collections chosen from, to forget vanished objects

	// Scratch of one Choose, kept for the next: a push is chosen every
	// collection over thousands of objects.
	objBuf   []object
	keepBuf  []bool
	ownerBuf []int32
	keepFams [][]bool
	optional []*object
	order    [numKinds][]int32
}

// Object kinds, by metric name prefix.
const (
	kindRule = iota
	kindConnector
	kindAction
	kindSource
	numKinds
)

// Per-object series are named under one prefix per kind (series.Prefix*);
// an object is one id under one prefix. Everything else is cluster-level
// and always pushed. The selection reads the series ecp's alert rules read
// (agentproto/series), so an object an alert would fire on is always pushed.
var kindPrefixes = [numKinds]string{series.PrefixRule, series.PrefixConnector, series.PrefixAction, series.PrefixSource}

// kindEnabled and kindStatus are the enabled and status series of the
// kinds that have them (rules have neither status nor a connected state).
var (
	kindEnabled = [numKinds]string{kindConnector: series.ConnectorEnabled, kindAction: series.ActionEnabled, kindSource: series.SourceEnabled}
	kindStatus  = [numKinds]string{kindConnector: series.ConnectorStatus, kindAction: series.ActionStatus, kindSource: series.SourceStatus}
)

// objState is what the selector remembers of one object.
type objState struct {
	seen       uint64
	idx        int32     // index in this collection's objects, valid when seen
	prevAt     time.Time // collection the counters below are from
	failed     float64
	actFailed  float64
	matched    float64
	pushed     bool      // pushed with the previous collection
	abnormalAt time.Time // last collection it was abnormal at; zero: never
}

// object is one object's series in the collection being pushed.
type object struct {
	kind   int
	id     string
	pos    int32 // position among its kind's objects
	series int   // how many
	st     *objState
	// Rule counters; for connectors, actions and sources connected and
	// enabled.
	failed, actFailed, matched float64
	failedRef, actFailedRef    Ref
	connected, enabled         float64
	keep                       bool
	score                      float64
}

// New returns a Selector pushing at most maxSeries series (0: no cap) and
// holding recovered objects for hold (0: DefaultRecoveryHold).
func New(maxSeries int, hold time.Duration) *Selector {
	if hold <= 0 {
		hold = DefaultRecoveryHold
	}
	s := &Selector{max: maxSeries, hold: hold}
	s.Reset()
	return s
}

// Reset forgets every object: the pushes of another registration say
// nothing about what ecp holds now.
func (s *Selector) Reset() {
	for k := range s.objs {
		s.objs[k] = map[string]*objState{}
	}
}

// Choose says which series of one collection at at to push. The Choice
// is valid until the next Choose.
func (s *Selector) Choose(mfs []*dto.MetricFamily, at time.Time) Choice {
	if s.max <= 0 {
		return Choice{}
	}
	s.gen++
	// objs grows as objects appear (no pointer into it is held across an
	// append), so it holds the objects, not the six times more metrics.
	n := 0
	for _, mf := range mfs {
		if objectKind(mf.GetName()) >= 0 {
			n += len(mf.GetMetric())
		}
	}
	objs := s.objBuf[:0]
	// keep[f] is nil for a cluster-level family (all kept), else one flag
	// per metric; owner[f][m] is the metric's object (-1: none). Both are
	// views of one flat buffer each.
	keepFlat, ownerFlat := grow(s.keepBuf, n), grow(s.ownerBuf, n)
	keep := grow(s.keepFams, len(mfs))
	clear(keep)
	owner := make([][]int32, len(mfs))
	// order lists each kind's objects as they first appeared.
	var order [numKinds][]int32
	for k := range order {
		order[k] = s.order[k][:0]
	}
	cluster, off := 0, 0
	for f, mf := range mfs {
		name := mf.GetName()
		kind := objectKind(name)
		if kind < 0 {
			cluster += seriesOf(mf)
			continue
		}
		nm := len(mf.GetMetric())
		keep[f], owner[f] = keepFlat[off:off+nm:off+nm], ownerFlat[off:off+nm:off+nm]
		off += nm
		cur := 0 // position in order[kind] of the object expected next
		for m, metric := range mf.GetMetric() {
			id, status := "", ""
			for _, l := range metric.GetLabel() {
				switch l.GetName() {
				case series.LabelID:
					id = l.GetValue()
				case series.LabelStatus:
					status = l.GetValue()
				}
			}
			if id == "" {
				keep[f][m] = true
				owner[f][m] = -1
				cluster++
				continue
			}
			// Every family of a kind lists its objects in the same order
			// (the snapshot's), a status family once per status: the
			// object is most often the previous metric's or the next in
			// that order, found without hashing its id.
			ord := order[kind]
			var oi int32
			switch {
			case cur > 0 && objs[ord[cur-1]].id == id:
				oi = ord[cur-1]
			case cur < len(ord) && objs[ord[cur]].id == id:
				oi = ord[cur]
				cur++
			default:
				st := s.objs[kind][id]
				if st == nil {
					st = &objState{}
					s.objs[kind][id] = st
				}
				if st.seen != s.gen {
					st.seen, st.idx = s.gen, int32(len(objs))
					objs = append(objs, object{kind: kind, id: id, st: st, pos: int32(len(ord)), enabled: 1, connected: -1, failedRef: Ref{-1, -1}, actFailedRef: Ref{-1, -1}})
					order[kind] = append(ord, st.idx)
				}
				oi = st.idx
				cur = int(objs[oi].pos) + 1
			}
			o := &objs[oi]
			owner[f][m] = oi
			r := Ref{int32(f), int32(m)}
			o.series++
			v := value(mf.GetType(), metric)
			switch {
			case name == series.RuleFailed:
				o.failed, o.failedRef = v, r
			case name == series.RuleActionsFailed:
				o.actFailed, o.actFailedRef = v, r
			case name == series.RuleMatched:
				o.matched = v
			case kind != kindRule && name == kindEnabled[kind]:
				o.enabled = v
			case kind != kindRule && name == kindStatus[kind] && status == series.StatusConnected:
				o.connected = v
			}
		}
	}
	for _, m := range s.objs {
		for id, st := range m {
			if st.seen != s.gen {
				delete(m, id)
			}
		}
	}

	budget := s.max - cluster
	var earlier map[Ref]prompb.Sample
	optional := s.optional[:0]
	for i := range objs {
		o := &objs[i]
		st := o.st
		abnormal := false
		if o.kind == kindRule {
			if !st.prevAt.IsZero() {
				abnormal = o.failed > st.failed || o.actFailed > st.actFailed
				o.score = max(o.matched-st.matched, 0) + max(o.failed-st.failed, 0) + max(o.actFailed-st.actFailed, 0)
			}
		} else {
			// As the alert: not connected and not disabled; a missing
			// enabled series does not hide a broken status.
			abnormal = o.connected == 0 && o.enabled != 0
		}
		if abnormal {
			st.abnormalAt = at
		}
		o.keep = abnormal || (!st.abnormalAt.IsZero() && at.Sub(st.abnormalAt) <= s.hold)
		if !o.keep {
			optional = append(optional, o)
			continue
		}
		budget -= o.series
		if abnormal && o.kind == kindRule && !st.pushed && !st.prevAt.IsZero() {
			if earlier == nil {
				earlier = map[Ref]prompb.Sample{}
			}
			prev := st.prevAt.UnixMilli()
			earlier[o.failedRef] = prompb.Sample{Value: st.failed, Timestamp: prev}
			earlier[o.actFailedRef] = prompb.Sample{Value: st.actFailed, Timestamp: prev}
		}
	}
	fill(optional, budget)
	capped := 0
	for i := range objs {
		o := &objs[i]
		st := o.st
		st.pushed = o.keep
		st.prevAt, st.failed, st.actFailed, st.matched = at, o.failed, o.actFailed, o.matched
		if !o.keep {
			capped += o.series
		}
	}
	for f := range owner {
		for m, oi := range owner[f] {
			if oi >= 0 {
				keep[f][m] = objs[oi].keep
			}
		}
	}
	clear(optional)
	s.objBuf, s.keepBuf, s.ownerBuf, s.keepFams, s.optional, s.order = objs, keepFlat, ownerFlat, keep, optional[:0], order
	return Choice{Keep: keep, Earlier: earlier, Capped: capped}
}

// fill keeps the busiest of optional first (busier) while they fit in
// budget series. Of thousands of optional objects a few hundred fit: they
// are taken in order from a heap, and once the budget is below the
// smallest object none of the rest would fit, so the rest are never
// ordered (sorting them all was a tenth of a push's cost).
func fill(optional []*object, budget int) {
	if len(optional) == 0 {
		return
	}
	least := optional[0].series
	for _, o := range optional[1:] {
		least = min(least, o.series)
	}
	h := objectHeap(optional)
	heap.Init(&h)
	for h.Len() > 0 && budget >= least {
		o := heap.Pop(&h).(*object)
		if o.series <= budget {
			o.keep = true
			budget -= o.series
		}
	}
}

// busier orders objects the busiest first: rules by matched and failed
// growth, then by their counters (first collection), then by kind and id
// for a stable choice.
func busier(a, b *object) int {
	if c := cmp.Compare(b.score, a.score); c != 0 {
		return c
	}
	if c := cmp.Compare(b.matched, a.matched); c != 0 {
		return c
	}
	if a.kind != b.kind {
		return a.kind - b.kind
	}
	return strings.Compare(a.id, b.id)
}

// objectHeap is a heap of objects, the busiest on top.
type objectHeap []*object

func (h objectHeap) Len() int           { return len(h) }
func (h objectHeap) Less(i, j int) bool { return busier(h[i], h[j]) < 0 }
func (h objectHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *objectHeap) Push(x any)        { *h = append(*h, x.(*object)) }
func (h *objectHeap) Pop() any {
	old := *h
	o := old[len(old)-1]
	*h = old[:len(old)-1]
	return o
}

// grow returns buf with length n, reallocated only when too small.
func grow[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// Kept says whether metric m of family f is kept.
func (c Choice) Kept(f, m int) bool { return c.Keep == nil || c.Keep[f] == nil || c.Keep[f][m] }

// value is a counter's, gauge's or untyped metric's value.
func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	default:
		return m.GetUntyped().GetValue()
	}
}

// seriesOf counts the series a family flattens to.
func seriesOf(mf *dto.MetricFamily) int {
	n := 0
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_SUMMARY:
			n += len(m.GetSummary().GetQuantile()) + 2
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			n += len(m.GetHistogram().GetBucket()) + 3
		default:
			n++
		}
	}
	return n
}

// objectKind is the kind of object a family describes, or -1 for a
// cluster-level family.
func objectKind(name string) int {
	for k, p := range kindPrefixes {
		if strings.HasPrefix(name, p) {
			return k
		}
	}
	return -1
}
