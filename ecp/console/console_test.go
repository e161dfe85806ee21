package console_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/console"
	"github.com/ecpio/ecp/ecp/quota"
)

func TestLoginLogoutAndExpiry(t *testing.T) {
	e := start(t, nil)
	b := e.browser()

	p := b.get("/projects/" + e.project + "/clusters")
	mustStatus(t, p, http.StatusSeeOther, "anonymous list")
	if loc := p.header.Get("Location"); !strings.HasPrefix(loc, "/login") || !strings.Contains(loc, "next=") {
		t.Fatalf("anonymous list redirects to %q, want the login page with next", loc)
	}

	p = b.login("admin", "wrong-password")
	mustStatus(t, p, http.StatusUnauthorized, "wrong password")
	if !strings.Contains(p.body, "username or password is wrong") {
		t.Fatalf("wrong password page lacks the API's message:\n%s", p.body)
	}

	p = b.login("admin", adminPassword)
	mustStatus(t, p, http.StatusSeeOther, "login")
	cookie := p.header.Get("Set-Cookie")
	for _, attr := range []string{console.SessionCookie + "=ecps_", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(strings.Join(p.header.Values("Set-Cookie"), "\n"), attr) {
			t.Fatalf("session cookie %q lacks %s", cookie, attr)
		}
	}
	p = b.get("/")
	mustStatus(t, p, http.StatusSeeOther, "home")
	if loc := p.header.Get("Location"); !strings.Contains(loc, "/clusters") {
		t.Fatalf("home redirects to %q, want a project's clusters", loc)
	}
	mustStatus(t, b.get("/projects/"+e.project+"/clusters"), http.StatusOK, "list")

	// Logout ends the session on the server, not only in the browser.
	var session string
	for _, c := range b.client.Jar.Cookies(mustURL(t, e.url)) {
		if c.Name == console.SessionCookie {
			session = c.Value
		}
	}
	p = b.post("/logout", nil)
	mustStatus(t, p, http.StatusSeeOther, "logout")
	e.api(401, "GET", "/api/v1/orgs", session, nil)

	// An expired session goes back to login with a message.
	b2 := e.browser()
	mustStatus(t, b2.login("admin", adminPassword), http.StatusSeeOther, "login again")
	// Sessions expire by their etcd lease removing the key; remove it now
	// rather than wait for the TTL.
	if _, err := e.app.EtcdClient().Delete(t.Context(), auth.SessionsPrefix, clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	p = b2.get("/projects/" + e.project + "/clusters")
	mustStatus(t, p, http.StatusSeeOther, "list after expiry")
	if loc := p.header.Get("Location"); !strings.Contains(loc, "reason=expired") {
		t.Fatalf("expired session redirects to %q, want reason=expired", loc)
	}
	p = b2.get(p.header.Get("Location"))
	if !strings.Contains(p.body, "Your session has expired") {
		t.Fatalf("login page after expiry lacks the message:\n%s", p.body)
	}
	// htmx requests are told to navigate rather than given a login form.
	p = b2.do("GET", "/projects/"+e.project+"/clusters", nil, map[string]string{"HX-Request": "true", "HX-Target": "cluster-table"})
	if !strings.HasPrefix(p.header.Get("HX-Redirect"), "/login") {
		t.Fatalf("htmx request without session: HX-Redirect %q, want /login", p.header.Get("HX-Redirect"))
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCSRFRefused(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	id := e.createCluster(e.project, "c1")
	for _, tc := range []struct {
		name string
		path string
		form url.Values
	}{
		{"create", "/projects/" + e.project + "/clusters", url.Values{"name": {"evil"}}},
		{"max connections", "/projects/" + e.project + "/clusters/" + id + "/max-connections", url.Values{"maxConnections": {"20"}}},
		{"delete", "/projects/" + e.project + "/clusters/" + id + "/delete", url.Values{"confirm": {"c1"}}},
		{"logout", "/logout", url.Values{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, token := range []string{"", "forged"} {
				form := url.Values{}
				for k, v := range tc.form {
					form[k] = v
				}
				if token != "" {
					form.Set("csrf", token)
				}
				p := b.do("POST", tc.path, form, nil)
				mustStatus(t, p, http.StatusForbidden, tc.name+" with csrf "+token)
			}
		})
	}
	// Nothing happened.
	body := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/clusters", e.admin, nil))
	if strings.Contains(body, "evil") || !strings.Contains(body, `"maxConnections":10`) {
		t.Fatalf("a refused form changed something: %s", body)
	}
	// The login form refuses a post without its own token too.
	p := e.browser().do("POST", "/login", url.Values{"username": {"admin"}, "password": {adminPassword}}, nil)
	mustStatus(t, p, http.StatusForbidden, "login without token")
}

func TestRolesSeeOnlyWhatTheyMayUse(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "line-1")
	e.createCluster(e.other, "secret-lab")
	e.user("alice", "project-admin", e.project)
	e.user("victor", "project-viewer", e.project)
	e.user("olga", "project-viewer", e.other)
	writeControls := []string{"Add cluster", "/max-connections", "/delete", `id="transfer-title"`, "/registration", "/edit"}
	for _, tc := range []struct {
		user      string
		listCode  int
		canWrite  bool
		seesOther bool
	}{
		{"admin", 200, true, true},
		{"alice", 200, true, false},
		{"victor", 200, false, false},
		{"olga", 404, false, false}, // the 404 page has no switcher
	} {
		t.Run(tc.user, func(t *testing.T) {
			b := e.browser()
			pw := tc.user + "-password"
			if tc.user == "admin" {
				pw = adminPassword
			}
			mustStatus(t, b.login(tc.user, pw), http.StatusSeeOther, "login")
			list := b.get("/projects/" + e.project + "/clusters")
			mustStatus(t, list, tc.listCode, "list")
			if strings.Contains(list.body, "secret-lab") {
				t.Fatal("a cluster of another project is listed")
			}
			if got := strings.Contains(list.body, `value="`+e.other+`"`); got != tc.seesOther {
				t.Fatalf("switcher offers the other project = %v, want %v", got, tc.seesOther)
			}
			if tc.listCode != 200 {
				mustStatus(t, b.get("/projects/"+e.project+"/clusters/"+id), http.StatusNotFound, "detail of invisible cluster")
				return
			}
			if !strings.Contains(list.body, "line-1") {
				t.Fatalf("list lacks the project's cluster:\n%s", list.body)
			}
			detail := b.get("/projects/" + e.project + "/clusters/" + id)
			mustStatus(t, detail, 200, "detail")
			for _, ctl := range writeControls {
				page := detail.body
				if ctl == "Add cluster" {
					page = list.body
				}
				if got := strings.Contains(page, ctl); got != tc.canWrite {
					t.Errorf("control %q shown = %v, want %v", ctl, got, tc.canWrite)
				}
			}
			if !tc.canWrite {
				// Forced anyway: the API refuses, and the page says why.
				p := b.post("/projects/"+e.project+"/clusters/"+id+"/max-connections", url.Values{"maxConnections": {"20"}})
				mustStatus(t, p, http.StatusForbidden, "viewer changing max connections")
				if !strings.Contains(p.body, "needs project-admin") {
					t.Fatalf("refusal without the API's reason:\n%s", p.body)
				}
			}
		})
	}
}

func TestAddClusterShowsGuideWithoutPasswordField(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")

	p := b.post("/projects/"+e.project+"/clusters", url.Values{"name": {""}})
	mustStatus(t, p, http.StatusBadRequest, "empty name")
	if !strings.Contains(p.body, `id="name-error"`) || !strings.Contains(p.body, "name is required") {
		t.Fatalf("empty name: error not shown at the field:\n%s", p.body)
	}

	p = b.post("/projects/"+e.project+"/clusters", url.Values{"name": {"edge-1"}, "serviceUrl": {"http://emqx.example:18083"}})
	mustStatus(t, p, http.StatusOK, "create")
	for _, want := range []string{"Register edge-1", "linux/amd64", "linux/arm64", "linux/arm\nchmod", "--token ", "expires at", "http://emqx.example:18083"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("guide lacks %q", want)
		}
	}
	// The EMQX form's inputs are nameless and outside any form, so no
	// submission can carry them.
	head, guide, ok := strings.Cut(p.body, `id="emqx-form"`)
	if !ok {
		t.Fatal("guide without the EMQX form")
	}
	guide, _, _ = strings.Cut(guide, "</section>")
	if regexp.MustCompile(`<input[^>]*\bname=`).MatchString(guide) || strings.Contains(guide, "<form") {
		t.Fatalf("EMQX form fields could be submitted:\n%s", guide)
	}
	if strings.Count(head, "<form") != strings.Count(head, "</form>") {
		t.Fatal("the EMQX form sits inside a form")
	}
}

func TestMaxConnectionsRefusalShownInline(t *testing.T) {
	e := start(t, func(o *app.Options) { o.Licence = quota.Licence{TotalConnections: 100, MaxPerCluster: 50} })
	id := e.createCluster(e.project, "c1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/clusters/" + id
	detail := b.get(path)
	if !strings.Contains(detail.body, "90 remaining") {
		t.Fatalf("detail does not show the remaining quota:\n%s", detail.body)
	}
	for _, tc := range []struct {
		value  string
		status int
		want   string
	}{
		{"abc", 400, "whole number"},
		{"60", 422, "50"},
		{"40", 303, ""},
	} {
		t.Run(tc.value, func(t *testing.T) {
			p := b.post(path+"/max-connections", url.Values{"maxConnections": {tc.value}})
			mustStatus(t, p, tc.status, "max connections "+tc.value)
			if tc.want != "" && (!strings.Contains(p.body, `id="max-error"`) || !strings.Contains(p.body, tc.want)) {
				t.Fatalf("refusal not shown at the field:\n%s", p.body)
			}
		})
	}
	if !strings.Contains(string(e.api(200, "GET", "/api/v1/clusters/"+id, e.admin, nil)), `"maxConnections":40`) {
		t.Fatal("accepted change not stored")
	}
}

func TestClusterLifecycleInConsole(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.post("/projects/"+e.project+"/clusters", url.Values{"name": {"edge-1"}})
	mustStatus(t, p, http.StatusOK, "create")
	token := regexp.MustCompile(`data-token="([^"]+)"`).FindStringSubmatch(p.body)[1]
	id := regexp.MustCompile(`/clusters/([0-9a-z]+)/state`).FindStringSubmatch(p.body)[1]
	ag := e.register(token)
	frag := b.do("GET", "/projects/"+e.project+"/clusters", nil, map[string]string{"HX-Request": "true", "HX-Target": "cluster-table"})
	if !strings.HasPrefix(strings.TrimSpace(frag.body), `<div id="cluster-table"`) || !strings.Contains(frag.body, "badge-registering") {
		t.Fatalf("list fragment after register:\n%s", frag.body)
	}
	ag.report()
	state := b.get("/projects/" + e.project + "/clusters/" + id + "/state")
	if !strings.Contains(state.body, "badge-running") {
		t.Fatalf("state fragment after report:\n%s", state.body)
	}

	// Transfer, then delete from the new project.
	p = b.post("/projects/"+e.project+"/clusters/"+id+"/transfer", url.Values{"project": {e.other}})
	mustStatus(t, p, http.StatusSeeOther, "transfer")
	mustStatus(t, b.get("/projects/"+e.project+"/clusters/"+id), http.StatusNotFound, "old address after transfer")
	// Alerts link to /clusters/{id}: it leads to the entry's current project.
	link := b.get("/clusters/" + id)
	mustStatus(t, link, http.StatusSeeOther, "alert link")
	if got, want := link.header.Get("Location"), "/projects/"+e.other+"/clusters/"+id; got != want {
		t.Fatalf("alert link redirects to %q, want %q", got, want)
	}
	p = b.post("/projects/"+e.other+"/clusters/"+id+"/delete", url.Values{"confirm": {"wrong"}})
	mustStatus(t, p, http.StatusBadRequest, "delete with wrong confirmation")
	p = b.post("/projects/"+e.other+"/clusters/"+id+"/delete", url.Values{"confirm": {"edge-1"}})
	mustStatus(t, p, http.StatusSeeOther, "delete")
	e.api(404, "GET", "/api/v1/clusters/"+id, e.admin, nil)
}

func TestListPages(t *testing.T) {
	e := start(t, nil)
	for i := range 60 {
		e.createCluster(e.project, "c-"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	list := "/projects/" + e.project + "/clusters"
	p := b.get(list)
	if n := strings.Count(p.body, "data-cluster="); n != console.DefaultPageSize || !strings.Contains(p.body, "1–50 of 60") || !strings.Contains(p.body, "Page 1 of 2") {
		t.Fatalf("page 1 shows %d clusters:\n%s", n, p.body)
	}
	if strings.Contains(p.body, `rel="prev"`) {
		t.Fatal("page 1 links to a previous page")
	}
	next := pagerLink(t, p.body, "next")
	p = b.get(next)
	if n := strings.Count(p.body, "data-cluster="); n != 10 || !strings.Contains(p.body, "51–60 of 60") || !strings.Contains(p.body, "Page 2 of 2") {
		t.Fatalf("page 2 shows %d clusters:\n%s", n, p.body)
	}
	if strings.Contains(p.body, `rel="next"`) || !strings.Contains(p.body, `data-cluster="`) || !strings.Contains(p.body, ">c-ch<") {
		t.Fatalf("page 2 is not the last page ending with c-ch:\n%s", p.body)
	}
	// The table refreshes itself with the same page token.
	if !strings.Contains(p.body, `hx-get="`+strings.ReplaceAll(next, "&", "&amp;")+`"`) {
		t.Fatalf("page 2 does not refresh itself with its own token %s", next)
	}
	p = b.get(pagerLink(t, p.body, "prev"))
	if n := strings.Count(p.body, "data-cluster="); n != console.DefaultPageSize || !strings.Contains(p.body, "1–50 of 60") {
		t.Fatalf("back to page 1 shows %d clusters", n)
	}
	// A token of another filter (or a mangled one) starts over at page 1.
	p = b.get(next + "&q=c-a")
	if n := strings.Count(p.body, "data-cluster="); n != 26 || !strings.Contains(p.body, "1–26 of 26") {
		t.Fatalf("stale token with a new filter shows %d clusters", n)
	}
	p = b.get(list + "?q=c-ab&state=created")
	if n := strings.Count(p.body, "data-cluster="); n != 1 {
		t.Fatalf("filter q=c-ab shows %d clusters, want 1", n)
	}
	p = b.get(list + "?q=C-AB")
	if n := strings.Count(p.body, "data-cluster="); n != 1 {
		t.Fatalf("filter q=C-AB shows %d clusters, want 1 (case-insensitive)", n)
	}
	p = b.get(list + "?state=running")
	if n := strings.Count(p.body, "data-cluster="); n != 0 || !strings.Contains(p.body, "No cluster matches") || !strings.Contains(p.body, "created (60)") {
		t.Fatalf("filter state=running shows %d clusters", n)
	}
}

// pagerLink is the href of the pager's rel=next or rel=prev link.
func pagerLink(t *testing.T, body, rel string) string {
	t.Helper()
	m := regexp.MustCompile(`href="([^"]+)" rel="` + rel + `"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s link in:\n%s", rel, body)
	}
	return html.UnescapeString(m[1])
}
