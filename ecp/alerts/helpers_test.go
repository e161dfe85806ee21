package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/seal"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// world is a project with an admin and a viewer, and a foreign project.
type world struct {
	cli              *clientv3.Client
	authz            *tenancy.Authorizer
	project, foreign tenancy.Project
	// seal is the key every service of the world shares, as replicas do.
	seal *seal.Key
}

// putCluster registers cluster id, named name, in project, as ecp's
// registry stores it.
func (w *world) putCluster(t testing.TB, id, name, project string) {
	t.Helper()
	b, err := registry.Spec{ID: id, Name: name, Project: project}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.cli.Put(t.Context(), registry.Key(id), string(b)); err != nil {
		t.Fatal(err)
	}
}

// newReplica starts replica id of a deployment whose replicas share srv and
// dir (the rule and Alertmanager files), each with its own etcd client, o
// giving the rest of its options.
func newReplica(t testing.TB, srv *etcdserver.Server, w *world, dir, id string, o Options) *api {
	t.Helper()
	o.ReplicaID, o.SessionTTL = id, 2*time.Second
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
	ww := *w
	ww.cli = etcdtest.ClientOf(t, srv)
	return newService(t, &ww, o)
}

func newWorld(t testing.TB, cli *clientv3.Client) *world {
	t.Helper()
	ctx := t.Context()
	store := tenancy.NewStore(cli)
	org, err := store.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{cli: cli, authz: tenancy.NewAuthorizer(store)}
	if w.seal, err = seal.LoadOrCreate(filepath.Join(t.TempDir(), seal.DefaultKeyFile)); err != nil {
		t.Fatal(err)
	}
	if w.project, err = store.CreateProject(ctx, org.ID, "plant"); err != nil {
		t.Fatal(err)
	}
	if w.foreign, err = store.CreateProject(ctx, org.ID, "lab"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []tenancy.Binding{
		{Username: "root", Role: tenancy.RoleSystemAdmin},
		{Username: "padmin", Role: tenancy.RoleProjectAdmin, Org: org.ID, Project: w.project.ID},
		{Username: "viewer", Role: tenancy.RoleProjectViewer, Org: org.ID, Project: w.project.ID},
	} {
		if _, err := store.CreateBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// api serves a Service's routes with the caller set by the X-Test-User
// header, standing in for ecp's authentication middleware.
type api struct {
	t       testing.TB
	svc     *Service
	handler http.Handler
	reg     *prometheus.Registry
	// dns answers the notification policy's lookups.
	dns *fakeDNS
}

// fakeDNS resolves names from a map the test can change (DNS rebinding);
// hooks.example.test, the tests' usual webhook host, is a public address.
type fakeDNS struct {
	mu    sync.Mutex
	names map[string]string
}

func (d *fakeDNS) point(name, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.names[name] = addr
}

func (d *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if a, ok := d.names[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// runMirror runs m until t ends; New has subscribed to it.
func runMirror(t testing.TB, m *registry.Mirror) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func newService(t testing.TB, w *world, o Options) *api {
	t.Helper()
	reg := prometheus.NewRegistry()
	if o.ExternalURL == "" {
		o.ExternalURL = "https://ecp.example.test"
	}
	if o.HistoryRetention == 0 {
		o.HistoryRetention = DefaultHistoryRetention
	}
	if o.Seal == nil {
		o.Seal = w.seal
	}
	dns := &fakeDNS{names: map[string]string{"hooks.example.test": "203.0.113.7"}}
	policy := destpolicy.NewStore(w.cli, w.authz, destpolicy.Options{Resolver: dns, Dependencies: func() []destpolicy.Dependency {
		return []destpolicy.Dependency{{Name: "Prometheus", Endpoint: o.PrometheusURL}, {Name: "Alertmanager", Endpoint: o.AlertmanagerURL}}
	}})
	if o.Destinations == nil {
		o.Destinations = policy
	}
	if o.Clusters == nil {
		// Each service its own mirror, as each replica has.
		o.Clusters = registry.NewMirror(w.cli, nil)
	}
	svc, err := New(t.Context(), o, w.cli, w.authz, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	runMirror(t, o.Clusters)
	r := mux.NewRouter()
	// Root routes before the /api/v1 prefix, as in ecp/app.
	root := r.NewRoute().Subrouter()
	apiR := r.PathPrefix("/api/v1").Subrouter()
	apiR.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
			if u := req.Header.Get("X-Test-User"); u != "" {
				req = req.WithContext(auth.WithPrincipal(req.Context(), &auth.Principal{Username: u}))
			}
			next.ServeHTTP(rw, req)
		})
	})
	ad := httpapi.NewAdapter(slog.New(slog.DiscardHandler), reg)
	svc.Register(apiR, root, ad)
	policy.Register(apiR, ad)
	return &api{t: t, svc: svc, handler: r, reg: reg, dns: dns}
}

type result struct {
	status int
	body   []byte
}

func (a *api) do(user, method, path string, body any, header ...string) result {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequestWithContext(a.t.Context(), method, path, rd)
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	return result{status: rec.Code, body: rec.Body.Bytes()}
}

func (a *api) must(want int, user, method, path string, body any, header ...string) result {
	a.t.Helper()
	r := a.do(user, method, path, body, header...)
	if r.status != want {
		a.t.Fatalf("%s %s as %q = %d %s, want %d", method, path, user, r.status, r.body, want)
	}
	return r
}

func (r result) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// notify posts one Alertmanager notification with ecp's webhook token.
func (a *api) notify(status string, alerts ...webhookAlert) result {
	a.t.Helper()
	return a.do("", http.MethodPost, WebhookPath, webhookMessage{Version: "4", Status: status, Receiver: "ecp", Alerts: alerts},
		"Authorization", "Bearer "+a.svc.token.Reveal())
}

func (a *api) list(project, query string) []Alert {
	a.t.Helper()
	var out struct{ Items []Alert }
	a.must(200, "root", http.MethodGet, "/api/v1/projects/"+project+"/alerts?"+query, nil).decode(a.t, &out)
	return out.Items
}

// waitStatus blocks until the stored apply status satisfies ok, reading it
// at once and then on every change (no polling).
func waitStatus(t testing.TB, cli *clientv3.Client, ok func(applyStatus) bool) applyStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, statusKey)
	if err != nil {
		t.Fatal(err)
	}
	var st applyStatus
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return st
		}
	}
	for wr := range cli.Watch(ctx, statusKey, clientv3.WithRev(resp.Header.Revision+1)) {
		for _, ev := range wr.Events {
			if err := json.Unmarshal(ev.Kv.Value, &st); err != nil {
				t.Fatal(err)
			}
			if ok(st) {
				return st
			}
		}
	}
	t.Fatalf("apply status never satisfied the condition; last %+v", st)
	return st
}

// fake stands in for Prometheus or Alertmanager: it counts reloads, fails
// them on demand and records the alerts posted to /api/v2/alerts.
type fake struct {
	*httptest.Server
	mu      sync.Mutex
	n       int
	failMsg string
	posted  [][]byte
	// held is what GET /api/v2/alerts answers.
	held []byte
}

// fakeStackOptions are the Options of replica r1 writing its files into a
// temporary directory, with fakes for Prometheus and Alertmanager; am is
// the Alertmanager fake, which records what ecp sent it.
func fakeStackOptions(t testing.TB) (o Options, am *fake) {
	t.Helper()
	prom, am := newFake(t), newFake(t)
	dir := t.TempDir()
	o = Options{Config: DefaultConfig(), ReplicaID: "r1"}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
	o.PrometheusURL, o.AlertmanagerURL = prom.URL, am.URL
	return o, am
}

func newFake(t testing.TB) *fake {
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.URL.Path {
		case "/-/reload":
			f.n++
			if f.failMsg != "" {
				http.Error(w, f.failMsg, http.StatusInternalServerError)
			}
		case "/api/v2/alerts":
			if r.Method == http.MethodGet {
				_, _ = w.Write(f.held)
				return
			}
			b, _ := io.ReadAll(r.Body)
			f.posted = append(f.posted, b)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) reloads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *fake) fail(msg string) {
	f.mu.Lock()
	f.failMsg = msg
	f.mu.Unlock()
}

func (f *fake) hold(b []byte) {
	f.mu.Lock()
	f.held = b
	f.mu.Unlock()
}

func (f *fake) alerts() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.posted...)
}

// run runs svc until the returned function is called (or the test ends).
func run(t testing.TB, svc *Service) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
