package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/clusters/clusterstest"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/internal/secret"
)

const testAdminPassword = "admin-password-1"

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	t      testing.TB
	app    *App
	fleet  *clusterstest.Fleet
	logs   *syncBuffer
	out    *syncBuffer
	reg    *prometheus.Registry
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

// testOptions are DefaultOptions made fit for a test: loopback port 0,
// embedded etcd in a temp dir, cheap bcrypt, a fake fleet.
func testOptions(t *testing.T) Options {
	t.Helper()
	opts := DefaultOptions()
	opts.ListenAddress = "127.0.0.1:0"
	opts.DataDir = t.TempDir()
	opts.BcryptCost = bcrypt.MinCost
	opts.AdminPassword = secret.String(testAdminPassword)
	dist := t.TempDir()
	for _, arch := range []string{"amd64", "arm64", "arm"} {
		if err := os.WriteFile(filepath.Join(dist, "agent-exporter-linux-"+arch), []byte("binary-"+arch), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts.DownloadsDir = dist
	return opts
}

// sharedEtcdOptions are testOptions on an etcd member of the test's own,
// which several replicas can share (it speaks mutual TLS, as the embedded
// one does).
func sharedEtcdOptions(t *testing.T) Options {
	t.Helper()
	srv := etcdtest.Start(t)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	return opts
}

// start runs an app with opts until the test ends, with a fake fleet
// unless opts names one.
func start(t *testing.T, opts Options) *harness {
	t.Helper()
	return startWith(t, opts, false)
}

// startReal runs an app with ecp's own fleet and agent API.
func startReal(t *testing.T, opts Options) *harness {
	t.Helper()
	return startWith(t, opts, true)
}

// The fake stands in for the whole agent side, or this fails to compile.
var _ agentSide = (*clusterstest.Fleet)(nil)

func startWith(t testing.TB, opts Options, realFleet bool) *harness {
	t.Helper()
	h := &harness{t: t, logs: &syncBuffer{}, out: &syncBuffer{}, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	if opts.fleet == nil && !realFleet {
		h.fleet = clusterstest.New()
		opts.fleet = h.fleet
	}
	opts.Out = h.out
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(opts, logger, h.reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.app = a
	h.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- a.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop ends Run and waits for it; safe to call twice.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
}

type reply struct {
	status int
	body   []byte
	header http.Header
}

func (r reply) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (h *harness) do(method, path, token string, body any) reply {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, h.app.URL()+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, body: b, header: resp.Header}
}

// must does the call and fails unless it answers want.
func (h *harness) must(want int, method, path, token string, body any) reply {
	h.t.Helper()
	r := h.do(method, path, token, body)
	if r.status != want {
		h.t.Fatalf("%s %s = %d %s, want %d", method, path, r.status, r.body, want)
	}
	return r
}

func (h *harness) login(username, password string) string {
	h.t.Helper()
	var out struct {
		Token string `json:"token"`
	}
	h.must(http.StatusOK, "POST", "/api/v1/login", "", map[string]string{"username": username, "password": password}).decode(h.t, &out)
	return out.Token
}

func (h *harness) id(r reply) string {
	h.t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	r.decode(h.t, &out)
	if out.ID == "" {
		h.t.Fatalf("no id in %s", r.body)
	}
	return out.ID
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func clientWithPrefix() clientv3.OpOption { return clientv3.WithPrefix() }
