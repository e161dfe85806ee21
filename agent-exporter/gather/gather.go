// Package gather builds Prometheus metric families straight from emitted
// series, for the agent's remote-write push.
//
// A registry gathering const metrics checks, sorts and allocates one small
// object per series, label and value; with thousands of rules and
// connectors that was most of a push's cost. A Builder takes the protobuf
// structs from chunked arenas instead, and keeps the arenas from one build
// to the next: a push is built every collection, and building it in the
// memory of the previous one spares the allocations and the garbage
// collection that would follow them.
//
// The price is a lifetime: the families of one build are valid until the
// next Reset, and they are read-only: metrics share label pairs and the
// gauges of value 0 and 1. A Builder serves one consumer that is done with the families
// before it builds again (remote write encodes them and drops them).
// Families come in emission order and metrics in the order added (unsorted,
// which a push does not need).
package gather

import (
	"math"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Desc is one metric's name, help and label names as a Builder needs them.
type Desc struct {
	name, help string
	labels     []string
	// sorted lists label indexes by label name: a metric's label pairs
	// are sorted by name, as the client library sorts them.
	sorted []int
	// index numbers the Desc among all: a Builder finds its family by it
	// rather than hashing the Desc for every series.
	index int
}

// descs counts the Descs made, for their index.
var descs atomic.Int64

// NewDesc returns the description of a metric with these label names.
func NewDesc(name, help string, labels ...string) *Desc {
	sorted := make([]int, len(labels))
	for i := range sorted {
		sorted[i] = i
	}
	slices.SortFunc(sorted, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return &Desc{name: name, help: help, labels: labels, sorted: sorted, index: int(descs.Add(1) - 1)}
}

// Builder builds metric families; the zero value is ready to use. It is
// not safe for concurrent use.
type Builder struct {
	gen      uint64
	families []*dto.MetricFamily
	byDesc   []*family // by Desc.index
	metrics  arena[dto.Metric]
	pairs    arena[dto.LabelPair]
	ptrs     arena[*dto.LabelPair]
	strs     arena[string]
	floats   arena[float64]
	gauges   arena[dto.Gauge]
	counters arena[dto.Counter]
	// recent holds, per label name, the pairs of the last series: an
	// object's series repeat its id, and a status label takes a handful
	// of values, so most series share pairs with another.
	recent []recentPairs
	// zero and one are the gauges of value 0 and 1, shared by every such
	// series (the enabled and status series of every object).
	zero, one   dto.Gauge
	zeroV, oneV float64
}

// recentSize is how many pairs of one label name are kept for sharing:
// a status label's five values and one more.
const recentSize = 6

// recentPairs are the last pairs made for one label name.
type recentPairs struct {
	name  string
	pairs [recentSize]*dto.LabelPair
	next  int
}

// family is a family of the Builder and the build it was last used in.
type family struct {
	mf  *dto.MetricFamily
	typ dto.MetricType
	gen uint64
}

// Reset starts a build of about series series (a hint for the size of new
// chunks). The families of the previous build are invalid from here on.
func (b *Builder) Reset(series int) {
	b.gen++
	b.families = b.families[:0]
	b.recent = b.recent[:0] // their pairs are in the arenas reset below
	b.zeroV, b.oneV = 0, 1
	b.zero, b.one = dto.Gauge{Value: &b.zeroV}, dto.Gauge{Value: &b.oneV}
	series = max(series, 16)
	b.metrics.reset(series)
	b.floats.reset(series)
	b.gauges.reset(series)
	b.counters.reset(series / 2)
	b.pairs.reset(2 * series)
	b.ptrs.reset(2 * series)
	b.strs.reset(2 * series)
}

// Add adds one series of d with these label values (in d's label order).
func (b *Builder) Add(d *Desc, t prometheus.ValueType, v float64, labels ...string) {
	if b.gen == 0 {
		b.Reset(16)
	}
	if d.index >= len(b.byDesc) {
		b.byDesc = append(b.byDesc, make([]*family, d.index+1-len(b.byDesc))...)
	}
	f := b.byDesc[d.index]
	if f == nil {
		f = &family{mf: &dto.MetricFamily{Name: &d.name, Help: &d.help}}
		b.byDesc[d.index] = f
	}
	if f.gen != b.gen {
		f.gen = b.gen
		f.typ = dto.MetricType_GAUGE
		if t == prometheus.CounterValue {
			f.typ = dto.MetricType_COUNTER
		}
		f.mf.Type = &f.typ
		clear(f.mf.Metric) // let go of the previous build's metrics
		f.mf.Metric = f.mf.Metric[:0]
		b.families = append(b.families, f.mf)
	}
	m := b.metrics.next()
	*m = dto.Metric{}
	if len(labels) > 0 {
		m.Label = b.ptrs.take(len(labels))
		for i, li := range d.sorted {
			m.Label[i] = b.pair(&d.labels[li], labels[li])
		}
	}
	switch {
	case t == prometheus.CounterValue:
		fv := b.floats.next()
		*fv = v
		c := b.counters.next()
		*c = dto.Counter{Value: fv}
		m.Counter = c
	case math.Float64bits(v) == 0:
		m.Gauge = &b.zero
	case v == 1:
		m.Gauge = &b.one
	default:
		fv := b.floats.next()
		*fv = v
		g := b.gauges.next()
		*g = dto.Gauge{Value: fv}
		m.Gauge = g
	}
	f.mf.Metric = append(f.mf.Metric, m)
}

// pair returns a label pair of this name and value: one made for a recent
// series when there is one (pairs are read-only once built), else a new
// one. Sharing them spares most of a build's memory and the garbage
// collector's work on it: a push gathers tens of thousands of series.
func (b *Builder) pair(name *string, value string) *dto.LabelPair {
	var r *recentPairs
	for i := range b.recent {
		if b.recent[i].name == *name {
			r = &b.recent[i]
			break
		}
	}
	if r == nil {
		b.recent = append(b.recent, recentPairs{name: *name})
		r = &b.recent[len(b.recent)-1]
	}
	for i := range recentSize { // the most recent first
		p := r.pairs[(r.next+recentSize-1-i)%recentSize]
		if p == nil {
			break
		}
		if *p.Value == value {
			return p
		}
	}
	p := b.pairs.next()
	sv := b.strs.next()
	*sv = value
	*p = dto.LabelPair{Name: name, Value: sv}
	r.pairs[r.next] = p
	r.next = (r.next + 1) % recentSize
	return p
}

// Families returns the families built since Reset.
func (b *Builder) Families() []*dto.MetricFamily { return b.families }

// arena hands out elements of large chunks, kept across builds. A chunk
// is never grown, so handed-out pointers stay valid until reset.
type arena[T any] struct {
	chunks [][]T
	cur    int // chunk being filled
	used   int // elements of chunks[cur] handed out
	size   int // size of a new chunk
}

func (a *arena[T]) reset(size int) {
	a.cur, a.used, a.size = 0, 0, size
}

func (a *arena[T]) next() *T { return &a.take(1)[0] }

func (a *arena[T]) take(n int) []T {
	for a.cur < len(a.chunks) && a.used+n > len(a.chunks[a.cur]) {
		a.cur++
		a.used = 0
	}
	if a.cur == len(a.chunks) {
		a.chunks = append(a.chunks, make([]T, max(a.size, n, 64)))
		a.used = 0
	}
	s := a.chunks[a.cur][a.used : a.used+n : a.used+n]
	a.used += n
	return s
}
