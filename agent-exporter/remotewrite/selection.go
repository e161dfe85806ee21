package remotewrite

import (
	"cmp"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agentproto/series"
)

// Defaults of the selection of pushed series.
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

// Selector chooses the series of one push under a cap: every cluster-level
// series, every abnormal object, every object that recovered less than
// hold ago, then the busiest other objects while they fit. It remembers
// each object across collections to see counters grow and recoveries, so
// one Selector serves one stream of collections; it is not safe for
// concurrent use.
//
// It works on the gathered metric families and flattens only the series
// it keeps: with thousands of objects most series are left out, and
// building them only to drop them would be most of a push's cost.
type Selector struct {
	max  int
	hold time.Duration
	objs [numKinds]map[string]*objState
	gen  uint64 // collections chosen from, to forget vanished objects
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
// an object is one id under one prefix. Everything else (emqx_up, nodes,
// licence, alarms, scrape results) is cluster-level and always pushed. The
// selection reads the series ecp's alert rules read (agentproto/series),
// so an object an alert would fire on is always pushed.
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
	prevAt     time.Time // collection the counters below are from
	failed     float64
	actFailed  float64
	matched    float64
	pushed     bool      // pushed with the previous collection
	abnormalAt time.Time // last collection it was abnormal at; zero: never
}

// ref is one metric of the gathered families: family and metric index.
type ref struct{ f, m int32 }

// object is one object's series in the collection being pushed.
type object struct {
	kind   int
	id     string
	series int // how many
	st     *objState
	// Rule counters; for connectors, actions and sources connected and
	// enabled.
	failed, actFailed, matched float64
	failedRef, actFailedRef    ref
	connected, enabled         float64
	keep                       bool
	score                      float64
}

// NewSelector returns a Selector pushing at most maxSeries series (0: no
// cap) and holding recovered objects for hold (0: DefaultRecoveryHold).
func NewSelector(maxSeries int, hold time.Duration) *Selector {
	if hold <= 0 {
		hold = DefaultRecoveryHold
	}
	s := &Selector{max: maxSeries, hold: hold}
	s.reset()
	return s
}

// Push is one collection's request, ready to send.
type Push struct {
	// Body is the snappy-compressed write request.
	Body []byte
	// Series and Samples are in the request (a failing rule's counter may
	// carry two samples); Capped series were left out by the cap.
	Series, Samples, Capped int
}

// Encode turns one collection's metric families into the request to push
// (as the package's Encode does), keeping the series the cap allows.
func (s *Selector) Encode(mfs []*dto.MetricFamily, at time.Time) (Push, error) {
	series, capped := s.choose(mfs, at)
	body, samples, err := marshal(series)
	if err != nil {
		return Push{}, err
	}
	return Push{Body: body, Series: len(series), Samples: samples, Capped: capped}, nil
}

// choose returns the series to push out of one collection at at and how
// many it left out. It may add the previous collection's sample to the
// failure counters of a rule that starts failing while it was left out,
// so that increase() over the alert's window sees the growth at once.
func (s *Selector) choose(mfs []*dto.MetricFamily, at time.Time) ([]prompb.TimeSeries, int) {
	if s.max <= 0 {
		return flatten(mfs, at), 0
	}
	s.gen++
	var byID [numKinds]map[string]int32
	// objs is allocated once: objects are at most the object metrics.
	n := 0
	for _, mf := range mfs {
		if objectKind(mf.GetName()) >= 0 {
			n += len(mf.GetMetric())
		}
	}
	objs := make([]object, 0, n)
	// keep[f] is nil for a cluster-level family (all kept), else one flag
	// per metric; owner[f][m] is the metric's object (-1: none).
	keep := make([][]bool, len(mfs))
	owner := make([][]int32, len(mfs))
	cluster, total := 0, 0
	for f, mf := range mfs {
		name := mf.GetName()
		kind := objectKind(name)
		if kind < 0 {
			n := seriesOf(mf)
			cluster += n
			total += n
			continue
		}
		total += len(mf.GetMetric())
		keep[f] = make([]bool, len(mf.GetMetric()))
		owner[f] = make([]int32, len(mf.GetMetric()))
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
			if byID[kind] == nil {
				byID[kind] = make(map[string]int32, len(mf.GetMetric()))
			}
			oi, ok := byID[kind][id]
			if !ok {
				st := s.objs[kind][id]
				if st == nil {
					st = &objState{}
					s.objs[kind][id] = st
				}
				st.seen = s.gen
				oi = int32(len(objs))
				objs = append(objs, object{kind: kind, id: id, st: st, enabled: 1, connected: -1, failedRef: ref{-1, -1}, actFailedRef: ref{-1, -1}})
				byID[kind][id] = oi
			}
			o := &objs[oi]
			owner[f][m] = oi
			r := ref{int32(f), int32(m)}
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
	var extra map[ref]prompb.Sample
	var optional []*object
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
			if extra == nil {
				extra = map[ref]prompb.Sample{}
			}
			prev := st.prevAt.UnixMilli()
			extra[o.failedRef] = prompb.Sample{Value: st.failed, Timestamp: prev}
			extra[o.actFailedRef] = prompb.Sample{Value: st.actFailed, Timestamp: prev}
		}
	}
	// The busiest first: rules by matched and failed growth, then by their
	// counters (first collection), then by kind and id for a stable choice.
	slices.SortFunc(optional, func(a, b *object) int {
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
	})
	for _, o := range optional {
		if o.series <= budget {
			o.keep = true
			budget -= o.series
		}
	}
	for i := range objs {
		o := &objs[i]
		st := o.st
		st.pushed = o.keep
		st.prevAt, st.failed, st.actFailed, st.matched = at, o.failed, o.actFailed, o.matched
	}
	for f := range owner {
		for m, oi := range owner[f] {
			if oi >= 0 {
				keep[f][m] = objs[oi].keep
			}
		}
	}
	out := flattenKept(mfs, at, keep, extra)
	return out, total - len(out)
}

// reset forgets every object: the pushes of another registration say
// nothing about what ecp holds now.
func (s *Selector) reset() {
	for k := range s.objs {
		s.objs[k] = map[string]*objState{}
	}
}

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
