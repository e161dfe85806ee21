package latency

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// within1pc says whether got is within the histogram's 1 % of want.
func within1pc(got, want time.Duration) bool {
	return float64(got) >= float64(want)*0.999 && float64(got) <= float64(want)*1.011
}

// TestQuantileWithinOnePercent checks the quantiles of one histogram
// against the sorted observations.
func TestQuantileWithinOnePercent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var all []time.Duration
	for range 100000 {
		// Log-uniform from 10 µs to 1 s, as report latencies spread.
		d := time.Duration(float64(10*time.Microsecond) * math.Pow(1e5, r.Float64()))
		h.Record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[min(len(all)-1, int(float64(len(all))*q))]
		if got := h.Quantile(q); !within1pc(got, want) {
			t.Errorf("q%.3f = %s, want %s within 1 %%", q, got, want)
		}
	}
	if h.Count() != 100000 {
		t.Errorf("count %d, want 100000", h.Count())
	}
}

// TestMergedQuantileIsTheFleets is the reason the package exists: two load
// processes, one fast and one slow, merge into the fleet's p99, which no
// average of their p99s gives.
func TestMergedQuantileIsTheFleets(t *testing.T) {
	var fast, slow Histogram
	var all []time.Duration
	for i := range 9900 {
		d := time.Millisecond + time.Duration(i)*time.Microsecond/10
		fast.Record(d)
		all = append(all, d)
	}
	for i := range 100 {
		d := 100*time.Millisecond + time.Duration(i)*time.Millisecond
		slow.Record(d)
		all = append(all, d)
	}
	// Across the process boundary, as JSON.
	b, err := json.Marshal(slow)
	if err != nil {
		t.Fatal(err)
	}
	var wire Histogram
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	var fleet Histogram
	fleet.Merge(fast)
	fleet.Merge(wire)
	slices.Sort(all)
	if got, want := fleet.Quantile(0.99), all[len(all)*99/100]; !within1pc(got, want) {
		t.Errorf("merged p99 %s, want %s (the average of the two p99s is %s)", got, want, (fast.Quantile(0.99)+slow.Quantile(0.99))/2)
	}
	if fleet.Count() != 10000 {
		t.Errorf("merged count %d, want 10000", fleet.Count())
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 {
		t.Errorf("empty histogram's p99 %s, want 0", empty.Quantile(0.99))
	}
}
