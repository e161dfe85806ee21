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
	if err := Test(t.Context(), ReceiverConfig{Type: "x", URL: es.srv.URL}, nil); err == nil {
		t.Fatal("invalid config tested")
	}
}
