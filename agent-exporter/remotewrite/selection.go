package remotewrite

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/prompb"
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

// Metric name prefixes of per-object series; an object is one id under
// one prefix. Everything else (emqx_up, nodes, licence, scrape results) is
// cluster-level and always pushed.
const (
	prefixRule      = "emqx_rule_"
	prefixConnector = "emqx_connector_"
	prefixAction    = "emqx_action_"
	prefixSource    = "emqx_source_"
)

// Series the selection reads to tell an abnormal object; they are the
// series ecp's alert rules read (rules/series.go), so an object an alert
// would fire on is always pushed.
const (
	seriesRuleFailed        = "emqx_rule_failed_total"
	seriesRuleActionsFailed = "emqx_rule_actions_failed_total"
	seriesRuleMatched       = "emqx_rule_matched_total"
	suffixStatus            = "status"
	suffixEnabled           = "enabled"
	statusConnected         = "connected"
)

// selector chooses the series of one push under a cap: every cluster-level
// series, every abnormal object, every object that recovered less than
// hold ago, then the busiest other objects while they fit. It remembers
// each object across collections to see counters grow and recoveries.
type selector struct {
	max  int
	hold time.Duration
	objs map[string]*objState
	gen  uint64 // collections chosen from, to forget vanished objects
}

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

// object is one object's series in the collection being pushed.
type object struct {
	key    string
	rule   bool
	series []int
	st     *objState
	// Rule counters; for resources connected and enabled.
	failed, actFailed, matched float64
	failedIdx, actFailedIdx    int
	connected, enabled         float64
	mandatory                  bool
	score                      float64
}

func newSelector(maxSeries int, hold time.Duration) *selector {
	return &selector{max: maxSeries, hold: hold, objs: map[string]*objState{}}
}

// choose returns the series to push out of all (one collection at at) and
// how many it left out. It may add the previous collection's sample to the
// failure counters of a rule that starts failing while it was left out,
// so that increase() over the alert's window sees the growth at once. all
// is modified and reused in place.
func (s *selector) choose(all []prompb.TimeSeries, at time.Time) ([]prompb.TimeSeries, int) {
	if s.max <= 0 {
		return all, 0
	}
	s.gen++
	gen := s.gen
	byKey := map[string]*object{}
	var objs []*object
	cluster := 0
	for i := range all {
		name, id := nameAndID(all[i].Labels)
		prefix, rule := objectPrefix(name)
		if prefix == "" || id == "" {
			cluster++
			continue
		}
		key := prefix + id
		o := byKey[key]
		if o == nil {
			st := s.objs[key]
			if st == nil {
				st = &objState{}
				s.objs[key] = st
			}
			st.seen = gen
			o = &object{key: key, rule: rule, st: st, enabled: 1, connected: -1, failedIdx: -1, actFailedIdx: -1}
			byKey[key] = o
			objs = append(objs, o)
		}
		o.series = append(o.series, i)
		v := all[i].Samples[0].Value
		switch {
		case name == seriesRuleFailed:
			o.failed, o.failedIdx = v, i
		case name == seriesRuleActionsFailed:
			o.actFailed, o.actFailedIdx = v, i
		case name == seriesRuleMatched:
			o.matched = v
		case !rule && strings.HasSuffix(name, suffixEnabled):
			o.enabled = v
		case !rule && strings.HasSuffix(name, suffixStatus) && labelValue(all[i].Labels, "status") == statusConnected:
			o.connected = v
		}
	}
	for key, st := range s.objs {
		if st.seen != gen {
			delete(s.objs, key)
		}
	}

	budget := s.max - cluster
	var optional []*object
	for _, o := range objs {
		st := o.st
		abnormal := false
		if o.rule {
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
		o.mandatory = abnormal || (!st.abnormalAt.IsZero() && at.Sub(st.abnormalAt) <= s.hold)
		if o.mandatory {
			budget -= len(o.series)
			if abnormal && o.rule && !st.pushed && !st.prevAt.IsZero() {
				prependSample(all, o.failedIdx, st.failed, st.prevAt)
				prependSample(all, o.actFailedIdx, st.actFailed, st.prevAt)
			}
		} else {
			optional = append(optional, o)
		}
	}
	// The busiest first: rules by matched and failed growth, then by their
	// counters (first collection), then by id for a stable choice.
	slices.SortFunc(optional, func(a, b *object) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		if c := cmp.Compare(b.matched, a.matched); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	for _, o := range optional {
		if len(o.series) <= budget {
			o.mandatory = true
			budget -= len(o.series)
		}
	}

	keep := make([]bool, len(all))
	for _, o := range objs {
		st := o.st
		st.pushed = o.mandatory
		st.prevAt, st.failed, st.actFailed, st.matched = at, o.failed, o.actFailed, o.matched
		if o.mandatory {
			for _, i := range o.series {
				keep[i] = true
			}
		}
	}
	out := all[:0]
	capped := 0
	for i := range all {
		name, id := nameAndID(all[i].Labels)
		if prefix, _ := objectPrefix(name); prefix != "" && id != "" && !keep[i] {
			capped++
			continue
		}
		out = append(out, all[i])
	}
	return out, capped
}

// reset forgets every object: the pushes of another registration say
// nothing about what ecp holds now.
func (s *selector) reset() { clear(s.objs) }

func prependSample(all []prompb.TimeSeries, i int, v float64, at time.Time) {
	if i < 0 {
		return
	}
	all[i].Samples = append([]prompb.Sample{{Value: v, Timestamp: at.UnixMilli()}}, all[i].Samples...)
}

func objectPrefix(name string) (prefix string, rule bool) {
	for _, p := range []string{prefixRule, prefixConnector, prefixAction, prefixSource} {
		if strings.HasPrefix(name, p) {
			return p, p == prefixRule
		}
	}
	return "", false
}

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
