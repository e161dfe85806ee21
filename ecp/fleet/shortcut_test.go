package fleet

import (
	"bytes"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

// TestShortcutAnswersAsRouter: a request served through Shortcut gets the
// answer the router alone gives it, status, headers and body, reports and
// everything else alike, and the latency histogram counts a report under
// its route template either way.
func TestShortcutAnswersAsRouter(t *testing.T) {
	f, a, _, body := steadyReporter(t)
	for _, c := range []struct {
		name, method, target, cred string
		body                       []byte
		want                       int
	}{
		{"report", http.MethodPost, agentproto.PathReport, a.cred, body, http.StatusOK},
		{"report held by a change", http.MethodPost, agentproto.PathReport + "?" + holdQuery(0, "15s"), a.cred, body, http.StatusOK},
		{"report without a credential", http.MethodPost, agentproto.PathReport, "", body, http.StatusUnauthorized},
		{"report with a wrong credential", http.MethodPost, agentproto.PathReport, a.cred + "x", body, http.StatusUnauthorized},
		{"report with a bad timeout", http.MethodPost, agentproto.PathReport + "?timeout=x", a.cred, body, http.StatusBadRequest},
		{"report that is not JSON", http.MethodPost, agentproto.PathReport, a.cred, []byte("{"), http.StatusBadRequest},
		{"report too large", http.MethodPost, agentproto.PathReport, a.cred, bytes.Repeat([]byte(" "), MaxAgentBody+1), http.StatusRequestEntityTooLarge},
		{"GET on the report path", http.MethodGet, agentproto.PathReport, a.cred, nil, http.StatusMethodNotAllowed},
		{"report path with a trailing slash", http.MethodPost, agentproto.PathReport + "/", a.cred, body, http.StatusNotFound},
		{"report path to clean", http.MethodPost, "/api/v1/agent/../agent/report", a.cred, body, http.StatusMovedPermanently},
		{"desired state", http.MethodGet, agentproto.PathDesired, a.cred, nil, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			serve := func(h http.Handler) *httptest.ResponseRecorder {
				req := httptest.NewRequestWithContext(t.Context(), c.method, c.target, bytes.NewReader(c.body))
				if c.cred != "" {
					req.Header.Set("Authorization", "Bearer "+c.cred)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				return w
			}
			viaRouter, viaShortcut := serve(f.router), serve(f.handler)
			for _, w := range []*httptest.ResponseRecorder{viaRouter, viaShortcut} {
				w.Header().Del(agentproto.HeaderServerTiming) // a duration
			}
			if viaRouter.Code != c.want || viaShortcut.Code != viaRouter.Code || viaShortcut.Body.String() != viaRouter.Body.String() ||
				!maps.EqualFunc(viaShortcut.Header(), viaRouter.Header(), slices.Equal) {
				t.Fatalf("through Shortcut %d %v %s\nthrough the router %d %v %s\nwant %d",
					viaShortcut.Code, viaShortcut.Header(), viaShortcut.Body, viaRouter.Code, viaRouter.Header(), viaRouter.Body, c.want)
			}
		})
	}
	// Each report case above ran twice: once through each.
	for code, want := range map[string]uint64{"200": 2*2 + 1, "401": 2 * 2, "400": 2 * 2, "413": 2} {
		if got := countRequests(t, f, agentproto.PathReport, code); got != want {
			t.Errorf("reports counted with code %s: %d, want %d", code, got, want)
		}
	}
}
