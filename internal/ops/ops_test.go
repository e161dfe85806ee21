package ops_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/internal/ops"
)

func TestEndpoints(t *testing.T) {
	notReady := "starting."
	reloads := 0
	// Protect refuses what lacks the header, standing in for basic auth.
	protect := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Auth") != "ok" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	serve := func(pprof bool) *mux.Router {
		r := mux.NewRouter()
		ops.Endpoints{
			Name: "bin", Gatherer: prometheus.NewRegistry(), Protect: protect, Pprof: pprof,
			NotReady: func() string { return notReady },
			Reload:   http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reloads++ }),
		}.Register(r)
		return r
	}
	do := func(r http.Handler, method, path string, auth bool) (int, string) {
		req := httptest.NewRequest(method, path, nil)
		if auth {
			req.Header.Set("X-Auth", "ok")
		}
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	r := serve(false)
	tests := []struct {
		name, method, path string
		auth               bool
		status             int
		body               string
	}{
		{"healthy", "GET", "/-/healthy", false, 200, "bin is healthy.\n"},
		{"not ready says why", "GET", "/-/ready", false, 503, "bin is not ready: starting.\n"},
		{"metrics need the web configuration's auth", "GET", "/metrics", false, 401, "unauthorized\n"},
		{"metrics", "GET", "/metrics", true, 200, ""},
		{"reload needs auth", "POST", "/-/reload", false, 401, "unauthorized\n"},
		{"reload is POST only", "GET", "/-/reload", true, 405, ""},
		{"no profiles unless asked for", "GET", "/debug/pprof/", true, 404, "404 page not found\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := do(r, tc.method, tc.path, tc.auth)
			if status != tc.status || body != tc.body {
				t.Fatalf("%s %s = %d %q, want %d %q", tc.method, tc.path, status, body, tc.status, tc.body)
			}
		})
	}
	notReady = ""
	if status, body := do(r, "GET", "/-/ready", false); status != 200 || body != "bin is ready.\n" {
		t.Fatalf("ready = %d %q", status, body)
	}
	if status, _ := do(r, "POST", "/-/reload", true); status != 200 || reloads != 1 {
		t.Fatalf("reload = %d after %d reloads, want 200 after 1", status, reloads)
	}
	withPprof := serve(true)
	if status, _ := do(withPprof, "GET", "/debug/pprof/goroutine?debug=1", false); status != 401 {
		t.Fatalf("profiles without auth = %d, want 401", status)
	}
	if status, body := do(withPprof, "GET", "/debug/pprof/goroutine?debug=1", true); status != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("goroutine profile = %d %.80q", status, body)
	}
}
