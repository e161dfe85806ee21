package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/internal/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable time source shared by the fleets of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testFleet is a running Fleet with its HTTP API on a loopback server.
type testFleet struct {
	*Fleet
	reg  *prometheus.Registry
	logs *syncBuffer
	url  string
	// handler is what the server serves, router behind Shortcut as in
	// ecp (benchmarks call it directly).
	handler http.Handler
	router  *mux.Router
	// stopRun ends Run and waits for it; stop also closes the server.
	stopRun func()
	stop    func()
}

const testInterval = 15 * time.Second

func startFleet(t testing.TB, cli *clientv3.Client, clk *clock, replica string, mods ...func(*Options)) *testFleet {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := Options{ReplicaID: replica, Now: clk.Now, ReportInterval: testInterval,
		// The sweeper and digests are driven by the tests themselves.
		SweepEvery: time.Hour}
	for _, m := range mods {
		m(&opts)
	}
	logs := &syncBuffer{}
	f, err := New(opts, cli, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	f.Register(r)
	// As ecp serves it (ecp/app).
	h := f.Shortcut(r)
	srv := httptest.NewServer(h)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.Run(ctx); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var once sync.Once
	stopRun := func() {
		cancel()
		<-done
	}
	tf := &testFleet{Fleet: f, reg: reg, logs: logs, url: srv.URL, handler: h, router: r, stopRun: stopRun, stop: func() {
		once.Do(func() {
			stopRun()
			srv.Close()
		})
	}}
	t.Cleanup(tf.stop)
	select {
	case <-f.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("fleet did not load its state")
	}
	return tf
}

// waitFor waits until cond holds, re-checking whenever the fleet applies a
// watch batch; it fails after a generous bound instead of hanging.
func (tf *testFleet) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	limit := time.After(20 * time.Second)
	for {
		tf.mu.Lock()
		ch := tf.appliedLocked()
		tf.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-limit:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitTold publishes the digest of replica from (named name) and waits
// until tf has it: tf then knows what from heard up to now.
func (tf *testFleet) waitTold(t *testing.T, from *testFleet, name string, now time.Time) {
	t.Helper()
	from.publishDigest(t.Context())
	tf.waitFor(t, name+"'s digest", func() bool {
		tf.mu.Lock()
		defer tf.mu.Unlock()
		return tf.told[name].Equal(now)
	})
}

func (tf *testFleet) waitLeader(t *testing.T) {
	t.Helper()
	tf.waitFor(t, "leadership", tf.isLeader)
}

func (tf *testFleet) status(t *testing.T, id string) Status {
	t.Helper()
	st, err := tf.Status(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (tf *testFleet) waitState(t *testing.T, id, state, code string) Status {
	t.Helper()
	var st Status
	tf.waitFor(t, fmt.Sprintf("cluster %s %s/%s", id, state, code), func() bool {
		st = tf.status(t, id)
		return st.State == state && reasonCode(st.StateReason) == code
	})
	return st
}

func (tf *testFleet) writes(reason string) float64 {
	return testutil.ToFloat64(tf.metrics.etcdWrites.WithLabelValues(reason))
}

func putSpec(t testing.TB, cli *clientv3.Client, id string, maxConns int) int64 {
	t.Helper()
	spec := registry.Spec{ID: id, Name: "cluster " + id, Project: "p1", MaxConnections: maxConns,
		CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	b, err := spec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(t.Context(), registry.Key(id), string(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func issue(t testing.TB, f *testFleet, id string, ttl time.Duration) secret.String {
	t.Helper()
	tok, _, err := f.IssueRegistration(t.Context(), id, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// agent is a minimal client of the agent protocol.
type agent struct {
	base string
	cred string
	hc   *http.Client
}

func newAgent(base string) *agent {
	return &agent{base: base, hc: &http.Client{Timeout: 30 * time.Second}}
}

// reply is one decoded answer.
type reply struct {
	status int
	code   string
	header http.Header
	body   []byte
}

func (a *agent) do(t testing.TB, method, path string, body any) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, a.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if a.cred != "" {
		req.Header.Set("Authorization", "Bearer "+a.cred)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := reply{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.StatusCode >= 400 {
		var eb agentproto.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil {
			t.Fatalf("%s %s: error body %q: %v", method, path, b, err)
		}
		out.code = eb.Error.Code
	}
	return out
}

func decodeBody[T any](t testing.TB, r reply) T {
	t.Helper()
	var v T
	if r.status != http.StatusOK {
		t.Fatalf("status %d (%s): %s", r.status, r.code, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

func (a *agent) register(t testing.TB, token secret.String) reply {
	t.Helper()
	r := a.do(t, http.MethodPost, agentproto.PathRegister, agentproto.RegisterRequest{Token: token.Reveal(),
		AgentVersion: "1.0.0", Hostname: "broker-1", DashboardURL: "http://broker-1:18083", APIURL: "http://broker-1:18083/api/v5",
		LogCollection: agentproto.LogCollection{Enabled: true, Dir: "/opt/emqx/log"}})
	if r.status == http.StatusOK {
		a.cred = decodeBody[agentproto.RegisterResponse](t, r).Credential
	}
	return r
}

func mustRegister(t testing.TB, a *agent, token secret.String) agentproto.RegisterResponse {
	t.Helper()
	return decodeBody[agentproto.RegisterResponse](t, a.register(t, token))
}

func healthy() agentproto.EMQXStatus {
	return agentproto.EMQXStatus{Reachable: true, Version: "5.8.1", StartedAt: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC),
		Nodes: []agentproto.Node{{Name: "emqx@a", Status: "running", Connections: 7, LiveConnections: 5},
			{Name: "emqx@b", Status: "stopped"}},
		Connections: 7, LiveConnections: 5, MaxConnections: 10}
}

func (a *agent) report(t *testing.T, em agentproto.EMQXStatus) reply {
	t.Helper()
	return a.do(t, http.MethodPost, agentproto.PathReport, agentproto.ReportRequest{CollectedAt: time.Now(), AgentVersion: "1.0.0", EMQX: em})
}

func (a *agent) desired(t *testing.T, after int64, timeout string) reply {
	t.Helper()
	return a.do(t, http.MethodGet, agentproto.PathDesired+"?after="+strconv.FormatInt(after, 10)+"&timeout="+timeout, nil)
}

func (a *agent) unregister(t *testing.T) reply {
	t.Helper()
	return a.do(t, http.MethodPost, agentproto.PathUnregister, nil)
}

func wantCode(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.code != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.status, r.code, r.body, status, code)
	}
}

func secretOf(s string) secret.String { return secret.String(s) }

func clientv3WithPrefix() clientv3.OpOption { return clientv3.WithPrefix() }

func httptestRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func httptestRequest() *http.Request {
	return httptest.NewRequest(http.MethodPost, agentproto.PathReport, nil)
}

// syncBuffer collects a fleet's log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
