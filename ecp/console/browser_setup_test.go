package console_test

import (
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// TestBrowserSetupJourney is a new operator's first minutes on a fresh
// ecp, by clicking: the system admin sets up an organization, two
// projects, a user with a role and an API token from the console, switches
// projects with one choice, and the new user logs in to exactly their
// project. It writes the Setup page's screenshots.
func TestBrowserSetupJourney(t *testing.T) {
	exe := chromium(t)
	e := startFresh(t, nil)
	shots := os.Getenv(screenshotDirEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	s := newSession(t, exe)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	const password = "olivia-Secret-99"

	s.run("log in to a fresh ecp",
		chromedp.Navigate(e.url+"/login"),
		chromedp.WaitVisible(css("#username")),
		chromedp.SendKeys(css("#username"), "admin"),
		chromedp.SendKeys(css("#password"), adminPassword),
		chromedp.Submit(css("#password")),
		chromedp.WaitVisible(css(`main a.button[href="/setup"]`)),
	)
	s.run("open Setup from the empty home", chromedp.Click(css(`main a.button[href="/setup"]`)), chromedp.WaitVisible(css("#org-name")))
	if n := value(s, "project form before an organization", chromedp.Evaluate[int](`document.querySelectorAll("#project-name").length`)); n != 0 {
		t.Error("the new-project form shows before any organization exists")
	}

	// A refused organization name shows beside the field.
	s.run("refused organization",
		chromedp.Click(css(`form[action="/setup/orgs"] button`)),
		chromedp.WaitVisible(css("#org-name-error")),
	)
	if text := value(s, "organization error", chromedp.Text(css("#org-name-error"))); !strings.HasPrefix(text, "Name: 1 to 100 characters") {
		t.Errorf("empty organization name: %q", text)
	}
	s.run("create the organization",
		chromedp.SendKeys(css("#org-name"), "Northwind"),
		chromedp.Click(css(`form[action="/setup/orgs"] button`)),
		chromedp.WaitVisible(css("#project-name")),
	)
	for _, name := range []string{"plant-1", "plant-2"} {
		s.run("create project "+name,
			chromedp.SendKeys(css("#project-name"), name),
			chromedp.Click(css(`form[action="/setup/projects"] button`)),
			chromedp.WaitVisible(css(`#orgs a[data-project="`+name+`"]`)),
		)
	}
	s.run("create a user",
		chromedp.SendKeys(css("#user-username"), "olivia"),
		chromedp.SendKeys(css("#user-password"), password),
		chromedp.SendKeys(css("#user-password2"), password),
		chromedp.Click(css(`form[action="/setup/users"] button`)),
		chromedp.WaitVisible(css(`#users tr[data-user="olivia"]`)),
	)
	if v := value(s, "grant form", chromedp.Value(css("#grant-username"))); v != "olivia" {
		t.Errorf("the grant form after creating olivia holds %q", v)
	}
	value(s, "choose project admin on plant-1", chromedp.Evaluate[bool](`
		document.getElementById("grant-role").value = "project-admin";
		[...document.querySelectorAll("#grant-scope option")].find(o => o.text === "Project Northwind / plant-1").selected = true`))
	s.run("grant the role",
		chromedp.Click(css(`form[action="/setup/role-bindings"] button`)),
		chromedp.WaitVisible(css(`tr[data-binding][data-user="olivia"]`)),
	)
	if text := value(s, "binding row", chromedp.Text(css(`tr[data-binding][data-user="olivia"]`))); !strings.Contains(text, "Project admin") || !strings.Contains(text, "Northwind / plant-1") {
		t.Errorf("olivia's binding reads %q", text)
	}

	// An API token: shown once; a reload does not send the form again.
	s.run("create an API token",
		chromedp.SendKeys(css("#token-name"), "ci-deploy"),
		chromedp.Click(css(`form[action="/setup/api-tokens"] button`)),
		chromedp.WaitVisible(css("#new-token")),
	)
	token := value(s, "token", chromedp.Text(css("#new-token")))
	e.api(200, "GET", "/api/v1/orgs", strings.TrimSpace(token), nil)
	if loc := value(s, "address", chromedp.Evaluate[string](`location.pathname + location.hash`)); loc != "/setup#tokens" {
		t.Errorf("the address after creating a token is %q, want /setup#tokens (a reload must not create another)", loc)
	}
	s.screenshot(shots, "setup-token")
	s.run("reload", chromedp.Reload(), chromedp.WaitVisible(css(`tr[data-token]`)))
	if n := value(s, "tokens after reload", chromedp.Evaluate[int](`document.querySelectorAll("tr[data-token]").length + document.querySelectorAll("#new-token").length`)); n != 1 {
		t.Errorf("after a reload: %d token rows plus shown tokens, want the one row", n)
	}
	s.screenshot(shots, "setup")
	s.colorScheme("dark")
	s.run("dark setup", chromedp.Reload(), chromedp.WaitVisible(css(`tr[data-token]`)))
	s.screenshot(shots, "setup-dark")
	s.colorScheme("light")

	// The project switcher opens the chosen project with no other click,
	// and the System page keeps the project's tabs.
	plant2 := value(s, "plant-2 link", chromedp.Evaluate[string](`document.querySelector('#orgs a[data-project="plant-2"]').pathname`))
	s.run("open plant-1", chromedp.Click(css(`#orgs a[data-project="plant-1"]`)), chromedp.WaitVisible(css("#cluster-table")))
	plant1 := value(s, "plant-1 path", chromedp.Evaluate[string](`location.pathname`))
	if n := value(s, "open buttons", chromedp.Evaluate[int](`[...document.querySelectorAll(".switcher button")].filter(b => b.offsetParent !== null).length`)); n != 0 {
		t.Errorf("the switcher shows %d buttons to click after choosing", n)
	}
	s.run("choose plant-2 in the switcher",
		chromedp.SendKeys(css("#project-switch"), kb.ArrowDown),
		chromedp.WaitVisible(css(`#cluster-table[hx-get="`+plant2+`"]`)),
	)
	if sel := value(s, "switcher", chromedp.Evaluate[string](`document.querySelector("#project-switch option:checked").text`)); sel != "plant-2" {
		t.Errorf("after choosing plant-2 the switcher shows %q", sel)
	}
	s.run("system keeps the project",
		chromedp.Click(css(`a[href="/system"]`)),
		chromedp.WaitVisible(css("#rcv-url")),
		chromedp.WaitVisible(css(`nav.tabs a[href="`+strings.TrimSuffix(plant2, "/clusters")+`/monitoring"]`)),
	)

	s.run("log out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))

	// The new user lands in exactly their project.
	s.login(e.url, "olivia", password)
	if path := value(s, "olivia's page", chromedp.Evaluate[string](`location.pathname`)); path != plant1 {
		t.Errorf("olivia lands on %s, want %s", path, plant1)
	}
	if opts := value(s, "olivia's projects", chromedp.Evaluate[string](`[...document.querySelectorAll("#project-switch option")].map(o => o.text).join(",")`)); opts != "plant-1" {
		t.Errorf("olivia's switcher offers %q, want plant-1 only", opts)
	}
	s.run("olivia's setup", chromedp.Click(css(`a[href="/setup"]`)), chromedp.WaitVisible(css("#token-name")))
	if n := value(s, "olivia's admin forms", chromedp.Evaluate[int](`document.querySelectorAll('form[action="/setup/orgs"], form[action="/setup/users"], #licence').length`)); n != 0 {
		t.Errorf("a project admin's Setup page has %d system-admin controls", n)
	}
	if scopes := value(s, "olivia's scopes", chromedp.Evaluate[string](`[...document.querySelectorAll("#grant-scope option")].map(o => o.text).join(",")`)); scopes != "Project Northwind / plant-1" {
		t.Errorf("olivia may grant roles on %q, want her project only", scopes)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.sent {
		if strings.Contains(r, "?") && strings.Contains(r, password) {
			t.Errorf("the password travelled in a URL: %s", r)
		}
	}
	if len(s.errors) > 0 {
		t.Errorf("script errors in the page: %v", s.errors)
	}
}
