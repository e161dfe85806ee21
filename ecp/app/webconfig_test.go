package app

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ecpio/ecp/internal/webconfig/webconfigtest"
)

// issue #11 finding 9: GET /metrics answered anyone, listing every tenant's
// project and cluster ids. With --web.config.file (the exporter-toolkit
// format) /metrics needs the configured basic auth and the listener serves
// https, while the bearer-token API, the agent API and the probes on the
// same listener work as before.
func TestSec09MetricsNeedTheWebConfigsBasicAuth(t *testing.T) {
	wc := webconfigtest.Write(t, map[string]string{"prometheus": "scrape-secret"}, true)
	opts := testOptions(t)
	opts.WebConfigFile = wc.Path
	h := start(t, opts)
	h.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: wc.Roots, MinVersion: tls.VersionTLS12}}
	if !strings.HasPrefix(h.app.URL(), "https://") || !strings.HasPrefix(h.app.ExternalURL(), "https://") {
		t.Fatalf("URL %s, external URL %s: want https with TLS configured", h.app.URL(), h.app.ExternalURL())
	}

	scrape := func(user, pass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.app.URL()+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := scrape("", ""); code != http.StatusUnauthorized || strings.Contains(body, "ecp_") {
		t.Fatalf("/metrics without credentials: %d %.200s, want 401 and no metrics", code, body)
	}
	if code, _ := scrape("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics with a wrong password: %d, want 401", code)
	}
	if code, _ := scrape("nobody", "scrape-secret"); code != http.StatusUnauthorized {
		t.Fatalf("/metrics as an unknown user: %d, want 401", code)
	}
	if code, body := scrape("prometheus", "scrape-secret"); code != http.StatusOK || !strings.Contains(body, "ecp_build_info") {
		t.Fatalf("/metrics with credentials: %d %.200s, want 200 and ecp's metrics", code, body)
	}
	h.must(http.StatusUnauthorized, "POST", "/-/reload", "", nil)
	// The rest of the listener keeps its own authentication.
	h.must(http.StatusOK, "GET", "/-/healthy", "", nil)
	admin := h.login("admin", testAdminPassword)
	h.must(http.StatusOK, "GET", "/api/v1/orgs", admin, nil)
	h.must(http.StatusUnauthorized, "GET", "/api/v1/orgs", "", nil)

	// Plain http gets nothing from the TLS listener.
	resp, err := http.Get("http://" + h.app.Addr() + "/metrics")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain http to the TLS listener: %d, want 400", resp.StatusCode)
		}
	}
}

// A web configuration without TLS guards /metrics on plain http, and
// without users leaves it open (as the toolkit does).
func TestWebConfigWithoutTLS(t *testing.T) {
	wc := webconfigtest.Write(t, map[string]string{"prometheus": "scrape-secret"}, false)
	opts := testOptions(t)
	opts.WebConfigFile = wc.Path
	h := start(t, opts)
	if !strings.HasPrefix(h.app.URL(), "http://") {
		t.Fatalf("URL %s without TLS", h.app.URL())
	}
	h.must(http.StatusUnauthorized, "GET", "/metrics", "", nil)
}

func TestBadWebConfigFailsNew(t *testing.T) {
	opts := testOptions(t)
	opts.WebConfigFile = t.TempDir() + "/missing.yml"
	if _, err := New(opts, discardLogger(), newRegistry()); err == nil || !strings.Contains(err.Error(), "--web.config.file") {
		t.Fatalf("New with a missing web config: %v, want an error naming --web.config.file", err)
	}
}
