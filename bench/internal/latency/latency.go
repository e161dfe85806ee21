// Package latency is a mergeable latency histogram for the fleet
// benchmarks: each load process records its own and the parent adds them
// bucket by bucket, so a quantile of the merged histogram is the quantile
// of every observation (an average of the processes' p99s is not). Buckets
// grow by 1 %, so a quantile is exact to within 1 % whatever the range,
// and a histogram is a few hundred counters however many it records.
package latency

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// growth is the ratio of one bucket's upper bound to the one below it.
const growth = 1.01

var logGrowth = math.Log(growth)

// Histogram counts durations in buckets growing by 1 %: bucket i holds
// durations in (growth^(i-1), growth^i] nanoseconds. The zero value is
// empty and ready; it is not safe for concurrent use.
type Histogram struct {
	counts map[int]uint64
	total  uint64
}

// bucket is the index of d's bucket (durations under 1 ns count as 1 ns).
func bucket(d time.Duration) int {
	return int(math.Ceil(math.Log(float64(max(d, 1))) / logGrowth))
}

// upper is bucket i's upper bound.
func upper(i int) time.Duration {
	return time.Duration(math.Round(math.Exp(float64(i) * logGrowth)))
}

// Record counts d.
func (h *Histogram) Record(d time.Duration) {
	if h.counts == nil {
		h.counts = map[int]uint64{}
	}
	h.counts[bucket(d)]++
	h.total++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o Histogram) {
	if h.counts == nil {
		h.counts = map[int]uint64{}
	}
	for i, n := range o.counts {
		h.counts[i] += n
	}
	h.total += o.total
}

// Count is how many durations h holds.
func (h Histogram) Count() uint64 { return h.total }

// Quantile is the upper bound of the bucket holding the q-quantile (q in
// 0..1) of what h counted, within 1 % of the true value; 0 when h is
// empty.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	// The rank of the q-quantile, counting from 1, as a sorted slice's
	// element len*q (the convention bench/fleet used before histograms).
	rank := min(uint64(float64(h.total)*q), h.total-1) + 1
	keys := make([]int, 0, len(h.counts))
	for i := range h.counts {
		keys = append(keys, i)
	}
	slices.Sort(keys)
	var seen uint64
	for _, i := range keys {
		seen += h.counts[i]
		if seen >= rank {
			return upper(i)
		}
	}
	return upper(keys[len(keys)-1])
}

// MarshalJSON writes h as an object of bucket index to count, so it can
// cross from a load process to the parent.
func (h Histogram) MarshalJSON() ([]byte, error) {
	m := make(map[string]uint64, len(h.counts))
	for i, n := range h.counts {
		m[strconv.Itoa(i)] = n
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("decode latency histogram: %w", err)
	}
	*h = Histogram{counts: make(map[int]uint64, len(m))}
	for k, n := range m {
		i, err := strconv.Atoi(k)
		if err != nil {
			return fmt.Errorf("decode latency histogram: bucket %q: %w", k, err)
		}
		h.counts[i] += n
		h.total += n
	}
	return nil
}
