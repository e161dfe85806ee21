package app

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestScaleReplicaShedsConnectionsAndSaysWhy: at 10,000 agents ecp ran out
// of descriptors, refused connections with "accept4: too many open files"
// and then died. A replica now holds at most --web.max-connections: beyond
// it a client is told 503 with Retry-After, the log says why, /-/ready
// says what the replica is short of, and the replica keeps serving.
func TestScaleReplicaShedsConnectionsAndSaysWhy(t *testing.T) {
	opts := testOptions(t)
	opts.MaxConnections = 3
	h := start(t, opts)
	for h.do("GET", "/-/ready", "", nil).status != 200 {
		runtime.Gosched()
	}
	// The harness's client keeps one connection; two more fill the limit.
	for range 2 {
		c, err := net.Dial("tcp", strings.TrimPrefix(h.app.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(h.app.URL() + "/-/healthy")
	if err != nil {
		t.Fatalf("a client beyond the limit got no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "--web.max-connections") {
		t.Fatalf("beyond the limit: %d Retry-After %q %s, want 503 with Retry-After naming the limit", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	rec := httptest.NewRecorder()
	h.app.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/ready", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "most connections (3 of 3, --web.max-connections)") {
		t.Fatalf("/-/ready while refusing: %d %q, want 503 saying what ecp is short of", rec.Code, rec.Body)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "refusing connections") || !strings.Contains(logs, "limit=3") {
		t.Fatalf("the log does not say why connections are refused:\n%s", logs)
	}
	// Still serving on the connections it holds.
	h.must(200, "GET", "/-/healthy", "", nil)
	if m := string(h.must(200, "GET", "/metrics", "", nil).body); !strings.Contains(m, "\necp_http_connections_refused_total 1\n") {
		t.Fatal("ecp_http_connections_refused_total is not 1 after one refusal")
	}
}
