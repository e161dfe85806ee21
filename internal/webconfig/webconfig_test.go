package webconfig_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"

	"github.com/ecpio/ecp/internal/webconfig"
	"github.com/ecpio/ecp/internal/webconfig/webconfigtest"
)

// The file's headers apply to every reply, its rate limit and basic auth
// only to what Protect guards; a changed file applies without a restart.
func TestHeadersRateLimitAndReload(t *testing.T) {
	wc := webconfigtest.Write(t, map[string]string{"u": "secret-1"}, false)
	b, err := os.ReadFile(wc.Path)
	if err != nil {
		t.Fatal(err)
	}
	extra := "http_server_config:\n  headers:\n    X-Frame-Options: deny\nrate_limit:\n  interval: 1h\n  burst: 2\n"
	if err := os.WriteFile(wc.Path, append(b, extra...), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := webconfig.Load(wc.Path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	mux.Handle("/metrics", w.Protect(ok))
	mux.Handle("/api", ok)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	done := make(chan error, 1)
	go func() { done <- w.Serve(ln, srv) }()
	t.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	get := func(path, user, pass string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for i := range 5 {
		if r := get("/api", "", ""); r.StatusCode != http.StatusOK || r.Header.Get("X-Frame-Options") != "deny" {
			t.Fatalf("unguarded request %d: %d, headers %v", i, r.StatusCode, r.Header)
		}
	}
	if r := get("/metrics", "", ""); r.StatusCode != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("guarded without credentials: %d %v", r.StatusCode, r.Header)
	}
	if r := get("/metrics", "u", "secret-1"); r.StatusCode != http.StatusOK {
		t.Fatalf("guarded with credentials: %d", r.StatusCode)
	}
	if r := get("/metrics", "u", "secret-1"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("guarded beyond the burst: %d, want 429", r.StatusCode)
	}
	// A new password (and no rate limit) applies on the next request.
	next := webconfigtest.Write(t, map[string]string{"u": "secret-2"}, false)
	nb, err := os.ReadFile(next.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wc.Path, append(nb, "# rotated\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := get("/metrics", "u", "secret-1"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old password after rotation: %d, want 401", r.StatusCode)
	}
	if r := get("/metrics", "u", "secret-2"); r.StatusCode != http.StatusOK {
		t.Fatalf("new password after rotation: %d, want 200", r.StatusCode)
	}
}

// TestHTTP2Off: http_server_config.http2: false turns HTTP/2 off on a plain
// listener too (h2c), not only over TLS.
func TestHTTP2Off(t *testing.T) {
	wc := webconfigtest.Write(t, nil, false)
	b, err := os.ReadFile(wc.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wc.Path, append(b, "http_server_config:\n  http2: false\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := webconfig.Load(wc.Path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	done := make(chan error, 1)
	go func() { done <- w.Serve(ln, srv) }()
	defer func() {
		_ = srv.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	for _, h2c := range []bool{false, true} {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetHTTP1(!h2c)
		tr.Protocols.SetUnencryptedHTTP2(h2c)
		resp, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
		if err == nil {
			_ = resp.Body.Close()
		}
		tr.CloseIdleConnections()
		if (err == nil) == h2c {
			t.Fatalf("h2c %v: err %v; want HTTP/1.1 served and h2c refused", h2c, err)
		}
	}
}
