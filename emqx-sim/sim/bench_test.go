package sim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// scaleOptions is the size issue 3 asks the simulator to carry easily.
func scaleOptions() Options {
	return Options{Nodes: 10, Rules: 5000, Connectors: 5000, Seed: 7,
		APIKeys: []APIKey{{Key: "bench", Secret: "bench-secret", Role: RoleViewer}}}
}

// TestScale builds the 10-node, 5,000-rule, 5,000-connector cluster and
// walks every list endpoint once (no timing asserted; see the benchmarks).
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test builds 5,000 rules and connectors")
	}
	f := start(t, scaleOptions())
	f.clock.Advance(time.Second)
	f.sim.Step()
	auth := basic("bench", "bench-secret")
	for _, c := range []struct {
		path string
		n    int
	}{
		{"/api/v5/connectors", 5000}, {"/api/v5/actions", 5000}, {"/api/v5/sources", 1666},
		{"/api/v5/actions_summary", 5000}, {"/api/v5/nodes", 10},
	} {
		r := f.req(t, "GET", c.path, auth, "")
		if r.status != 200 || len(r.json(t).([]any)) != c.n {
			t.Fatalf("%s: %d, want %d items", c.path, r.status, c.n)
		}
	}
	seen := 0
	for p := 1; ; p++ {
		m := f.req(t, "GET", "/api/v5/rules?limit=1000&page="+itoa(p), auth, "").object(t)
		seen += len(m["data"].([]any))
		if m["meta"].(map[string]any)["hasnext"] == false {
			break
		}
	}
	if seen != 5000 {
		t.Fatalf("paged %d rules, want 5000", seen)
	}
	if r := f.req(t, "GET", "/api/v5/prometheus/data_integration?mode=all_nodes_aggregated", "", ""); r.status != 200 {
		t.Fatalf("data_integration at scale: %d", r.status)
	}
}

// BenchmarkListRules measures GET /api/v5/rules?limit=1000 over loopback
// HTTP at 5,000 rules and reports requests/s and the p99 latency.
func BenchmarkListRules(b *testing.B) {
	s, err := New(scaleOptions())
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	defer func() { _ = s.Stop(b.Context()) }()
	client := srv.Client()
	get := func(page int) {
		req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet,
			srv.URL+"/api/v5/rules?limit=1000&page="+itoa(page), nil)
		req.SetBasicAuth("bench", "bench-secret")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	get(1) // warm the connection
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		get(i%5 + 1)
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	p99 := lat[min(len(lat)-1, len(lat)*99/100)]
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
}

// BenchmarkStep measures one model tick at scale (10 nodes x 5,000 rules).
func BenchmarkStep(b *testing.B) {
	c := newClock()
	o := scaleOptions()
	o.Now = c.Now
	s, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Stop(b.Context()) }()
	for b.Loop() {
		c.Advance(time.Second)
		s.Step()
	}
}
