package grafana

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/dashboards"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const token = "glsa_test-token-5d1e"

// fakeGrafana serves the folder and dashboard calls of Grafana's HTTP API
// as Grafana documents them, checking the bearer token and the bodies.
type fakeGrafana struct {
	t  *testing.T
	mu sync.Mutex
	// folders by uid → title; dashboards by uid → the saved command.
	folders    map[string]string
	dashboards map[string]map[string]any
	calls      []string
	// fail answers the next calls with this status (then clears it after
	// failN calls).
	fail  int
	failN int
}

func newFake(t *testing.T) (*fakeGrafana, *httptest.Server) {
	f := &fakeGrafana{t: t, folders: map[string]string{}, dashboards: map[string]map[string]any{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeGrafana) failNext(status, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail, f.failN = status, n
}

func (f *fakeGrafana) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/json")
	reply := func(status int, v any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Header.Get("Authorization") != "Bearer "+token {
		reply(http.StatusUnauthorized, map[string]string{"message": "invalid API key"})
		return
	}
	if f.failN > 0 {
		f.failN--
		reply(f.fail, map[string]string{"message": "injected", "status": "version-mismatch"})
		return
	}
	var body map[string]any
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			// The client went away mid-body: the provisioner's context ends
			// when the test stops it, possibly during a resync's POST.
			// Grafana would drop such a request, and so does the fake.
			f.t.Logf("%s %s: body cut short: %v", r.Method, r.URL.Path, err)
			return
		}
		if len(b) > 0 {
			if err := json.Unmarshal(b, &body); err != nil {
				f.t.Errorf("%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
			}
		}
	}
	uid := strings.TrimPrefix(r.URL.Path, "/api/folders/")
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/folders":
		u, _ := body["uid"].(string)
		title, _ := body["title"].(string)
		if u == "" || title == "" {
			reply(http.StatusBadRequest, map[string]string{"message": "uid and title required"})
			return
		}
		if _, ok := f.folders[u]; ok {
			reply(http.StatusConflict, map[string]string{"message": "a folder with the same uid already exists"})
			return
		}
		f.folders[u] = title
		reply(http.StatusOK, map[string]any{"uid": u, "title": title, "version": 1})
	case r.Method == http.MethodGet && r.URL.Path == "/api/folders":
		if r.URL.Query().Get("limit") == "" || r.URL.Query().Get("page") == "" {
			f.t.Errorf("GET /api/folders without limit and page: %s", r.URL.RawQuery)
		}
		var list []map[string]any
		if r.URL.Query().Get("page") == "1" {
			for u, title := range f.folders {
				list = append(list, map[string]any{"uid": u, "title": title})
			}
		}
		reply(http.StatusOK, list)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/folders/"):
		title, ok := f.folders[uid]
		if !ok {
			reply(http.StatusNotFound, map[string]string{"message": "folder not found"})
			return
		}
		reply(http.StatusOK, map[string]any{"uid": uid, "title": title, "version": 1})
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/folders/"):
		if body["overwrite"] != true {
			f.t.Errorf("PUT %s without overwrite: %v", r.URL.Path, body)
		}
		f.folders[uid], _ = body["title"].(string)
		reply(http.StatusOK, map[string]any{"uid": uid, "title": f.folders[uid], "version": 2})
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/folders/"):
		if _, ok := f.folders[uid]; !ok {
			reply(http.StatusNotFound, map[string]string{"message": "folder not found"})
			return
		}
		delete(f.folders, uid)
		for du, d := range f.dashboards {
			if d["folderUid"] == uid {
				delete(f.dashboards, du)
			}
		}
		reply(http.StatusOK, map[string]any{"message": "Folder deleted"})
	case r.Method == http.MethodPost && r.URL.Path == "/api/dashboards/db":
		d, _ := body["dashboard"].(map[string]any)
		folder, _ := body["folderUid"].(string)
		du, _ := d["uid"].(string)
		if du == "" || body["overwrite"] != true {
			f.t.Errorf("POST /api/dashboards/db: want {dashboard: {uid}, folderUid, overwrite: true}, got %v", body)
		}
		if _, ok := f.folders[folder]; !ok {
			reply(http.StatusBadRequest, map[string]string{"message": "folder not found"})
			return
		}
		f.dashboards[du] = body
		reply(http.StatusOK, map[string]any{"uid": du, "status": "success", "version": 1})
	default:
		f.t.Errorf("unexpected call %s %s", r.Method, r.URL.Path)
		reply(http.StatusNotFound, map[string]string{"message": "not found"})
	}
}

func (f *fakeGrafana) snapshot() (map[string]string, map[string]map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	folders := map[string]string{}
	for k, v := range f.folders {
		folders[k] = v
	}
	ds := map[string]map[string]any{}
	for k, v := range f.dashboards {
		ds[k] = v
	}
	return folders, ds
}

func newProvisioner(t *testing.T, url, tok string) *Provisioner {
	t.Helper()
	cfg := DefaultConfig()
	cfg.URL, cfg.Token = url, secret.String(tok)
	cfg.RetryInterval = 20 * time.Millisecond
	p, err := New(cfg, etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSync(t *testing.T) {
	f, srv := newFake(t)
	p := newProvisioner(t, srv.URL, token)
	ctx := t.Context()
	a := tenancy.Project{ID: "0123456789abcdef", Name: "Plant A"}
	b := tenancy.Project{ID: "fedcba9876543210", Name: "Plant B"}
	f.mu.Lock()
	f.folders["someone-elses"] = "Not ecp's"
	f.mu.Unlock()

	steps := []struct {
		name     string
		projects []tenancy.Project
		folders  map[string]string
	}{
		{"create", []tenancy.Project{a, b}, map[string]string{"ecp-p-0123456789abcdef": "Plant A", "ecp-p-fedcba9876543210": "Plant B", "someone-elses": "Not ecp's"}},
		{"rename", []tenancy.Project{{ID: a.ID, Name: "Plant A (north)"}, b}, map[string]string{"ecp-p-0123456789abcdef": "Plant A (north)", "ecp-p-fedcba9876543210": "Plant B", "someone-elses": "Not ecp's"}},
		{"delete", []tenancy.Project{b}, map[string]string{"ecp-p-fedcba9876543210": "Plant B", "someone-elses": "Not ecp's"}},
		{"idempotent", []tenancy.Project{b}, map[string]string{"ecp-p-fedcba9876543210": "Plant B", "someone-elses": "Not ecp's"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := p.Sync(ctx, st.projects); err != nil {
				t.Fatal(err)
			}
			folders, ds := f.snapshot()
			if len(folders) != len(st.folders) {
				t.Fatalf("folders %v; want %v", folders, st.folders)
			}
			for k, v := range st.folders {
				if folders[k] != v {
					t.Fatalf("folders %v; want %v", folders, st.folders)
				}
			}
			if len(ds) != 3*len(st.projects) {
				t.Fatalf("%d dashboards; want %d", len(ds), 3*len(st.projects))
			}
			for _, pr := range st.projects {
				for _, s := range dashboards.Specs() {
					params := dashboards.Params{Project: pr.ID, ProjectName: pr.Name}
					cmd := ds[s.UID(params)]
					if cmd == nil || cmd["folderUid"] != FolderUID(pr.ID) {
						t.Fatalf("dashboard %s of %s: %v", s.Name, pr.ID, cmd)
					}
					d := cmd["dashboard"].(map[string]any)
					if d["title"] != s.Title(params) {
						t.Errorf("title %v; want %q", d["title"], s.Title(params))
					}
					vars := d["templating"].(map[string]any)["list"].([]any)
					preset := false
					for _, v := range vars {
						v := v.(map[string]any)
						if v["name"] == "project" {
							preset = v["current"].(map[string]any)["value"] == pr.ID
						}
					}
					if !preset {
						t.Errorf("dashboard %s: project variable not preset to %s", s.Name, pr.ID)
					}
				}
			}
		})
	}
}

func TestSyncErrors(t *testing.T) {
	pr := []tenancy.Project{{ID: "0123456789abcdef", Name: "Plant A"}}
	t.Run("401", func(t *testing.T) {
		_, srv := newFake(t)
		p := newProvisioner(t, srv.URL, "wrong-token")
		err := p.Sync(t.Context(), pr)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("err %v; want Grafana's 401", err)
		}
		if strings.Contains(err.Error(), "wrong-token") {
			t.Fatalf("the error reveals the token: %v", err)
		}
	})
	t.Run("412", func(t *testing.T) {
		f, srv := newFake(t)
		p := newProvisioner(t, srv.URL, token)
		f.failNext(http.StatusPreconditionFailed, 1)
		err := p.Sync(t.Context(), pr)
		if err == nil || !strings.Contains(err.Error(), "412") {
			t.Fatalf("err %v; want Grafana's 412", err)
		}
		if err := p.Sync(t.Context(), pr); err != nil {
			t.Fatalf("the next sync: %v", err)
		}
	})
}

// TestRunRetries runs the leader loop against etcd: it provisions the
// projects in etcd, retries after Grafana's 5xx, and follows a new project.
func TestRunRetries(t *testing.T) {
	f, srv := newFake(t)
	f.failNext(http.StatusServiceUnavailable, 2)
	p := newProvisioner(t, srv.URL, token)
	store := tenancy.NewStore(p.cli)
	org, err := store.CreateOrg(t.Context(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	first, err := store.CreateProject(t.Context(), org.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFolders(t, f, FolderUID(first.ID))
	if n := testutil.ToFloat64(p.failures); n < 1 {
		t.Errorf("ecp_grafana_sync_failures_total %v after a 503; want ≥ 1", n)
	}
	// The gauge is set when the sync that created the folders returns, a
	// moment after the fake saw its last request.
	waitFor(t, "ecp_grafana_last_sync_success 1 after the retry", func() bool { return testutil.ToFloat64(p.success) == 1 })
	second, err := store.CreateProject(t.Context(), org.ID, "second")
	if err != nil {
		t.Fatal(err)
	}
	waitFolders(t, f, FolderUID(first.ID), FolderUID(second.ID))
}

// waitFolders waits (bounded) until the fake holds exactly these folders.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitFolders(t *testing.T, f *fakeGrafana, uids ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		folders, ds := f.snapshot()
		ok := len(folders) == len(uids) && len(ds) == 3*len(uids)
		for _, u := range uids {
			_, has := folders[u]
			ok = ok && has
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("folders %v, %d dashboards; want %v", folders, len(ds), uids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
