package remotewrite

import (
	"hash/maphash"
	"math"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agentproto/series"
)

// staleness marks the series that vanished from a collection, as a scrape
// does: Prometheus writes a staleness marker for every series a target
// stops exposing, so that a query stops seeing it at once. Samples that
// arrive by remote write get no such marker from the receiver, so without
// one a series the agent stopped sending (an alarm EMQX cleared, an
// object deleted) would stay visible for Prometheus' five-minute lookback,
// and the alert reading it would keep firing that long. The agent sends
// the marker itself: one sample of value.StaleNaN for each series it
// pushed that the latest collection no longer has.
//
// A series left out by the series cap while still collected is not
// vanished: it is remembered, and marked when it does vanish. Nor is a
// series missing from a collection in which a sub-collector failed
// (series.CollectorSuccess 0): that collection cannot tell a cleared alarm
// from one it could not read, and marking would resolve every alert of the
// failed call at once and fire it again at the next collection. Such a
// collection marks nothing; the series then age out over the lookback, as
// before.
type staleness struct {
	// last holds the labels of every series pushed and not marked since,
	// by the hash of its name and labels (seriesHash). It is kept from one
	// collection to the next and stamped with the collection (gen) rather
	// than rebuilt: a collection holds tens of thousands of series, and
	// building two maps of them every push was a tenth of a tick's CPU.
	last map[uint64]*pushedSeries
	gen  uint64
	hash maphash.Hash
}

type pushedSeries struct {
	labels []prompb.Label
	// own is set when labels were copied out of the push they came in,
	// which can then be freed.
	own bool
	// seen and pushed are the last collection (gen) that had the series
	// and that pushed it.
	seen, pushed uint64
	// f and m are where the series was last seen (family and metric
	// index): a collection lists the same objects in the same order as
	// the one before, so it is most often there again.
	f, m int
}

// mark appends to out (the series pushed from mfs, flattenKept with kept)
// a staleness marker at ts for each series pushed before that mfs lacks,
// and remembers what is pushed now.
//
// It hashes the series pushed, then looks for the others (see) only while
// some series pushed before was not pushed now: under the series cap most
// of a collection is left out, and whether a series is still there matters
// only for one remembered. With the same objects pushed as before, the
// series left out are not hashed at all, and a remembered one left out is
// most often found where it was last seen.
func (st *staleness) mark(mfs []*dto.MetricFamily, kept func(f, m int) bool, out []prompb.TimeSeries, ts int64) []prompb.TimeSeries {
	if st.last == nil {
		st.last = map[uint64]*pushedSeries{}
	}
	st.gen++
	gen := st.gen
	partial := false
	i, pushed := 0, 0
	for f, mf := range mfs {
		name := mf.GetName()
		simple := mf.GetType() == dto.MetricType_COUNTER || mf.GetType() == dto.MetricType_GAUGE || mf.GetType() == dto.MetricType_UNTYPED
		for m, metric := range mf.GetMetric() {
			if name == series.CollectorSuccess && metric.GetGauge().GetValue() == 0 {
				partial = true
			}
			if !kept(f, m) {
				continue
			}
			if !simple {
				// Summaries and histograms push several series a
				// metric; the agent exports none, so they are not
				// tracked.
				i += flatCount(mf.GetType(), metric)
				continue
			}
			h := st.seriesHash(name, metric)
			p := st.last[h]
			if p == nil {
				p = &pushedSeries{}
				st.last[h] = p
			}
			if p.pushed != gen {
				pushed++
			}
			p.labels, p.own, p.seen, p.pushed, p.f, p.m = out[i].Labels, false, gen, gen, f, m
			i++
		}
	}
	// The series remembered and not pushed now: still collected (capped)
	// or gone. A partial collection marks nothing, so it need not know.
	if missing := len(st.last) - pushed; missing > 0 && !partial {
		st.see(mfs, kept, missing)
	}
	for h, p := range st.last {
		if p.pushed == gen {
			continue
		}
		if p.seen == gen || partial {
			// Capped while still collected, or not known to be gone.
			if !p.own {
				p.labels, p.own = append([]prompb.Label(nil), p.labels...), true
			}
			continue
		}
		out = append(out, prompb.TimeSeries{Labels: p.labels, Samples: []prompb.Sample{{Value: math.Float64frombits(value.StaleNaN), Timestamp: ts}}})
		delete(st.last, h)
	}
	return out
}

// see marks seen the remembered series that mfs has but does not push
// (kept): first each where it was last seen, then, for those not found
// there, by hashing the series left out until they are all found.
func (st *staleness) see(mfs []*dto.MetricFamily, kept func(f, m int) bool, missing int) {
	gen := st.gen
	for h, p := range st.last {
		if p.seen == gen || p.f >= len(mfs) || p.m >= len(mfs[p.f].GetMetric()) {
			continue
		}
		if mf := mfs[p.f]; st.seriesHash(mf.GetName(), mf.GetMetric()[p.m]) == h {
			p.seen = gen
			missing--
		}
	}
	if missing == 0 {
		return
	}
	for f, mf := range mfs {
		name := mf.GetName()
		simple := mf.GetType() == dto.MetricType_COUNTER || mf.GetType() == dto.MetricType_GAUGE || mf.GetType() == dto.MetricType_UNTYPED
		for m, metric := range mf.GetMetric() {
			if simple && kept(f, m) {
				continue // seen by mark
			}
			p := st.last[st.seriesHash(name, metric)]
			if p == nil || p.seen == gen {
				continue
			}
			p.seen, p.f, p.m = gen, f, m
			if missing--; missing == 0 {
				return
			}
		}
	}
}

// flatCount is how many series flattenKept makes of one metric.
func flatCount(t dto.MetricType, m *dto.Metric) int {
	switch t {
	case dto.MetricType_SUMMARY:
		return len(m.GetSummary().GetQuantile()) + 2
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return len(m.GetHistogram().GetBucket()) + 3
	}
	return 1
}

// seriesHash identifies a series by its name and labels, in the order the
// agent emits them (the same for one series in every collection), within
// this process (maphash's seed is the staleness's own).
func (st *staleness) seriesHash(name string, m *dto.Metric) uint64 {
	h := &st.hash
	h.Reset()
	_, _ = h.WriteString(name)
	for _, l := range m.GetLabel() {
		_ = h.WriteByte(0xff)
		_, _ = h.WriteString(l.GetName())
		_ = h.WriteByte(0xfe)
		_, _ = h.WriteString(l.GetValue())
	}
	return h.Sum64()
}
