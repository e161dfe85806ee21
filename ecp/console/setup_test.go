package console_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// signIn logs b in and reads the Setup page, which every signed-in user
// has, for the session's CSRF token (a fresh ecp has no project page).
func (b *browser) signIn(user, pw string) {
	b.e.t.Helper()
	lp := b.get("/login")
	m := csrfInput.FindStringSubmatch(lp.body)
	if m == nil {
		b.e.t.Fatalf("login page without csrf field: %s", lp.body)
	}
	mustStatus(b.e.t, b.do("POST", "/login", url.Values{"csrf": {m[1]}, "username": {user}, "password": {pw}}, nil), http.StatusSeeOther, "log in as "+user)
	mustStatus(b.e.t, b.get("/setup"), http.StatusOK, "setup page of "+user)
}

// fieldError is the text shown beside the field with the given id.
func fieldError(p page, id string) string {
	m := regexp.MustCompile(`<p class="field-error" id="` + regexp.QuoteMeta(id) + `-error">([^<]*)</p>`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// inputValue is the value attribute of the input with the given id.
func inputValue(p page, id string) string {
	m := regexp.MustCompile(`<input id="` + regexp.QuoteMeta(id) + `"[^>]*? value="([^"]*)"`).FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

var (
	switcherOptions = regexp.MustCompile(`(?s)<select id="project-switch".*?</select>`)
	newTokenValue   = regexp.MustCompile(`<pre id="new-token"><code>([^<]+)</code>`)
)

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func location(t *testing.T, p page, what string) *url.URL {
	t.Helper()
	mustStatus(t, p, http.StatusSeeOther, what)
	u, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatalf("%s: Location %q: %v", what, p.header.Get("Location"), err)
	}
	return u
}

// TestSetupFromConsole walks a fresh ecp's setup as a system admin does it
// in the console: organization, project, user, role binding and API token,
// each wrong input refused beside its field in the form's words; the new
// user then logs in and sees exactly that project.
func TestSetupFromConsole(t *testing.T) {
	e := startFresh(t, nil)
	b := e.browser()
	b.signIn("admin", adminPassword)

	p := b.get("/")
	mustStatus(t, p, http.StatusOK, "home of a fresh ecp")
	if !strings.Contains(p.body, `href="/setup"`) || strings.Contains(p.body, "/api/v1/orgs") {
		t.Fatalf("a fresh ecp's home sends the admin to the API rather than the Setup page:\n%s", p.body)
	}

	// Organization: an empty name is refused beside the field.
	p = b.post("/setup/orgs", url.Values{"name": {"  "}})
	mustStatus(t, p, http.StatusBadRequest, "empty organization name")
	if msg := fieldError(p, "org-name"); !strings.HasPrefix(msg, "Name: 1 to 100 characters") {
		t.Fatalf("empty organization name: message beside the field %q", msg)
	}
	u := location(t, b.post("/setup/orgs", url.Values{"name": {"Northwind"}}), "create organization")
	org := u.Query().Get("org")
	p = b.get(u.String())
	if !strings.Contains(p.body, "Organization created.") || !strings.Contains(p.body, `<option value="`+org+`" selected>Northwind</option>`) {
		t.Fatalf("after creating an organization the page lacks the message or the preselected organization:\n%s", p.body)
	}
	p = b.post("/setup/orgs", url.Values{"name": {"Northwind"}})
	mustStatus(t, p, http.StatusConflict, "duplicate organization")
	if msg := fieldError(p, "org-name"); !strings.Contains(msg, `an organization named "Northwind" exists`) || inputValue(p, "org-name") != "Northwind" {
		t.Fatalf("duplicate organization: message %q, field keeps %q", msg, inputValue(p, "org-name"))
	}

	// Project.
	p = b.post("/setup/projects", url.Values{"org": {org}, "name": {"a/b"}})
	mustStatus(t, p, http.StatusBadRequest, "project name with a slash")
	if msg := fieldError(p, "project-name"); !strings.Contains(msg, "no slash") || inputValue(p, "project-name") != "a/b" {
		t.Fatalf("project name with a slash: message %q, field keeps %q", msg, inputValue(p, "project-name"))
	}
	location(t, b.post("/setup/projects", url.Values{"org": {org}, "name": {"plant-1"}}), "create project")
	var project string
	p = b.get("/setup")
	if m := regexp.MustCompile(`href="/projects/([^/"]+)/clusters" data-project="plant-1">`).FindStringSubmatch(p.body); m != nil {
		project = m[1]
	} else {
		t.Fatalf("the Setup page does not list the new project:\n%s", p.body)
	}

	// User: the password is never echoed, whatever is refused.
	const password = "olivia-Secret-99"
	for _, tc := range []struct {
		name        string
		form        url.Values
		field, want string
		status      int
	}{
		{"passwords differ", url.Values{"username": {"olivia"}, "password": {password}, "password2": {password + "x"}}, "user-password2", "The two passwords differ", http.StatusBadRequest},
		{"bad username", url.Values{"username": {"-olivia"}, "password": {password}, "password2": {password}}, "user-username", "Username: 1 to 64 letters", http.StatusBadRequest},
		{"short password", url.Values{"username": {"olivia"}, "password": {"short"}, "password2": {"short"}}, "user-password", "Password: 8 to 72 bytes.", http.StatusBadRequest},
	} {
		p = b.post("/setup/users", tc.form)
		mustStatus(t, p, tc.status, tc.name)
		if msg := fieldError(p, tc.field); !strings.HasPrefix(msg, tc.want) {
			t.Errorf("%s: message beside %s is %q, want %q", tc.name, tc.field, msg, tc.want)
		}
		if inputValue(p, "user-username") != tc.form.Get("username") {
			t.Errorf("%s: the username field lost what was typed: %q", tc.name, inputValue(p, "user-username"))
		}
		if strings.Contains(p.body, tc.form.Get("password")) {
			t.Errorf("%s: the refused form echoes the password", tc.name)
		}
	}
	u = location(t, b.post("/setup/users", url.Values{"username": {"olivia"}, "password": {password}, "password2": {password}}), "create user")
	if strings.Contains(u.String(), password) {
		t.Fatalf("the password travels in a URL: %s", u)
	}
	p = b.get(u.String())
	if inputValue(p, "grant-username") != "olivia" || !strings.Contains(p.body, "User created.") {
		t.Fatalf("after creating a user the grant form is not filled in with it:\n%s", p.body)
	}

	// Role binding: a project role on an organization is refused in the
	// form's words, beside "On".
	p = b.post("/setup/role-bindings", url.Values{"username": {"olivia"}, "role": {"project-viewer"}, "scope": {"org:" + org}})
	mustStatus(t, p, http.StatusBadRequest, "project role on an organization")
	if msg := fieldError(p, "grant-scope"); !strings.Contains(msg, "granted on a project: choose one under “On”") {
		t.Fatalf("project role on an organization: message beside On is %q", msg)
	}
	if inputValue(p, "grant-username") != "olivia" || !strings.Contains(p.body, `<option value="project-viewer" selected>`) {
		t.Fatalf("the refused grant form lost what was chosen:\n%s", p.body)
	}
	p = b.post("/setup/role-bindings", url.Values{"username": {"nobody"}, "role": {"project-viewer"}, "scope": {"project:" + project}})
	mustStatus(t, p, http.StatusNotFound, "grant to a user who does not exist")
	if msg := fieldError(p, "grant-username"); !strings.Contains(msg, `no user "nobody"`) {
		t.Fatalf("unknown user: message beside User is %q", msg)
	}
	location(t, b.post("/setup/role-bindings", url.Values{"username": {"olivia"}, "role": {"project-viewer"}, "scope": {"project:" + project}}), "grant")
	p = b.get("/setup")
	if !regexp.MustCompile(`(?s)<th scope="row">olivia</th><td><span class="badge badge-created">Project viewer</span></td><td class="wrap">Project Northwind / plant-1</td>`).MatchString(p.body) {
		t.Fatalf("the binding is not listed in words:\n%s", p.body)
	}

	// API token: shown once, works, revoked from the list.
	p = b.post("/setup/api-tokens", url.Values{"name": {"ci"}, "expires": {"2001-01-01"}})
	mustStatus(t, p, http.StatusBadRequest, "token expiring in the past")
	if msg := fieldError(p, "token-expires"); !strings.HasPrefix(msg, "Choose a day after today") || inputValue(p, "token-name") != "ci" {
		t.Fatalf("token expiring in the past: message %q, name keeps %q", msg, inputValue(p, "token-name"))
	}
	p = b.post("/setup/api-tokens", url.Values{"name": {"ci"}})
	mustStatus(t, p, http.StatusOK, "create token")
	m := newTokenValue.FindStringSubmatch(p.body)
	if m == nil || !strings.Contains(p.header.Get("Cache-Control"), "no-store") {
		t.Fatalf("the new token is not shown (or may be cached):\n%s", p.body)
	}
	token := html.UnescapeString(m[1])
	e.api(200, "GET", "/api/v1/orgs", token, nil)
	p = b.get("/setup")
	if strings.Contains(p.body, token) {
		t.Fatal("the token is shown a second time")
	}
	tm := regexp.MustCompile(`<tr data-token="([^"]+)"><th scope="row">ci</th>`).FindStringSubmatch(p.body)
	if tm == nil {
		t.Fatalf("the token is not listed:\n%s", p.body)
	}
	location(t, b.post("/setup/api-tokens/revoke", url.Values{"id": {tm[1]}}), "revoke token")
	e.api(401, "GET", "/api/v1/orgs", token, nil)
	if p = b.get("/setup?done=token-revoked"); strings.Contains(p.body, `data-token="`+tm[1]+`"`) || !strings.Contains(p.body, "API token revoked") {
		t.Fatalf("the revoked token is still listed:\n%s", p.body)
	}

	// The last system admin's binding stays, and the page says why.
	am := regexp.MustCompile(`<tr data-binding="([^"]+)" data-user="admin">`).FindStringSubmatch(p.body)
	if am == nil {
		t.Fatalf("the admin's binding is not listed:\n%s", p.body)
	}
	p = b.post("/setup/role-bindings/revoke", url.Values{"id": {am[1]}})
	mustStatus(t, p, http.StatusConflict, "revoke the last system admin")
	if !strings.Contains(p.body, "this is the last system-admin binding") {
		t.Fatalf("revoking the last system admin: the page does not say why:\n%s", p.body)
	}
	// Nothing of the password reached the audit log.
	if audit := e.api(200, "GET", "/api/v1/audit?limit=200", e.admin, nil); strings.Contains(string(audit), password) || !strings.Contains(string(audit), "user/olivia") {
		t.Fatalf("audit log after creating olivia: %s", audit)
	}

	// The new user sees exactly that project.
	ob := e.browser()
	ob.signIn("olivia", password)
	p = ob.get("/")
	if loc := p.header.Get("Location"); loc != "/projects/"+project+"/clusters" {
		t.Fatalf("olivia's home goes to %q, want her project", loc)
	}
	p = ob.get("/projects/" + project + "/clusters")
	mustStatus(t, p, http.StatusOK, "olivia's project")
	sw := switcherOptions.FindString(p.body)
	if n := strings.Count(sw, "<option value=\""); n != 1 || !strings.Contains(sw, ">plant-1</option>") {
		t.Fatalf("olivia's switcher lists %d projects, want only plant-1:\n%s", n, sw)
	}
}

// TestSetupShowsOnlyWhatTheCallerMayDo: a viewer and an org admin see the
// controls the API would accept from them and no others, and the API
// refuses the forms they do not see.
func TestSetupShowsOnlyWhatTheCallerMayDo(t *testing.T) {
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	e.user("oscar", "", "")
	e.api(201, "POST", "/api/v1/role-bindings", e.admin, map[string]string{"username": "oscar", "role": "org-admin", "org": e.org})
	globex := e.id(e.api(201, "POST", "/api/v1/orgs", e.admin, map[string]string{"name": "globex"}))
	e.id(e.api(201, "POST", "/api/v1/orgs/"+globex+"/projects", e.admin, map[string]string{"name": "secret-lab"}))

	t.Run("viewer", func(t *testing.T) {
		b := e.browser()
		b.signIn("victor", "victor-password")
		p := b.get("/setup")
		for _, absent := range []string{`action="/setup/orgs"`, `action="/setup/projects"`, `action="/setup/users"`, `action="/setup/role-bindings"`,
			`action="/setup/role-bindings/revoke"`, `id="licence"`, "globex", "secret-lab", ">admin<"} {
			if strings.Contains(p.body, absent) {
				t.Errorf("the viewer's Setup page shows %s", absent)
			}
		}
		if !strings.Contains(p.body, `action="/setup/api-tokens"`) || !strings.Contains(p.body, "Project acme / factory") {
			t.Errorf("the viewer's Setup page lacks their own binding or the token form:\n%s", p.body)
		}
		for _, tc := range []struct {
			path string
			form url.Values
			want string
		}{
			{"/setup/orgs", url.Values{"name": {"mine"}}, "only a system admin may create organizations"},
			{"/setup/projects", url.Values{"org": {e.org}, "name": {"mine"}}, "needs"},
			{"/setup/users", url.Values{"username": {"mallory"}, "password": {"mallory-pass-1"}, "password2": {"mallory-pass-1"}}, "only a system admin may create users"},
			{"/setup/role-bindings", url.Values{"username": {"victor"}, "role": {"project-admin"}, "scope": {"project:" + e.project}}, "needs"},
		} {
			p := b.post(tc.path, tc.form)
			if p.status != http.StatusForbidden || !strings.Contains(p.body, "403 · Not allowed") || !strings.Contains(p.body, tc.want) {
				t.Errorf("viewer's POST %s: status %d, want 403 saying %q:\n%s", tc.path, p.status, tc.want, p.body)
			}
		}
		var bindings struct {
			Items []struct{ Username, Role string }
		}
		decode(t, e.api(200, "GET", "/api/v1/role-bindings", e.admin, nil), &bindings)
		for _, bd := range bindings.Items {
			if bd.Username == "victor" && bd.Role != "project-viewer" {
				t.Errorf("the viewer granted themselves %s", bd.Role)
			}
		}
	})

	t.Run("org admin", func(t *testing.T) {
		b := e.browser()
		b.signIn("oscar", "oscar-password")
		p := b.get("/setup")
		for _, absent := range []string{`action="/setup/orgs"`, `action="/setup/users"`, `id="licence"`, "globex", "secret-lab", `value="system-admin"`, `value="system"`} {
			if strings.Contains(p.body, absent) {
				t.Errorf("the org admin's Setup page shows %s", absent)
			}
		}
		for _, present := range []string{`action="/setup/projects"`, `<option value="` + e.org + `">acme</option>`, `value="org:` + e.org + `"`,
			`value="project:` + e.project + `"`, `value="project:` + e.other + `"`, `action="/setup/role-bindings/revoke"`} {
			if !strings.Contains(p.body, present) {
				t.Errorf("the org admin's Setup page lacks %s", present)
			}
		}
		location(t, b.post("/setup/projects", url.Values{"org": {e.org}, "name": {"warehouse"}}), "org admin creates a project")
		location(t, b.post("/setup/role-bindings", url.Values{"username": {"victor"}, "role": {"project-admin"}, "scope": {"project:" + e.other}}), "org admin grants")

		p = b.post("/setup/projects", url.Values{"org": {globex}, "name": {"mine"}})
		mustStatus(t, p, http.StatusNotFound, "project in another organization")
		if msg := fieldError(p, "project-org"); msg == "" || strings.Contains(p.body, "secret-lab") {
			t.Errorf("project in another organization: message beside Organization %q", msg)
		}
		p = b.post("/setup/role-bindings", url.Values{"username": {"admin"}, "role": {"project-viewer"}, "scope": {"project:" + e.project}})
		mustStatus(t, p, http.StatusNotFound, "grant to a user the org admin may not see")
		if msg := fieldError(p, "grant-username"); !strings.Contains(msg, `no user "admin"`) {
			t.Errorf("grant to a hidden user: message beside User %q", msg)
		}
		for _, path := range []string{"/setup/orgs", "/setup/users"} {
			if p := b.post(path, url.Values{"name": {"x"}, "username": {"mallory"}, "password": {"mallory-pass-1"}, "password2": {"mallory-pass-1"}}); p.status != http.StatusForbidden {
				t.Errorf("org admin's POST %s: status %d, want 403", path, p.status)
			}
		}
		// Revoking the system admin's binding: the API answers 404 (not
		// visible), shown on the page.
		var bindings struct{ Items []struct{ ID, Role string } }
		decode(t, e.api(200, "GET", "/api/v1/role-bindings", e.admin, nil), &bindings)
		for _, bd := range bindings.Items {
			if bd.Role == "system-admin" {
				mustStatus(t, b.post("/setup/role-bindings/revoke", url.Values{"id": {bd.ID}}), http.StatusNotFound, "org admin revokes system-admin")
			}
		}
	})
}

// TestJourneySystemPageKeepsProjectNavigation: the System and Setup pages
// keep the project the admin came from in the switcher and its tabs, so
// the way back is one click; a project the caller can no longer see is
// dropped rather than shown.
func TestJourneySystemPageKeepsProjectNavigation(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	mustStatus(t, b.get("/projects/"+e.other+"/monitoring"), http.StatusOK, "lab's monitoring")
	for _, path := range []string{"/system", "/setup"} {
		p := b.get(path)
		mustStatus(t, p, http.StatusOK, path)
		for _, tab := range []string{"clusters", "monitoring", "alerts", "logs"} {
			if !strings.Contains(p.body, `href="/projects/`+e.other+`/`+tab+`"`) {
				t.Errorf("%s lacks the project tab %s of the project the admin came from", path, tab)
			}
		}
		if !strings.Contains(switcherOptions.FindString(p.body), `<option value="`+e.other+`" selected>lab</option>`) {
			t.Errorf("%s: the switcher does not show lab as the current project:\n%s", path, switcherOptions.FindString(p.body))
		}
	}

	// Another user's browser remembers a project of acme; victor may not
	// see it: his Setup page shows no project tabs and no such project.
	e.user("victor", "project-viewer", e.project)
	vb := e.browser()
	vb.signIn("victor", "victor-password")
	vb.client.Jar.SetCookies(mustURL(t, e.url), []*http.Cookie{{Name: "ecp_project", Value: e.other, Path: "/"}})
	p := vb.get("/setup")
	if strings.Contains(p.body, e.other) || strings.Contains(p.body, ">lab<") {
		t.Errorf("victor's Setup page shows a project he may not see:\n%s", p.body)
	}
}

// TestJourneyProjectSwitcherNeedsNoExtraClick: with JavaScript, choosing a
// project navigates (app.js submits on change; the browser test clicks it),
// so the page offers no Open button; without JavaScript the button is
// there (in <noscript>) and /switch still answers the form.
func TestJourneyProjectSwitcherNeedsNoExtraClick(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get("/projects/" + e.project + "/clusters")
	form := regexp.MustCompile(`(?s)<form class="switcher".*?</form>`).FindString(p.body)
	if !strings.Contains(form, `<select id="project-switch" name="project" data-navigate>`) {
		t.Errorf("the switcher does not navigate on change:\n%s", form)
	}
	if !strings.Contains(form, `<noscript><button type="submit">Open</button></noscript>`) {
		t.Errorf("the switcher's Open button is not left to pages without JavaScript:\n%s", form)
	}
	if loc := location(t, b.get("/switch?project="+e.other), "switch without JavaScript"); loc.Path != "/projects/"+e.other+"/clusters" {
		t.Errorf("/switch goes to %s", loc)
	}
	// From a project's Monitoring the switcher opens the other project's
	// Monitoring, not its cluster list: no click to get back to the tab.
	p = b.get("/projects/" + e.project + "/monitoring")
	if !strings.Contains(p.body, `<input type="hidden" name="tab" value="monitoring">`) {
		t.Errorf("the switcher on Monitoring does not send its tab")
	}
	for tab, want := range map[string]string{"monitoring": "monitoring", "logs": "logs", "alerts": "alerts", "system": "clusters", "../x": "clusters"} {
		if loc := location(t, b.get("/switch?project="+e.other+"&tab="+url.QueryEscape(tab)), "switch from "+tab); loc.Path != "/projects/"+e.other+"/"+want {
			t.Errorf("/switch from %s goes to %s, want %s", tab, loc.Path, want)
		}
	}
	// Outside a project nothing is preselected, so that choosing the first
	// project is a change too.
	fresh := e.browser()
	fresh.signIn("admin", adminPassword)
	if sw := switcherOptions.FindString(fresh.get("/system").body); !strings.Contains(sw, `<option value="" selected disabled>Choose a project</option>`) {
		t.Errorf("outside a project the switcher preselects a project:\n%s", sw)
	}
}

// TestSetupFormsNeedCSRF: every Setup form is refused without the
// session's CSRF token, and nothing is created.
func TestSetupFormsNeedCSRF(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	b.signIn("admin", adminPassword)
	for path, form := range map[string]url.Values{
		"/setup/orgs":                 {"name": {"evil"}},
		"/setup/projects":             {"org": {e.org}, "name": {"evil"}},
		"/setup/users":                {"username": {"evil"}, "password": {"evil-password"}, "password2": {"evil-password"}},
		"/setup/role-bindings":        {"username": {"admin"}, "role": {"project-viewer"}, "scope": {"project:" + e.project}},
		"/setup/role-bindings/revoke": {"id": {"x"}},
		"/setup/api-tokens":           {"name": {"evil"}},
		"/setup/api-tokens/revoke":    {"id": {"x"}},
	} {
		for _, token := range []string{"", "forged"} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if token != "" {
				f.Set("csrf", token)
			}
			mustStatus(t, b.do("POST", path, f, nil), http.StatusForbidden, path+" with csrf "+token)
		}
	}
	for _, path := range []string{"/api/v1/orgs", "/api/v1/users", "/api/v1/api-tokens", "/api/v1/orgs/" + e.org + "/projects"} {
		if body := e.api(200, "GET", path, e.admin, nil); strings.Contains(string(body), "evil") {
			t.Errorf("a form without its CSRF token changed %s: %s", path, body)
		}
	}
}
