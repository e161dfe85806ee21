package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/internal/secret"
)

const adminPassword = "admin-password-1"

// env is one ecp with the console, started in-process with ecp's own
// fleet, an org and two projects.
type env struct {
	t       testing.TB
	app     *app.App
	url     string
	admin   string // API token of the system admin
	org     string
	project string
	other   string // a second project
	cancel  context.CancelFunc
	done    chan error
}

func start(t testing.TB, mod func(*app.Options)) *env {
	t.Helper()
	e := startFresh(t, mod)
	e.org = e.id(e.api(201, "POST", "/api/v1/orgs", e.admin, map[string]string{"name": "acme"}))
	e.project = e.id(e.api(201, "POST", "/api/v1/orgs/"+e.org+"/projects", e.admin, map[string]string{"name": "factory"}))
	e.other = e.id(e.api(201, "POST", "/api/v1/orgs/"+e.org+"/projects", e.admin, map[string]string{"name": "lab"}))
	return e
}

// startFresh starts an ecp as a new operator finds it: the first system
// admin and nothing else.
func startFresh(t testing.TB, mod func(*app.Options)) *env {
	t.Helper()
	opts := app.DefaultOptions()
	opts.ListenAddress = "127.0.0.1:0"
	opts.DataDir = t.TempDir()
	opts.BcryptCost = bcrypt.MinCost
	opts.AdminPassword = secret.String(adminPassword)
	opts.Out = io.Discard
	if mod != nil {
		mod(&opts)
	}
	a, err := app.New(opts, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, app: a, url: a.URL(), cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-e.done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	e.admin = e.apiLogin("admin", adminPassword)
	return e
}

// api calls the REST API and fails the test unless the status is want.
func (e *env) api(want int, method, path, token string, body any) []byte {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, out, want)
	}
	return out
}

func (e *env) id(b []byte) string {
	e.t.Helper()
	var v struct{ ID string }
	if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
		e.t.Fatalf("no id in %s", b)
	}
	return v.ID
}

func (e *env) apiLogin(user, pw string) string {
	e.t.Helper()
	var v struct{ Token string }
	_ = json.Unmarshal(e.api(200, "POST", "/api/v1/login", "", map[string]string{"username": user, "password": pw}), &v)
	return v.Token
}

// user creates a user bound to role on project ("" for no binding).
func (e *env) user(name, role, project string) {
	e.t.Helper()
	e.api(201, "POST", "/api/v1/users", e.admin, map[string]string{"username": name, "password": name + "-password"})
	if role != "" {
		e.api(201, "POST", "/api/v1/role-bindings", e.admin, map[string]string{"username": name, "role": role, "project": project})
	}
}

// createCluster makes an entry through the API.
func (e *env) createCluster(project, name string) string {
	e.t.Helper()
	return e.id(e.api(201, "POST", "/api/v1/projects/"+project+"/clusters", e.admin, map[string]string{"name": name}))
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see them.
type browser struct {
	e      *env
	client *http.Client
	csrf   string
}

type page struct {
	status int
	body   string
	header http.Header
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(method, path string, form url.Values, header map[string]string) page {
	b.e.t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.e.url+path, rd)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(body), header: resp.Header}
	if m := csrfInput.FindStringSubmatch(p.body); m != nil && !strings.Contains(path, "login") {
		b.csrf = m[1]
	}
	return p
}

func (b *browser) get(path string) page { return b.do("GET", path, nil, nil) }

// post sends a form with the session's CSRF token.
func (b *browser) post(path string, form url.Values) page {
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" {
		form.Set("csrf", b.csrf)
	}
	return b.do("POST", path, form, nil)
}

func (b *browser) login(user, pw string) page {
	b.e.t.Helper()
	lp := b.get("/login")
	m := csrfInput.FindStringSubmatch(lp.body)
	if m == nil {
		b.e.t.Fatalf("login page without csrf field: %s", lp.body)
	}
	p := b.do("POST", "/login", url.Values{"csrf": {m[1]}, "username": {user}, "password": {pw}}, nil)
	if p.status == http.StatusSeeOther {
		// Pick up the session's CSRF token from the first page.
		b.get("/projects/" + b.e.project + "/clusters")
	}
	return p
}

func mustStatus(t testing.TB, p page, want int, what string) {
	t.Helper()
	if p.status != want {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, p.status, want, p.body)
	}
}

// agent plays the agent side of the wire contract: register with a token,
// then report a healthy EMQX.
type agent struct {
	e          *env
	cluster    string
	credential string
}

func (e *env) register(token string) *agent {
	e.t.Helper()
	var out agentproto.RegisterResponse
	b := e.api(200, "POST", agentproto.PathRegister, "", agentproto.RegisterRequest{
		Token: token, AgentVersion: "test", DashboardURL: "http://127.0.0.1:18083", APIURL: "http://127.0.0.1:18083",
	})
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatal(err)
	}
	return &agent{e: e, cluster: out.ClusterID, credential: out.Credential}
}

func (a *agent) report(abnormal ...agentproto.Resource) {
	a.e.t.Helper()
	a.e.api(200, "POST", agentproto.PathReport, a.credential, agentproto.ReportRequest{
		CollectedAt: time.Now(), AgentVersion: "test",
		EMQX: agentproto.EMQXStatus{Reachable: true, Version: "5.8.6", StartedAt: time.Now().Add(-time.Hour),
			Nodes:       []agentproto.Node{{Name: "emqx@127.0.0.1", Status: "running", Connections: 3, LiveConnections: 2}},
			Connections: 3, LiveConnections: 2, MaxConnections: 10,
			Rules:      agentproto.ResourceCounts{Total: 2, Healthy: 2},
			Connectors: agentproto.ResourceCounts{Total: 2, Healthy: 2 - len(abnormal)},
			Abnormal:   abnormal},
	})
}
