package logstore

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ecpio/ecp/internal/secret"
)

func TestConnectionTest(t *testing.T) {
	es := newFakeES(t)
	vlLike := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<h2>VictoriaLogs</h2></br>Version")
	}))
	defer vlLike.Close()
	oldES := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"version":{"number":"6.8.23"},"tagline":"You Know, for Search"}`)
	}))
	defer oldES.Close()
	// Elasticsearch with security off answers the privileges API with an
	// error: nothing to check then.
	noSecurity := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		if r.URL.Path == "/" {
			_, _ = io.WriteString(w, `{"version":{"number":"8.15.0"},"tagline":"You Know, for Search"}`)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":{"type":"security_exception","reason":"Security must be explicitly enabled when using a [basic] license."},"status":500}`)
	}))
	defer noSecurity.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	withPassword := func(c ReceiverConfig, pw string) ReceiverConfig { c.Password = secret.String(pw); return c }
	tests := []struct {
		name    string
		cfg     ReceiverConfig
		want    error
		message string
	}{
		{"elasticsearch ok", es.cfg(), nil, ""},
		{"wrong password", withPassword(es.cfg(), "nope-nope"), ErrUnauthorized, "refused the login as user ecp (401)"},
		{"no credentials", ReceiverConfig{Type: TypeElasticsearch, URL: es.srv.URL}, ErrUnauthorized, "without credentials"},
		{"unreachable", ReceiverConfig{Type: TypeElasticsearch, URL: closed.URL}, ErrUnreachable, "cannot reach"},
		{"victorialogs configured as elasticsearch", ReceiverConfig{Type: TypeElasticsearch, URL: vlLike.URL}, ErrWrongType, `set type "victorialogs"`},
		{"elasticsearch configured as victorialogs", func() ReceiverConfig { c := es.cfg(); c.Type = TypeVictoriaLogs; return c }(), ErrWrongType, "not VictoriaLogs"},
		{"elasticsearch without security", ReceiverConfig{Type: TypeElasticsearch, URL: noSecurity.URL}, nil, ""},
		{"elasticsearch too old", ReceiverConfig{Type: TypeElasticsearch, URL: oldES.URL}, ErrWrongType, "too old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Test(t.Context(), tt.cfg, nil)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("err %v, want %v with %q", err, tt.want, tt.message)
			}
			if strings.Contains(err.Error(), "nope-nope") || strings.Contains(err.Error(), "s3cret-pw") {
				t.Fatalf("password in message: %v", err)
			}
		})
	}
	t.Run("missing privileges", func(t *testing.T) {
		es.mu.Lock()
		es.denied = map[string]bool{"manage_index_templates": true, "index": true}
		es.mu.Unlock()
		defer func() { es.mu.Lock(); es.denied = nil; es.mu.Unlock() }()
		err := Test(t.Context(), es.cfg(), nil)
		want := `user "ecp" lacks cluster privilege manage_index_templates, index privilege index on logs-*`
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), want) {
			t.Fatalf("err %v, want %q", err, want)
		}
	})
	if err := Test(t.Context(), ReceiverConfig{Type: "x", URL: es.srv.URL}, nil); err == nil {
		t.Fatal("invalid config tested")
	}
}
