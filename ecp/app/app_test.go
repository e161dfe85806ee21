package app

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/clusters/clusterstest"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/openapi"
	"github.com/ecpio/ecp/ecp/quota"
)

type apiError struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Field     string `json:"field"`
		Remaining *int   `json:"remaining"`
		Ceiling   *int   `json:"ceiling"`
	} `json:"error"`
}

type clusterJSON struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Project        string  `json:"project"`
	State          string  `json:"state"`
	ServiceURL     string  `json:"serviceUrl"`
	MaxConnections int     `json:"maxConnections"`
	ManagedSince   *string `json:"managedSince"`
}

// setupProject creates an org and a project as admin and returns the
// admin token and the project id.
func setupProject(t *testing.T, h *harness) (string, string) {
	t.Helper()
	admin := h.login("admin", testAdminPassword)
	org := h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "o"}))
	project := h.id(h.must(201, "POST", "/api/v1/orgs/"+org+"/projects", admin, map[string]string{"name": "p"}))
	return admin, project
}

func TestReadyOnlyOnceRunning(t *testing.T) {
	opts := testOptions(t)
	opts.fleet = clusterstest.New()
	a, err := New(opts, discardLogger(), newRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Stop(t.Context()) }()
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/ready", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/-/ready before Run = %d, want 503", rec.Code)
	}
	rec = httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/-/healthy", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/-/healthy = %d, want 200", rec.Code)
	}
	if err := a.Stop(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop = %v, want nil (idempotent)", err)
	}
}

func TestValidationNamesTheField(t *testing.T) {
	h := start(t, testOptions(t))
	admin, project := setupProject(t, h)
	cluster := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	tests := []struct {
		name, method, path string
		body               any
		status             int
		field              string
	}{
		{"login without password", "POST", "/api/v1/login", map[string]string{"username": "admin"}, 400, "password"},
		{"login wrong password", "POST", "/api/v1/login", map[string]string{"username": "admin", "password": "wrong-one"}, 401, ""},
		{"login unknown user", "POST", "/api/v1/login", map[string]string{"username": "ghost", "password": "wrong-one"}, 401, ""},
		{"user bad name", "POST", "/api/v1/users", map[string]string{"username": "a b", "password": "long-enough"}, 400, "username"},
		{"user short password", "POST", "/api/v1/users", map[string]string{"username": "ab", "password": "short"}, 400, "password"},
		{"user exists", "POST", "/api/v1/users", map[string]string{"username": "admin", "password": "long-enough"}, 409, ""},
		{"unknown field", "POST", "/api/v1/orgs", map[string]any{"name": "x", "color": "red"}, 400, ""},
		{"not json", "POST", "/api/v1/orgs", "{", 400, ""},
		{"org empty name", "POST", "/api/v1/orgs", map[string]string{"name": ""}, 400, "name"},
		{"org slash", "POST", "/api/v1/orgs", map[string]string{"name": "a/b"}, 400, "name"},
		{"org duplicate", "POST", "/api/v1/orgs", map[string]string{"name": "o"}, 409, ""},
		{"binding bad role", "POST", "/api/v1/role-bindings", map[string]string{"username": "admin", "role": "owner"}, 400, "role"},
		{"binding org-admin without org", "POST", "/api/v1/role-bindings", map[string]string{"username": "admin", "role": "org-admin"}, 400, "org"},
		{"binding project role without project", "POST", "/api/v1/role-bindings", map[string]string{"username": "admin", "role": "project-viewer"}, 400, "project"},
		{"binding unknown project", "POST", "/api/v1/role-bindings", map[string]string{"username": "admin", "role": "project-viewer", "project": "0123456789abcdef"}, 404, "project"},
		{"binding unknown user", "POST", "/api/v1/role-bindings", map[string]string{"username": "ghost", "role": "project-viewer", "project": project}, 404, "username"},
		{"last system admin", "DELETE", "/api/v1/role-bindings", map[string]string{"username": "admin", "role": "system-admin"}, 409, ""},
		{"token without name", "POST", "/api/v1/api-tokens", map[string]string{}, 400, "name"},
		{"token expired", "POST", "/api/v1/api-tokens", map[string]string{"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}, 400, "expiresAt"},
		{"cluster no name", "POST", "/api/v1/projects/" + project + "/clusters", map[string]string{"serviceUrl": "http://e:18083"}, 400, "name"},
		{"cluster long name", "POST", "/api/v1/projects/" + project + "/clusters", map[string]string{"name": strings.Repeat("x", 201)}, 400, "name"},
		{"cluster bad url", "POST", "/api/v1/projects/" + project + "/clusters", map[string]string{"name": "c", "serviceUrl": "ftp://x"}, 400, "serviceUrl"},
		{"cluster url with credentials", "POST", "/api/v1/projects/" + project + "/clusters", map[string]string{"name": "c", "serviceUrl": "http://u:p@x"}, 400, "serviceUrl"},
		{"patch nothing", "PATCH", "/api/v1/clusters/" + cluster, map[string]string{}, 400, ""},
		{"patch bad url", "PATCH", "/api/v1/clusters/" + cluster, map[string]string{"serviceUrl": "not a url"}, 400, "serviceUrl"},
		{"patch max connections", "PATCH", "/api/v1/clusters/" + cluster, map[string]int{"maxConnections": 5}, 400, ""},
		{"max connections missing", "PUT", "/api/v1/clusters/" + cluster + "/max-connections", map[string]string{}, 400, "maxConnections"},
		{"max connections zero", "PUT", "/api/v1/clusters/" + cluster + "/max-connections", map[string]int{"maxConnections": 0}, 400, "maxConnections"},
		{"max connections string", "PUT", "/api/v1/clusters/" + cluster + "/max-connections", map[string]string{"maxConnections": "5"}, 400, "maxConnections"},
		{"transfer without project", "POST", "/api/v1/clusters/" + cluster + "/transfer", map[string]string{}, 400, "project"},
		{"transfer to same project", "POST", "/api/v1/clusters/" + cluster + "/transfer", map[string]string{"project": project}, 400, "project"},
		{"transfer to unknown project", "POST", "/api/v1/clusters/" + cluster + "/transfer", map[string]string{"project": "0123456789abcdef"}, 404, "project"},
		{"dashboard without service url", "GET", "/api/v1/clusters/" + cluster + "/dashboard", nil, 409, ""},
		{"unknown cluster", "GET", "/api/v1/clusters/0123456789abcdef", nil, 404, ""},
		{"malformed cluster id", "GET", "/api/v1/clusters/NOT_AN_ID", nil, 404, ""},
		{"unknown route", "GET", "/api/v1/nothing", nil, 404, ""},
		{"wrong method", "PUT", "/api/v1/orgs", map[string]string{}, 405, ""},
		{"audit bad limit", "GET", "/api/v1/audit?limit=0", nil, 400, "limit"},
		{"bad state filter", "GET", "/api/v1/clusters?state=sleeping", nil, 400, "state"},
		{"bad bearer", "GET", "/api/v1/orgs", nil, 401, ""},
		{"download unknown arch", "GET", "/downloads/agent-exporter/linux/mips", nil, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := admin
			if tc.name == "bad bearer" {
				token = "ecps_not-a-session"
			}
			r := h.do(tc.method, tc.path, token, tc.body)
			if r.status != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, r.status, r.body, tc.status)
			}
			var e apiError
			r.decode(t, &e)
			if e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("error envelope without code or message: %s", r.body)
			}
			if e.Error.Field != tc.field {
				t.Fatalf("field = %q, want %q (%s)", e.Error.Field, tc.field, r.body)
			}
		})
	}
}

func TestDownloads(t *testing.T) {
	opts := testOptions(t)
	opts.DownloadsDir = filepath.Join(t.TempDir(), "missing")
	h := start(t, opts)
	r := h.must(404, "GET", "/downloads/agent-exporter/linux/amd64", "", nil)
	if !strings.Contains(string(r.body), "make dist") {
		t.Fatalf("missing binary message does not name make dist: %s", r.body)
	}
	if err := os.MkdirAll(opts.DownloadsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(opts.DownloadsDir, "agent-exporter-linux-arm"), []byte("ELF-arm"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = h.must(200, "GET", "/downloads/agent-exporter/linux/arm", "", nil)
	if string(r.body) != "ELF-arm" || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("download = %q (%s)", r.body, r.header.Get("Content-Type"))
	}
}

func TestClusterLifecycle(t *testing.T) {
	opts := testOptions(t)
	opts.ExternalURL = "https://ecp.example:8443"
	h := start(t, opts)
	admin, project := setupProject(t, h)
	var c clusterJSON
	r := h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "prod", "serviceUrl": "http://emqx.example:18083"})
	r.decode(t, &c)
	if c.State != "created" || c.MaxConnections != 10 || c.Project != project || c.ManagedSince != nil {
		t.Fatalf("new cluster = %+v, want created with 10 connections and no managedSince", c)
	}
	if r.header.Get("Location") != "/api/v1/clusters/"+c.ID {
		t.Fatalf("Location = %q", r.header.Get("Location"))
	}
	var lic quota.Usage
	h.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.Allocated != 10 || lic.TotalConnections != quota.DefaultTotalConnections {
		t.Fatalf("licence = %+v, want 10 allocated", lic)
	}
	h.must(200, "PATCH", "/api/v1/clusters/"+c.ID, admin, map[string]string{"name": "prod-eu"}).decode(t, &c)
	if c.Name != "prod-eu" || c.ServiceURL != "http://emqx.example:18083" {
		t.Fatalf("after patch %+v", c)
	}
	r = h.must(302, "GET", "/api/v1/clusters/"+c.ID+"/dashboard", admin, nil)
	if r.header.Get("Location") != "http://emqx.example:18083" {
		t.Fatalf("dashboard redirect to %q", r.header.Get("Location"))
	}

	var reg struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expiresAt"`
		Commands  []struct {
			Arch, Download, Chmod, Run, Register, Script string
		} `json:"commands"`
	}
	h.must(201, "POST", "/api/v1/clusters/"+c.ID+"/registration", admin, nil).decode(t, &reg)
	if reg.Token == "" || reg.ExpiresAt == "" || len(reg.Commands) != 3 {
		t.Fatalf("registration = %+v", reg)
	}
	var arches []string
	for _, cmd := range reg.Commands {
		arches = append(arches, cmd.Arch)
		if !strings.Contains(cmd.Download, "https://ecp.example:8443/downloads/agent-exporter/linux/"+cmd.Arch) {
			t.Errorf("download command %q does not use the external URL", cmd.Download)
		}
		for _, want := range []string{"--ecp-url https://ecp.example:8443", "--token " + reg.Token, "--username", "--dashboard-url http://emqx.example:18083", "--api-url http://emqx.example:18083"} {
			if !strings.Contains(cmd.Register, want) {
				t.Errorf("register command %q lacks %q", cmd.Register, want)
			}
		}
		if strings.Contains(cmd.Register, "--password") {
			t.Errorf("register command %q puts the password on the command line", cmd.Register)
		}
		if !strings.Contains(cmd.Script, cmd.Chmod) || !strings.Contains(cmd.Script, cmd.Run) {
			t.Errorf("script %q misses steps", cmd.Script)
		}
	}
	if !slices.Equal(arches, []string{"amd64", "arm64", "arm"}) {
		t.Fatalf("arches %v", arches)
	}
	var again struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+c.ID+"/registration", admin, nil).decode(t, &again)
	if again.Token == reg.Token {
		t.Fatal("re-registration returned the same token")
	}

	// Transfer to another project of the same org.
	var orgs struct{ Items []struct{ ID string } }
	h.must(200, "GET", "/api/v1/orgs", admin, nil).decode(t, &orgs)
	other := h.id(h.must(201, "POST", "/api/v1/orgs/"+orgs.Items[0].ID+"/projects", admin, map[string]string{"name": "q"}))
	h.must(200, "POST", "/api/v1/clusters/"+c.ID+"/transfer", admin, map[string]string{"project": other}).decode(t, &c)
	if c.Project != other {
		t.Fatalf("after transfer project = %s, want %s", c.Project, other)
	}
	var list struct{ Items []clusterJSON }
	h.must(200, "GET", "/api/v1/projects/"+project+"/clusters", admin, nil).decode(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("old project still lists %v", list.Items)
	}
	h.must(200, "GET", "/api/v1/projects/"+other+"/clusters", admin, nil).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != c.ID {
		t.Fatalf("new project lists %v", list.Items)
	}

	h.must(204, "DELETE", "/api/v1/clusters/"+c.ID, admin, nil)
	h.must(404, "GET", "/api/v1/clusters/"+c.ID, admin, nil)
	if !slices.Contains(h.fleet.Forgotten(), c.ID) {
		t.Fatal("delete did not tell fleet to forget the cluster")
	}
	h.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.Allocated != 0 {
		t.Fatalf("after delete allocated = %d, want 0", lic.Allocated)
	}
}

func TestListsShowOnlyWhatTheCallerMaySee(t *testing.T) {
	h := start(t, testOptions(t))
	w := newTenants(t, h)
	a1c := w.cluster(false)
	b1c := w.cluster(true)
	ids := func(r reply) []string {
		var l struct {
			Items []struct{ ID, Username string }
		}
		r.decode(t, &l)
		var out []string
		for _, it := range l.Items {
			out = append(out, it.ID+it.Username)
		}
		slices.Sort(out)
		return out
	}
	sorted := func(s ...string) []string { slices.Sort(s); return s }
	tests := []struct {
		name, path string
		role       int
		want       []string
	}{
		{"orgs of no-binding", "/api/v1/orgs", nobody, nil},
		{"orgs of viewer", "/api/v1/orgs", viewer, []string{w.orgA}},
		{"orgs of admin", "/api/v1/orgs", sysAdm, sorted(w.orgA, w.orgB)},
		{"projects of org admin", "/api/v1/projects", orgAdm, sorted(w.a1, w.a2)},
		{"projects of no-binding", "/api/v1/projects", nobody, nil},
		{"clusters of A1 for viewer", "/api/v1/projects/" + w.a1 + "/clusters", viewer, []string{a1c}},
		{"all clusters for viewer", "/api/v1/clusters", viewer, []string{a1c}},
		{"all clusters for no-binding", "/api/v1/clusters", nobody, nil},
		{"running clusters for viewer", "/api/v1/clusters?state=running", viewer, nil},
		{"all clusters for admin", "/api/v1/clusters?state=created", sysAdm, sorted(a1c, b1c)},
		{"users of no-binding", "/api/v1/users", nobody, []string{"nobody"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(h.must(200, "GET", tc.path, w.token[tc.role], nil))
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%s = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

func TestConcurrentMaxConnectionsAcrossReplicas(t *testing.T) {
	srv := etcdtest.Start(t)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	opts.Licence = quota.Licence{TotalConnections: 1000, MaxPerCluster: 300}
	h1 := start(t, opts)
	h2 := start(t, opts)
	admin, project := setupProject(t, h1)
	var ids []string
	for i := range 10 {
		ids = append(ids, h1.id(h1.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": fmt.Sprint("c", i)})))
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for i := range 200 {
		h := h1
		if i%2 == 1 {
			h = h2
		}
		n := 1 + rand.IntN(350)
		id := ids[i%len(ids)]
		wg.Go(func() {
			r := h.do("PUT", "/api/v1/clusters/"+id+"/max-connections", admin, map[string]int{"maxConnections": n})
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
			if r.status == 422 {
				var e apiError
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Remaining == nil || e.Error.Ceiling == nil ||
					*e.Error.Ceiling != 300 || e.Error.Field != "maxConnections" || !strings.Contains(e.Error.Message, "maxConnections") {
					t.Errorf("422 without remaining and ceiling: %s", r.body)
				}
			} else if r.status != 200 {
				t.Errorf("PUT max-connections %d = %d %s", n, r.status, r.body)
			}
		})
	}
	wg.Wait()
	sum := 0
	for _, id := range ids {
		var c clusterJSON
		h2.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
		sum += c.MaxConnections
	}
	var lic quota.Usage
	h2.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.Allocated != sum || sum > 1000 {
		t.Fatalf("allocated %d, sum of clusters %d, total 1000", lic.Allocated, sum)
	}
	if statuses[200] == 0 || statuses[422] == 0 {
		t.Fatalf("statuses %v: want both applied and refused changes", statuses)
	}
	t.Logf("200 concurrent changes over 2 replicas: %v; allocated %d of 1000", statuses, sum)
}

func TestReplicaSharesState(t *testing.T) {
	srv := etcdtest.Start(t)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	// Both replicas run the real agent side (each with its own election
	// and watch) to prove they coexist on one etcd.
	h1, h2 := startReal(t, opts), startReal(t, opts)
	admin, project := setupProject(t, h1)
	id := h1.id(h1.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	// The session made on replica 1 works on replica 2.
	var c clusterJSON
	h2.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
	if c.Name != "c" {
		t.Fatalf("replica 2 sees %+v", c)
	}
	// A token issued on replica 2 registers an agent on replica 1.
	var reg struct{ Token string }
	h2.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	var agent agentproto.RegisterResponse
	registerAgent(h1, reg.Token).decode(t, &agent)
	if agent.ClusterID != id {
		t.Fatalf("registered for %q, want %q", agent.ClusterID, id)
	}
	h2.must(204, "DELETE", "/api/v1/clusters/"+id, admin, nil)
	h1.must(404, "GET", "/api/v1/clusters/"+id, admin, nil)
	if strings.Contains(h2.out.String(), "generated password") {
		t.Fatal("second replica generated an admin password although the admin exists")
	}
}

func TestRestartLosesNothing(t *testing.T) {
	opts := testOptions(t)
	opts.AdminPassword = "" // generated, printed once
	h := start(t, opts)
	out := h.out.String()
	_, pw, ok := strings.Cut(out, "generated password: ")
	if !ok {
		t.Fatalf("no generated password printed: %q", out)
	}
	pw, _, _ = strings.Cut(pw, "\n")
	if strings.Contains(h.logs.String(), pw) {
		t.Fatal("generated password reached the log")
	}
	admin := h.login("admin", pw)
	org := h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "o"}))
	project := h.id(h.must(201, "POST", "/api/v1/orgs/"+org+"/projects", admin, map[string]string{"name": "p"}))
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	h.must(200, "PUT", "/api/v1/clusters/"+id+"/max-connections", admin, map[string]int{"maxConnections": 77})
	var tok struct{ Token string }
	h.must(201, "POST", "/api/v1/api-tokens", admin, map[string]string{"name": "ci"}).decode(t, &tok)
	h.stop()

	h2 := start(t, opts)
	if h2.out.String() != "" {
		t.Fatalf("restart printed %q; the admin exists already", h2.out.String())
	}
	// Session, API token, password, cluster and allocation all survive.
	var c clusterJSON
	h2.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
	if c.MaxConnections != 77 || c.Project != project {
		t.Fatalf("after restart %+v", c)
	}
	h2.must(200, "GET", "/api/v1/orgs", tok.Token, nil)
	h2.login("admin", pw)
	var lic quota.Usage
	h2.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.Allocated != 77 {
		t.Fatalf("allocated after restart %d, want 77", lic.Allocated)
	}
}

func TestReloadChangesTheLicence(t *testing.T) {
	opts := testOptions(t)
	cfg := filepath.Join(t.TempDir(), "ecp.yml")
	write := func(s string) {
		if err := os.WriteFile(cfg, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("licence:\n  totalConnections: 500\n  maxPerCluster: 100\n")
	opts.ConfigFile = cfg
	h := start(t, opts)
	admin, _ := setupProject(t, h)
	var lic quota.Usage
	h.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.TotalConnections != 500 || lic.MaxPerCluster != 100 {
		t.Fatalf("licence from file = %+v", lic)
	}
	write("licence:\n  totalConnections: 800\n  maxPerCluster: 200\nregistration:\n  tokenTTL: 1h\n")
	h.must(200, "POST", "/-/reload", "", nil)
	h.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.TotalConnections != 800 || lic.MaxPerCluster != 200 {
		t.Fatalf("licence after reload = %+v", lic)
	}
	write("licence:\n  totalConnections: 800\n  maxPerClustr: 200\n")
	r := h.must(500, "POST", "/-/reload", "", nil)
	if !strings.Contains(string(r.body), "maxPerClustr") {
		t.Fatalf("reload error does not name the bad field: %s", r.body)
	}
	h.must(200, "GET", "/api/v1/licence", admin, nil).decode(t, &lic)
	if lic.TotalConnections != 800 {
		t.Fatalf("failed reload changed the licence: %+v", lic)
	}
	if v := testutil.ToFloat64(h.app.metrics.reloadOK); v != 0 {
		t.Fatalf("ecp_config_last_reload_successful = %v after a failed reload", v)
	}
}

func TestBadConfigFailsNew(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"unknown field", "licence:\n  total: 5\n", "field total not found"},
		{"ceiling over total", "licence:\n  totalConnections: 5\n  maxPerCluster: 6\n", "must not exceed"},
		{"zero ttl", "registration:\n  tokenTTL: 0s\n", "registration.tokenTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.ConfigFile = filepath.Join(t.TempDir(), "ecp.yml")
			if err := os.WriteFile(opts.ConfigFile, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			opts.fleet = clusterstest.New()
			_, err := New(opts, discardLogger(), newRegistry())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestAuditLog(t *testing.T) {
	h := start(t, testOptions(t))
	w := newTenants(t, h)
	c := w.cluster(false)
	w.cluster(true)
	h.must(200, "PUT", "/api/v1/clusters/"+c+"/max-connections", w.token[prjAdm], map[string]int{"maxConnections": 11})
	h.must(403, "DELETE", "/api/v1/clusters/"+c, w.token[viewer], nil)
	h.must(401, "POST", "/api/v1/login", "", map[string]string{"username": "a1-admin", "password": "wrong-password"})

	type rec struct {
		Actor, Method, Route, Project, Org, Target string
		Status                                     int
	}
	var all struct{ Items []rec }
	h.must(200, "GET", "/api/v1/audit?limit=1000", w.token[sysAdm], nil).decode(t, &all)
	find := slices.ContainsFunc[[]rec]
	if !find(all.Items, func(r rec) bool {
		return r.Actor == "a1-admin" && r.Route == "/api/v1/clusters/{id}/max-connections" && r.Status == 200 && r.Project == w.a1 && r.Target == "cluster/"+c
	}) {
		t.Errorf("no record of the max-connections change: %+v", all.Items)
	}
	if !find(all.Items, func(r rec) bool { return r.Actor == "a1-viewer" && r.Method == http.MethodDelete && r.Status == 403 }) {
		t.Error("refused delete not audited")
	}
	if !find(all.Items, func(r rec) bool { return r.Actor == "a1-admin" && r.Route == "/api/v1/login" && r.Status == 401 }) {
		t.Error("failed login not audited")
	}
	if find(all.Items, func(r rec) bool { return r.Method == http.MethodGet }) {
		t.Error("reads are audited")
	}
	// The org admin of A reads only A's records.
	var scoped struct{ Items []rec }
	h.must(200, "GET", "/api/v1/audit?limit=1000", w.token[orgAdm], nil).decode(t, &scoped)
	if len(scoped.Items) == 0 {
		t.Fatal("org admin sees no records")
	}
	for _, r := range scoped.Items {
		if r.Org != w.orgA && r.Project != w.a1 && r.Project != w.a2 {
			t.Errorf("org admin of A reads a record of another tenant: %+v", r)
		}
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	h := start(t, testOptions(t))
	admin, project := setupProject(t, h)
	userPassword := "users-secret-password"
	h.must(201, "POST", "/api/v1/users", admin, map[string]string{"username": "bob", "password": userPassword})
	bob := h.login("bob", userPassword)
	var tok struct{ Token string }
	h.must(201, "POST", "/api/v1/api-tokens", admin, map[string]string{"name": "ci"}).decode(t, &tok)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", tok.Token, map[string]string{"name": "c"}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)

	secrets := []string{testAdminPassword, userPassword, admin, bob, tok.Token, reg.Token}
	var seen []string
	for _, path := range []string{"/api/v1/users", "/api/v1/api-tokens", "/api/v1/audit?limit=1000", "/api/v1/clusters/" + id, "/api/v1/role-bindings"} {
		seen = append(seen, string(h.must(200, "GET", path, admin, nil).body))
	}
	seen = append(seen, string(h.must(200, "GET", "/metrics", "", nil).body))
	h.stop()
	seen = append(seen, h.logs.String())
	// What etcd holds is checked by TestStoredSecretsAreHashes.
	for _, s := range secrets {
		for _, text := range seen {
			if strings.Contains(text, s) {
				t.Fatalf("secret %q... leaked in %.200s", s[:6], text)
			}
		}
	}
	for _, text := range seen {
		if strings.Contains(text, "passwordHash") || strings.Contains(text, `"hash"`) {
			t.Fatalf("a hash leaked: %.300s", text)
		}
	}
}

func TestStoredSecretsAreHashes(t *testing.T) {
	srv := etcdtest.Start(t)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	h := start(t, opts)
	admin, _ := setupProject(t, h)
	var tok struct{ Token string }
	h.must(201, "POST", "/api/v1/api-tokens", admin, map[string]string{"name": "ci"}).decode(t, &tok)
	resp, err := etcdtest.ClientOf(t, srv).Get(t.Context(), "/", clientWithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		for _, s := range []string{testAdminPassword, admin, tok.Token, tok.Token[len(tok.Token)-20:]} {
			if strings.Contains(string(kv.Key), s) || strings.Contains(string(kv.Value), s) {
				t.Fatalf("etcd key %s holds a secret in clear", kv.Key)
			}
		}
	}
}

func TestMetricsLint(t *testing.T) {
	h := startReal(t, testOptions(t))
	admin, project := setupProject(t, h)
	h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"})
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	body := string(h.must(200, "GET", "/metrics", "", nil).body)
	for _, name := range []string{"ecp_licence_allocated_connections 10", "ecp_build_info", "ecp_http_request_duration_seconds_bucket", "ecp_logins_total", "ecp_audit_records_written_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if strings.Contains(body, `route="/api/v1/orgs/`) && !strings.Contains(body, `route="/api/v1/orgs/{org}/projects"`) {
		t.Error("latency labelled by raw path")
	}
}

func TestOpenAPIMatchesRouter(t *testing.T) {
	h := start(t, testOptions(t))
	documented := map[string]bool{}
	for _, op := range openapi.Operations() {
		documented[op.Method+" "+op.Path] = true
	}
	ops := []string{"GET /metrics", "GET /-/healthy", "HEAD /-/healthy", "GET /-/ready", "HEAD /-/ready", "POST /-/reload"}
	for _, key := range routeKeys(t, h.app.Router()) {
		if !documented[key] && !slices.Contains(ops, key) {
			t.Errorf("route %s is missing from the OpenAPI document (ecp/openapi)", key)
		}
	}
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	h.must(200, "GET", openapi.Path, "", nil).decode(t, &doc)
	if doc.OpenAPI != "3.0.3" || doc.Paths["/api/v1/clusters/{id}"]["patch"] == nil {
		t.Fatalf("served document is not the OpenAPI 3 document: %v", doc.OpenAPI)
	}
}

func TestPasswordChangeAndUserDeletion(t *testing.T) {
	h := start(t, testOptions(t))
	admin, project := setupProject(t, h)
	h.must(201, "POST", "/api/v1/users", admin, map[string]string{"username": "dave", "password": "dave-password"})
	h.must(201, "POST", "/api/v1/role-bindings", admin, map[string]string{"username": "dave", "role": "project-admin", "project": project})
	first := h.login("dave", "dave-password")
	second := h.login("dave", "dave-password")
	var tok struct{ Token string }
	h.must(201, "POST", "/api/v1/api-tokens", second, map[string]string{"name": "ci"}).decode(t, &tok)

	h.must(400, "PUT", "/api/v1/users/dave/password", first, map[string]string{"password": "dave-password-2"})
	h.must(400, "PUT", "/api/v1/users/dave/password", first, map[string]string{"currentPassword": "wrong", "password": "dave-password-2"})
	h.must(204, "PUT", "/api/v1/users/dave/password", first, map[string]string{"currentPassword": "dave-password", "password": "dave-password-2"})
	h.must(200, "GET", "/api/v1/projects/"+project+"/clusters", first, nil) // the session that changed it lives on
	h.must(401, "GET", "/api/v1/projects/"+project+"/clusters", second, nil)
	h.must(401, "POST", "/api/v1/login", "", map[string]string{"username": "dave", "password": "dave-password"})
	h.login("dave", "dave-password-2")

	h.must(409, "DELETE", "/api/v1/users/admin", admin, nil)
	h.must(204, "DELETE", "/api/v1/users/dave", admin, nil)
	h.must(401, "GET", "/api/v1/orgs", first, nil)
	h.must(401, "GET", "/api/v1/orgs", tok.Token, nil)
	h.must(401, "POST", "/api/v1/login", "", map[string]string{"username": "dave", "password": "dave-password-2"})
	var bindings struct{ Items []struct{ Username string } }
	h.must(200, "GET", "/api/v1/role-bindings", admin, nil).decode(t, &bindings)
	for _, b := range bindings.Items {
		if b.Username == "dave" {
			t.Fatal("a binding of the deleted user remains")
		}
	}
	// A user of the same name made later starts with nothing.
	h.must(201, "POST", "/api/v1/users", admin, map[string]string{"username": "dave", "password": "dave-password-3"})
	dave := h.login("dave", "dave-password-3")
	h.must(404, "GET", "/api/v1/projects/"+project+"/clusters", dave, nil)
}

func TestLoginThrottled(t *testing.T) {
	h := start(t, testOptions(t))
	wrong := map[string]string{"username": "admin", "password": "not-the-password"}
	for range 6 {
		h.must(401, "POST", "/api/v1/login", "", wrong)
	}
	r := h.must(429, "POST", "/api/v1/login", "", map[string]string{"username": "admin", "password": testAdminPassword})
	if r.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
}

// TestNotReadyWhileEtcdIsDown: a replica whose etcd stops answering says
// 503 on /-/ready, so a load balancer sends its traffic elsewhere.
func TestNotReadyWhileEtcdIsDown(t *testing.T) {
	srv := etcdtest.Start(t)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	opts.EtcdProbeInterval = 20 * time.Millisecond
	opts.ShutdownTimeout = time.Second
	h := start(t, opts)
	for h.do("GET", "/-/ready", "", nil).status != 200 {
		runtime.Gosched()
	}
	srv.Close()
	for h.do("GET", "/-/ready", "", nil).status != 503 {
		runtime.Gosched()
	}
	if body := string(h.must(200, "GET", "/metrics", "", nil).body); !strings.Contains(body, "\necp_ready 0\n") {
		t.Fatal("ecp_ready is not 0 while etcd is down")
	}
}

// TestTakenPortFailsBeforeEtcd: the web address is taken before the
// embedded etcd starts, so a port in use fails at once and leaves the data
// directory untouched; etcd's own port-0 listeners then never race ecp for
// the port the operator chose (TestJourneyNewOperatorInBrowser once lost
// it to etcd's peer listener).
func TestTakenPortFailsBeforeEtcd(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	opts := testOptions(t)
	opts.ListenAddress = taken.Addr().String()
	_, err = New(opts, discardLogger(), newRegistry())
	if err == nil || !strings.Contains(err.Error(), "listen on "+opts.ListenAddress) {
		t.Fatalf("New on a taken port = %v, want an error naming %s", err, opts.ListenAddress)
	}
	for _, etcdOwn := range []string{"member", etcdserver.TLSDir} {
		if _, err := os.Stat(filepath.Join(opts.DataDir, etcdOwn)); err == nil {
			t.Errorf("the data directory holds etcd's %s after the refused start: etcd started before the port was checked", etcdOwn)
		}
	}
}
