package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/logstore"
	"github.com/ecpio/ecp/ecp/seal"
	"github.com/ecpio/ecp/ecp/tenancy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeVL answers VictoriaLogs' bulk endpoint and count query; fail makes
// the next bulk requests answer 503.
type fakeVL struct {
	srv   *httptest.Server
	mu    sync.Mutex
	docs  int
	fail  atomic.Bool
	count string
}

func newFakeVL(t testing.TB) *fakeVL {
	f := &fakeVL{count: "7"}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/insert/elasticsearch/_bulk":
			if f.fail.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			var items []any
			sc := bufio.NewScanner(r.Body)
			sc.Buffer(nil, 16<<20)
			for n := 0; sc.Scan(); n++ {
				if n%2 == 1 {
					items = append(items, map[string]any{"create": map[string]any{"status": 201}})
				}
			}
			f.mu.Lock()
			f.docs += len(items)
			f.mu.Unlock()
			_ = json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": false, "items": items})
		case "/select/logsql/query":
			_, _ = fmt.Fprintf(w, `{"n":%q}`+"\n", f.count)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeVL) stored() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.docs
}

type fixture struct {
	t       testing.TB
	api     *API
	router  *mux.Router
	vl      *fakeVL
	project string
}

// newFixture runs the API on a real etcd; users are named by the X-User
// header (the app's session middleware stands behind it in production):
// "root" is system admin, "viewer" views the project, "stranger" has no
// binding.
func newFixture(t testing.TB) *fixture {
	cli := etcdtest.Client(t)
	store := tenancy.NewStore(cli)
	ctx := t.Context()
	org, err := store.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	p, err := store.CreateProject(ctx, org.ID, "plant")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []tenancy.Binding{{Username: "root", Role: tenancy.RoleSystemAdmin}, {Username: "viewer", Role: tenancy.RoleProjectViewer, Project: p.ID}} {
		if _, err := store.CreateBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	agents := func(r *http.Request) (string, string, error) {
		if r.Header.Get("Authorization") != "Bearer agent" {
			return "", "", httpapi.Unauthorized("an agent credential is required")
		}
		return "c1", p.ID, nil
	}
	opts := DefaultOptions()
	if opts.Seal, err = seal.LoadOrCreate(filepath.Join(t.TempDir(), seal.DefaultKeyFile)); err != nil {
		t.Fatal(err)
	}
	opts.Writer.MaxRetryTime, opts.Writer.MinBackoff, opts.Writer.MaxBackoff = 50*time.Millisecond, time.Millisecond, 5*time.Millisecond
	a, err := New(ctx, opts, cli, tenancy.NewAuthorizer(store), agents, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	r := mux.NewRouter()
	apiR := r.PathPrefix("/api/v1").Subrouter()
	apiR.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if u := req.Header.Get("X-User"); u != "" {
				req = req.WithContext(auth.WithPrincipal(req.Context(), &auth.Principal{Username: u}))
			}
			next.ServeHTTP(w, req)
		})
	})
	root := r.NewRoute().Subrouter()
	a.Register(apiR, root, httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry()))
	return &fixture{t: t, api: a, router: r, vl: newFakeVL(t), project: p.ID}
}

// configure points the API at the fake store, as a stored setting would.
func (f *fixture) configure() {
	f.api.apply(logstore.ReceiverConfig{Type: logstore.TypeVictoriaLogs, URL: f.vl.srv.URL, Username: "u", Password: "store-secret"}, 1<<40)
}

func (f *fixture) do(method, path, user string, body any) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	if user == "agent" {
		req.Header.Set("Authorization", "Bearer agent")
	} else if user != "" {
		req.Header.Set("X-User", user)
	}
	w := httptest.NewRecorder()
	f.router.ServeHTTP(w, req)
	return w
}

func batch(id string, n int) agentproto.LogBatch {
	b := agentproto.LogBatch{BatchID: id}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		ts := t0.Add(time.Duration(i) * time.Microsecond)
		b.Lines = append(b.Lines, agentproto.LogEntry{Time: ts, Level: "warning", Message: "m", Raw: ts.String() + " [warning] m", File: "emqx.log.1", Offset: int64(i) * 40})
	}
	return b
}

func TestIngest(t *testing.T) {
	cases := []struct {
		name       string
		configured bool
		fail       bool
		user       string
		body       any
		status     int
		code       string
		retryAfter string
		stored     int
	}{
		{name: "no receiver: the agent keeps its lines", user: "agent", body: batch("b1", 3),
			status: 503, code: CodeNotConfigured, retryAfter: "30"},
		{name: "stored and acknowledged", configured: true, user: "agent", body: batch("b1", 3), status: 200, stored: 3},
		{name: "store down: backpressure", configured: true, fail: true, user: "agent", body: batch("b1", 3),
			status: 503, code: CodeStoreUnavailable, retryAfter: "5"},
		{name: "no credential", configured: true, user: "", body: batch("b1", 3), status: 401},
		{name: "no batch id", configured: true, user: "agent", body: batch("", 3), status: 400, code: httpapi.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.configured {
				f.configure()
			}
			f.vl.fail.Store(tc.fail)
			w := f.do(http.MethodPost, agentproto.PathLogs, tc.user, tc.body)
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.code) || w.Header().Get("Retry-After") != tc.retryAfter {
				t.Fatalf("= %d %s (Retry-After %q), want %d %s (%q)", w.Code, w.Body, w.Header().Get("Retry-After"), tc.status, tc.code, tc.retryAfter)
			}
			if got := f.vl.stored(); got != tc.stored {
				t.Fatalf("store holds %d lines, want %d", got, tc.stored)
			}
		})
	}
}

func TestRetriedBatchIsStoredOnce(t *testing.T) {
	f := newFixture(t)
	f.configure()
	for range 3 {
		if w := f.do(http.MethodPost, agentproto.PathLogs, "agent", batch("same", 5)); w.Code != 200 || !strings.Contains(w.Body.String(), `"accepted":5`) {
			t.Fatalf("= %d %s", w.Code, w.Body)
		}
	}
	if got := f.vl.stored(); got != 5 {
		t.Fatalf("store holds %d lines after three sends of one batch, want 5", got)
	}
}

func TestReceiverAndQueryAccess(t *testing.T) {
	f := newFixture(t)
	f.configure()
	cases := []struct {
		name, method, path, user string
		status                   int
		want, never              string
	}{
		{"admin reads the receiver without its password", "GET", "/api/v1/system/log-receiver", "root", 200, `"passwordSet":true`, "store-secret"},
		{"viewer may not read the receiver", "GET", "/api/v1/system/log-receiver", "viewer", 403, "", "store-secret"},
		{"anonymous", "GET", "/api/v1/system/log-receiver", "", 401, "", "store-secret"},
		{"viewer counts the project's lines", "GET", "/api/v1/projects/" + f.project + "/logs/count?level=error", "viewer", 200, `"count":7`, ""},
		{"stranger sees no project", "GET", "/api/v1/projects/" + f.project + "/logs/count", "stranger", 404, "", ""},
		{"bad time", "GET", "/api/v1/projects/" + f.project + "/logs?from=yesterday", "viewer", 400, `"field":"from"`, ""},
		{"bad level", "GET", "/api/v1/projects/" + f.project + "/logs?level=loud", "viewer", 400, `"field":"level"`, ""},
		{"stored receiver tested", "POST", "/api/v1/system/log-receiver/test", "root", 422, CodeTestFailed, "store-secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(tc.method, tc.path, tc.user, nil)
			body := w.Body.String()
			if w.Code != tc.status || !strings.Contains(body, tc.want) || (tc.never != "" && strings.Contains(body, tc.never)) {
				t.Fatalf("= %d %s, want %d with %q", w.Code, body, tc.status, tc.want)
			}
		})
	}
}

// TestSettingFollowsEtcd: a receiver saved by another replica (a write to
// ReceiverKey) applies here through the watch, and its removal too.
func TestSettingFollowsEtcd(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- f.api.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	cfg := logstore.ReceiverConfig{Type: logstore.TypeVictoriaLogs, URL: f.vl.srv.URL}
	val, _ := cfg.MarshalStored()
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); f.api.current().URL != want; {
			if time.Now().After(deadline) {
				t.Fatalf("receiver URL %q, want %q", f.api.current().URL, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if _, err := f.api.cli.Put(t.Context(), ReceiverKey, string(val)); err != nil {
		t.Fatal(err)
	}
	waitFor(f.vl.srv.URL)
	if w := f.do(http.MethodPost, agentproto.PathLogs, "agent", batch("b", 2)); w.Code != 200 {
		t.Fatalf("after the watch applied the receiver: %d %s", w.Code, w.Body)
	}
	if _, err := f.api.cli.Delete(t.Context(), ReceiverKey); err != nil {
		t.Fatal(err)
	}
	waitFor("")
}
