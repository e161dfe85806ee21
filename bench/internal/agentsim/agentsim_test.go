package agentsim

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestScrapeRefusedIsAnError: a server at its connection limit answers 503
// with a JSON body; Scrape used to read that as metrics of which none
// matched, so the benchmark took every counter for zero.
func TestScrapeRefusedIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"ecp holds its most connections"}}` + "\n"))
	}))
	defer srv.Close()
	n := 0
	err := Scrape(t.Context(), srv.Client(), srv.URL, func(string, float64) { n++ })
	if err == nil {
		t.Fatalf("scrape of a 503 succeeded with %d samples, want an error", n)
	}
}

// TestScrapeReadsSamples reads a metrics page's samples, comments left out.
func TestScrapeReadsSamples(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# HELP x_total x\n# TYPE x_total counter\nx_total{a=\"b\"} 3\ny 1.5\n"))
	}))
	defer srv.Close()
	got := map[string]float64{}
	if err := Scrape(t.Context(), srv.Client(), srv.URL, func(l string, v float64) { got[l] = v }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[`x_total{a="b"} 3`] != 3 || got["y 1.5"] != 1.5 {
		t.Errorf("samples %v, want x_total 3 and y 1.5", got)
	}
}
