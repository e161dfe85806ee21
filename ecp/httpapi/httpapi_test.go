package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

type envelope struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// TestSec03BodyLimitPerRoute: issue #11 finding 3: a 650 KB username reached
// the login handler (every body up to 1 MiB was decoded) and from there
// etcd. Every route's body is now bounded, by a small default or the
// route's own limit, whoever reads it, and the caller is told the limit.
func TestSec03BodyLimitPerRoute(t *testing.T) {
	a := httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	decoded := 0
	decode := func(w http.ResponseWriter, r *http.Request) error {
		var v struct {
			Username string `json:"username"`
		}
		if err := httpapi.Decode(r, &v); err != nil {
			return err
		}
		decoded++
		return httpapi.JSON(w, http.StatusOK, map[string]int{"len": len(v.Username)})
	}
	readRaw := func(w http.ResponseWriter, r *http.Request) error {
		b, err := httpapi.ReadBody(r)
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, map[string]int{"len": len(b)})
	}
	body := func(n int) string { return `{"username":"` + strings.Repeat("a", n) + `"}` }
	for _, tc := range []struct {
		name      string
		h         http.Handler
		body      string
		chunked   bool
		status    int
		message   string
		decodedTo int
	}{
		{"default limit, small body", a.Handle(decode), body(100), false, http.StatusOK, "", 1},
		{"default limit, 650 KB declared", a.Handle(decode), body(650_000), false, http.StatusRequestEntityTooLarge, "larger than 65536 bytes", 0},
		{"default limit, 650 KB chunked", a.Handle(decode), body(650_000), true, http.StatusRequestEntityTooLarge, "larger than 65536 bytes", 0},
		{"login-sized limit, 5 KB", a.Handle(decode, httpapi.BodyLimit(4<<10)), body(5000), true, http.StatusRequestEntityTooLarge, "larger than 4096 bytes", 0},
		{"login-sized limit, fits", a.Handle(decode, httpapi.BodyLimit(4<<10)), body(4000), true, http.StatusOK, "", 1},
		{"larger route limit, 650 KB", a.Handle(decode, httpapi.BodyLimit(1<<20)), body(650_000), true, http.StatusOK, "", 1},
		{"raw reader, over the limit", a.Handle(readRaw), body(70_000), true, http.StatusRequestEntityTooLarge, "larger than 65536 bytes", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decoded = 0
			req := httptest.NewRequest(http.MethodPost, "/login", strings.NewReader(tc.body))
			if tc.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, req)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if decoded != tc.decodedTo {
				t.Fatalf("handler decoded %d bodies, want %d", decoded, tc.decodedTo)
			}
			if tc.message == "" {
				return
			}
			var env envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatalf("reply %q is not the error envelope: %v", rec.Body, err)
			}
			if env.Error.Code != httpapi.CodeTooLarge || !strings.Contains(env.Error.Message, tc.message) {
				t.Fatalf("error %+v, want code %s and a message naming the limit (%q)", env.Error, httpapi.CodeTooLarge, tc.message)
			}
		})
	}
}

// timeoutReader fails as a connection does when its read deadline passes.
type timeoutReader struct{}

func (timeoutReader) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

// TestSec03SlowBodyIs408: issue #11 finding 3 (the slow body held 74 s): a
// body cut by the server's read deadline is answered 408 in the envelope,
// not as invalid JSON quoting the connection's addresses.
func TestSec03SlowBodyIs408(t *testing.T) {
	a := httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	h := a.Handle(func(w http.ResponseWriter, r *http.Request) error {
		var v map[string]any
		if err := httpapi.Decode(r, &v); err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, v)
	})
	req := httptest.NewRequest(http.MethodPost, "/x", io.MultiReader(strings.NewReader(`{"a":`), timeoutReader{}))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var env envelope
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("reply %q is not the error envelope: %v", rec.Body, err)
	}
	if rec.Code != http.StatusRequestTimeout || env.Error.Code != httpapi.CodeTimeout || !strings.Contains(env.Error.Message, "read timeout") {
		t.Fatalf("status %d, error %+v; want 408 %s saying the body did not arrive in time", rec.Code, env.Error, httpapi.CodeTimeout)
	}
}

// TestErrorEnvelopeIsTheAgentprotoType: every error is written as
// agentproto.ErrorBody, the one envelope type (it was a map here beside that
// type), details sit beside code, message and field, and a detail cannot
// overwrite those three (it could, when the map was filled in order).
func TestErrorEnvelopeIsTheAgentprotoType(t *testing.T) {
	a := httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	h := a.Handle(func(http.ResponseWriter, *http.Request) error {
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: httpapi.CodeRefused, Message: "over <quota> & ceiling",
			Field: "maxConnections", Details: map[string]any{"remaining": 5, "code": "Spoofed"}}
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/x", nil))
	want := `{"error":{"code":"Refused","field":"maxConnections","message":"over <quota> & ceiling","remaining":5}}` + "\n"
	if rec.Code != http.StatusUnprocessableEntity || rec.Body.String() != want {
		t.Fatalf("got %d %s\nwant 422 %s", rec.Code, rec.Body, want)
	}
	var eb agentproto.ErrorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil {
		t.Fatal(err)
	}
	if eb.Error.Code != httpapi.CodeRefused || eb.Error.Field != "maxConnections" || eb.Error.Details["remaining"] != 5.0 || len(eb.Error.Details) != 1 {
		t.Fatalf("decoded %+v", eb)
	}
}

// TestStoreOutageIs503WithRetryAfter: the fault campaign (e2e/faults) found
// that a call needing etcd while etcd had no leader or quorum was answered
// 500 "internal error", which agents do not back off from. It is a 503 with
// Retry-After; any other failure stays a 500.
func TestStoreOutageIs503WithRetryAfter(t *testing.T) {
	a := httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	for name, tc := range map[string]struct {
		err    error
		status int
	}{
		"etcd without a leader": {fmt.Errorf("write status: %w", rpctypes.ErrNoLeader), http.StatusServiceUnavailable},
		"etcd timing out":       {fmt.Errorf("write status: %w", rpctypes.ErrTimeout), http.StatusServiceUnavailable},
		"deadline passed":       {fmt.Errorf("write status: %w", context.DeadlineExceeded), http.StatusServiceUnavailable},
		"any other failure":     {errors.New("boom"), http.StatusInternalServerError},
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			a.Handle(func(http.ResponseWriter, *http.Request) error { return tc.err }).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/x", nil))
			var env envelope
			_ = json.Unmarshal(rec.Body.Bytes(), &env)
			if rec.Code != tc.status {
				t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, tc.status)
			}
			if tc.status == http.StatusServiceUnavailable && (rec.Header().Get("Retry-After") != "5" || env.Error.Code != httpapi.CodeUnavailable ||
				!strings.Contains(env.Error.Message, "retry later")) {
				t.Fatalf("Retry-After %q, envelope %+v", rec.Header().Get("Retry-After"), env)
			}
			if strings.Contains(rec.Body.String(), "etcdserver") || strings.Contains(rec.Body.String(), "boom") {
				t.Fatalf("internal error text leaked: %s", rec.Body)
			}
		})
	}
}

// TestUnknownMethodsShareOneLatencySeries: any token is an HTTP method, and
// the latency histogram was labelled with the caller's method as sent, so
// an anonymous caller added a series (14 buckets) per made-up method to
// ecp's memory and every scrape. Methods HTTP does not define share the
// label "other"; the defined ones keep their names.
func TestUnknownMethodsShareOneLatencySeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := httpapi.NewAdapter(slog.New(slog.DiscardHandler), reg)
	h := a.Handle(func(http.ResponseWriter, *http.Request) error { return httpapi.NotFound("no route") })
	for i := range 50 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(fmt.Sprintf("M%d", i), "/x", nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodDelete, "/x", nil))
	got := requestsBy(t, reg, "method")
	if len(got) != 2 || got["other"] != 50 || got[http.MethodDelete] != 1 {
		t.Fatalf("series by method: %d of them, other=%d DELETE=%d; want other=50 and DELETE=1 only", len(got), got["other"], got[http.MethodDelete])
	}
}

// TestRouteNamesTheTemplate: a handler given its template (Route) counts
// and logs its requests under it without gorilla/mux having matched them;
// one without is "other" then.
func TestRouteNamesTheTemplate(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	a := httpapi.NewAdapter(slog.New(slog.NewTextHandler(&logs, nil)), reg)
	fail := func(http.ResponseWriter, *http.Request) error { return errors.New("boom") }
	a.Handle(fail, httpapi.Route("/api/v1/x/{id}")).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/v1/x/1", nil))
	a.Handle(fail).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/v1/x/2", nil))
	got := requestsBy(t, reg, "route")
	if len(got) != 2 || got["/api/v1/x/{id}"] != 1 || got["other"] != 1 {
		t.Fatalf("requests by route: %v, want one under /api/v1/x/{id} and one under other", got)
	}
	if !strings.Contains(logs.String(), "route=/api/v1/x/{id}") || !strings.Contains(logs.String(), "route=other") {
		t.Fatalf("error log does not name the routes:\n%s", logs.String())
	}
}

// requestsBy is how many requests the latency histogram on reg counted, by
// the value of label (one series per value in these tests).
func requestsBy(t *testing.T, reg *prometheus.Registry, label string) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					got[l.GetValue()] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return got
}
