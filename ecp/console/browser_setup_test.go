package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/ecpio/ecp/internal/testbed/headless"
)

// TestBrowserSetupJourney is a new operator's first minutes on a fresh
// ecp, by clicking: the system admin sets up an organization, two
// projects, a user with a role and an API token from the console, switches
// projects with one choice, and the new user logs in to exactly their
// project. It writes the Setup page's screenshots.
func TestBrowserSetupJourney(t *testing.T) {
	exe := headless.Chromium(t)
	e := startFresh(t, nil)
	shots := headless.ScreenshotDir(t)
	s := headless.New(t, exe)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	const password = "olivia-Secret-99"

	s.Run("log in to a fresh ecp",
		chromedp.Navigate(e.url+"/login"),
		chromedp.WaitVisible(css("#username")),
		chromedp.SendKeys(css("#username"), "admin"),
		chromedp.SendKeys(css("#password"), adminPassword),
		chromedp.Submit(css("#password")),
		chromedp.WaitVisible(css(`main a.button[href="/setup"]`)),
	)
	s.Run("open Setup from the empty home", chromedp.Click(css(`main a.button[href="/setup"]`)), chromedp.WaitVisible(css("#org-name")))
	if n := headless.Value(s, "project form before an organization", chromedp.Evaluate[int](`document.querySelectorAll("#project-name").length`)); n != 0 {
		t.Error("the new-project form shows before any organization exists")
	}

	// A refused organization name shows beside the field.
	s.Run("refused organization",
		chromedp.Click(css(`form[action="/setup/orgs"] button`)),
		chromedp.WaitVisible(css("#org-name-error")),
	)
	if text := headless.Value(s, "organization error", chromedp.Text(css("#org-name-error"))); !strings.HasPrefix(text, "Name: 1 to 100 characters") {
		t.Errorf("empty organization name: %q", text)
	}
	s.Run("create the organization",
		chromedp.SendKeys(css("#org-name"), "Northwind"),
		chromedp.Click(css(`form[action="/setup/orgs"] button`)),
		chromedp.WaitVisible(css("#project-name")),
	)
	for _, name := range []string{"plant-1", "plant-2"} {
		s.Run("create project "+name,
			chromedp.SendKeys(css("#project-name"), name),
			chromedp.Click(css(`form[action="/setup/projects"] button`)),
			chromedp.WaitVisible(css(`#orgs a[data-project="`+name+`"]`)),
		)
	}
	s.Run("create a user",
		chromedp.SendKeys(css("#user-username"), "olivia"),
		chromedp.SendKeys(css("#user-password"), password),
		chromedp.SendKeys(css("#user-password2"), password),
		chromedp.Click(css(`form[action="/setup/users"] button`)),
		chromedp.WaitVisible(css(`#users tr[data-user="olivia"]`)),
	)
	if v := headless.Value(s, "grant form", chromedp.Value(css("#grant-username"))); v != "olivia" {
		t.Errorf("the grant form after creating olivia holds %q", v)
	}
	headless.Value(s, "choose project admin on plant-1", chromedp.Evaluate[bool](`
		document.getElementById("grant-role").value = "project-admin";
		[...document.querySelectorAll("#grant-scope option")].find(o => o.text === "Project Northwind / plant-1").selected = true`))
	s.Run("grant the role",
		chromedp.Click(css(`form[action="/setup/role-bindings"] button`)),
		chromedp.WaitVisible(css(`tr[data-binding][data-user="olivia"]`)),
	)
	if text := headless.Value(s, "binding row", chromedp.Text(css(`tr[data-binding][data-user="olivia"]`))); !strings.Contains(text, "Project admin") || !strings.Contains(text, "Northwind / plant-1") {
		t.Errorf("olivia's binding reads %q", text)
	}

	// An API token: shown once; a reload does not send the form again.
	s.Run("create an API token",
		chromedp.SendKeys(css("#token-name"), "ci-deploy"),
		chromedp.Click(css(`form[action="/setup/api-tokens"] button`)),
		chromedp.WaitVisible(css("#new-token")),
	)
	token := headless.Value(s, "token", chromedp.Text(css("#new-token")))
	e.api(200, "GET", "/api/v1/orgs", strings.TrimSpace(token), nil)
	if loc := headless.Value(s, "address", chromedp.Evaluate[string](`location.pathname + location.hash`)); loc != "/setup#tokens" {
		t.Errorf("the address after creating a token is %q, want /setup#tokens (a reload must not create another)", loc)
	}
	s.Screenshot(shots, "setup-token")
	s.Run("reload", chromedp.Reload(), chromedp.WaitVisible(css(`tr[data-token]`)))
	if n := headless.Value(s, "tokens after reload", chromedp.Evaluate[int](`document.querySelectorAll("tr[data-token]").length + document.querySelectorAll("#new-token").length`)); n != 1 {
		t.Errorf("after a reload: %d token rows plus shown tokens, want the one row", n)
	}
	s.Screenshot(shots, "setup")
	s.ColorScheme("dark")
	s.Run("dark setup", chromedp.Reload(), chromedp.WaitVisible(css(`tr[data-token]`)))
	s.Screenshot(shots, "setup-dark")
	s.ColorScheme("light")

	// The project switcher opens the chosen project with no other click,
	// and the System page keeps the project's tabs.
	plant2 := headless.Value(s, "plant-2 link", chromedp.Evaluate[string](`document.querySelector('#orgs a[data-project="plant-2"]').pathname`))
	s.Run("open plant-1", chromedp.Click(css(`#orgs a[data-project="plant-1"]`)), chromedp.WaitVisible(css("#cluster-table")))
	plant1 := headless.Value(s, "plant-1 path", chromedp.Evaluate[string](`location.pathname`))
	if n := headless.Value(s, "open buttons", chromedp.Evaluate[int](`[...document.querySelectorAll(".switcher button")].filter(b => b.offsetParent !== null).length`)); n != 0 {
		t.Errorf("the switcher shows %d buttons to click after choosing", n)
	}
	s.Run("choose plant-2 in the switcher",
		chromedp.SendKeys(css("#project-switch"), kb.ArrowDown),
		chromedp.WaitVisible(css(`#cluster-table[hx-get="`+plant2+`"]`)),
	)
	if sel := headless.Value(s, "switcher", chromedp.Evaluate[string](`document.querySelector("#project-switch option:checked").text`)); sel != "plant-2" {
		t.Errorf("after choosing plant-2 the switcher shows %q", sel)
	}
	s.Run("system keeps the project",
		chromedp.Click(css(`a[href="/system"]`)),
		chromedp.WaitVisible(css("#rcv-url")),
		chromedp.WaitVisible(css(`nav.tabs a[href="`+strings.TrimSuffix(plant2, "/clusters")+`/monitoring"]`)),
	)

	s.Run("log out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))

	// The new user lands in exactly their project.
	s.Login(e.url, "olivia", password)
	if path := headless.Value(s, "olivia's page", chromedp.Evaluate[string](`location.pathname`)); path != plant1 {
		t.Errorf("olivia lands on %s, want %s", path, plant1)
	}
	if opts := headless.Value(s, "olivia's projects", chromedp.Evaluate[string](`[...document.querySelectorAll("#project-switch option")].map(o => o.text).join(",")`)); opts != "plant-1" {
		t.Errorf("olivia's switcher offers %q, want plant-1 only", opts)
	}
	s.Run("olivia's setup", chromedp.Click(css(`a[href="/setup"]`)), chromedp.WaitVisible(css("#token-name")))
	if n := headless.Value(s, "olivia's admin forms", chromedp.Evaluate[int](`document.querySelectorAll('form[action="/setup/orgs"], form[action="/setup/users"], #licence').length`)); n != 0 {
		t.Errorf("a project admin's Setup page has %d system-admin controls", n)
	}
	if scopes := headless.Value(s, "olivia's scopes", chromedp.Evaluate[string](`[...document.querySelectorAll("#grant-scope option")].map(o => o.text).join(",")`)); scopes != "Project Northwind / plant-1" {
		t.Errorf("olivia may grant roles on %q, want her project only", scopes)
	}

	for _, r := range s.Sent() {
		if strings.Contains(r, "?") && strings.Contains(r, password) {
			t.Errorf("the password travelled in a URL: %s", r)
		}
	}
	if errs := s.Errors(); len(errs) > 0 {
		t.Errorf("script errors in the page: %v", errs)
	}
}
