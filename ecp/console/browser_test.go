package console_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/testbed/headless"
)

func TestBrowser(t *testing.T) {
	exe := headless.Chromium(t)
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	shots := headless.ScreenshotDir(t)
	s := headless.New(t, exe)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	s.Login(e.url, "admin", adminPassword)
	s.Run("add a cluster",
		chromedp.Click(css(`a[href$="/clusters/new"]`)),
		chromedp.WaitVisible(css("#name")),
		chromedp.SendKeys(css("#name"), "edge-shanghai-1"),
		chromedp.Submit(css("#name")),
		chromedp.WaitVisible(css("#register-cmd")),
	)
	text := headless.Value(s, "guide text", chromedp.Text(css("main")))
	for _, want := range []string{"Download the agent", "Start it", "Register it with ecp", "single-use and expires at", "linux/amd64"} {
		if !strings.Contains(text, want) {
			t.Errorf("registration page lacks %q", want)
		}
	}
	// A reload must not issue another token: the address is the cluster's.
	if path := headless.Value(s, "address", chromedp.Evaluate[string](`location.pathname`)); !strings.Contains(path, "/clusters/") || strings.HasSuffix(path, "/clusters") {
		t.Errorf("address after create is %q, want the cluster's page", path)
	}

	// The EMQX form fills the command in the page, password included.
	const password = "Pa55-w0rd-never-sent"
	before := headless.Value(s, "command before", chromedp.Text(css("#register-cmd")))
	s.Run("fill the EMQX form",
		chromedp.Click(css("#arch-arm64")),
		chromedp.SendKeys(css("#emqx-username"), "admin"),
		chromedp.SendKeys(css("#emqx-password"), password),
		chromedp.SendKeys(css("#emqx-dashboard-url"), "http://10.0.0.7:18083"),
		chromedp.SendKeys(css("#emqx-api-url"), "http://127.0.0.1:18083"),
	)
	after := headless.Value(s, "command after", chromedp.Text(css("#register-cmd")))
	token := headless.Value(s, "token", chromedp.Evaluate[string](`document.getElementById("register-cmd").dataset.token`))
	if !strings.Contains(before, "--username '<EMQX_USERNAME>'") || strings.Contains(before, "--password") {
		t.Errorf("register command before typing: %s", before)
	}
	for _, want := range []string{"--token " + token, "--username admin", "--password " + password, "--dashboard-url http://10.0.0.7:18083", "--api-url http://127.0.0.1:18083"} {
		if !strings.Contains(after, want) {
			t.Errorf("filled register command lacks %q:\n%s", want, after)
		}
	}
	if !headless.Value(s, "arch choice", chromedp.Evaluate[bool](`getComputedStyle(document.querySelector('.cmd[data-arch="arm64"]')).display !== "none" && getComputedStyle(document.querySelector('.cmd[data-arch="amd64"]')).display === "none"`)) {
		t.Error("choosing arm64 does not show only the arm64 download")
	}
	s.Screenshot(shots, "registration")

	// The agent registers and reports; the list shows it without a reload.
	s.Run("open the list",
		chromedp.Click(css(`nav.tabs a[href$="/clusters"]`)),
		chromedp.WaitVisible(css(".badge-created")),
	)
	headless.Value(s, "mark the page", chromedp.Evaluate[bool](`window.__notReloaded = true`))
	ag := e.register(token)
	s.Run("see registering", chromedp.WaitVisible(css("#cluster-table .badge-registering")))
	ag.report()
	s.Run("see running", chromedp.WaitVisible(css("#cluster-table .badge-running")))
	if !headless.Value(s, "check the mark", chromedp.Evaluate[bool](`window.__notReloaded === true`)) {
		t.Error("the page reloaded to show the new state")
	}
	for i := range 3 {
		e.createCluster(e.project, "edge-berlin-"+strconv.Itoa(i+1))
	}
	s.Run("refresh", chromedp.Reload(), chromedp.WaitVisible(css("#cluster-table .badge-running")))
	s.Screenshot(shots, "clusters")
	// The dark theme follows the system setting.
	s.ColorScheme("dark")
	s.Run("dark list", chromedp.Reload(), chromedp.WaitVisible(css("#cluster-table .badge-running")))
	s.Screenshot(shots, "clusters-dark")
	s.ColorScheme("light")

	// Max connections beyond the licence: the refusal shows at the field.
	s.Run("refuse max connections",
		chromedp.Click(css(`a[href$="/clusters/`+ag.cluster+`"]`)),
		chromedp.WaitVisible(css("#maxConnections")),
		chromedp.SetValue(css("#maxConnections"), "99999999"),
		chromedp.Submit(css("#maxConnections")),
		chromedp.WaitVisible(css("#max-error")),
	)
	if text := headless.Value(s, "refusal", chromedp.Text(css("#max-error"))); !strings.Contains(text, "remaining") && !strings.Contains(text, "ceiling") {
		t.Errorf("refusal message: %q", text)
	}
	s.Screenshot(shots, "cluster")

	// A broken connector shows on the monitoring page, with its cause.
	ag.report(agentproto.Resource{Kind: agentproto.KindConnector, ID: "http:sink", Name: "sink", Status: "disconnected", Reason: "econnrefused"})
	s.Run("monitoring",
		chromedp.Click(css(`nav.tabs a[href$="/monitoring"]`)),
		chromedp.WaitVisible(css(`[data-abnormal="http:sink"]`)),
	)
	if text := headless.Value(s, "abnormal row", chromedp.Text(css(`[data-abnormal="http:sink"]`))); !strings.Contains(text, "econnrefused") {
		t.Errorf("abnormal connector row: %q", text)
	}
	s.Screenshot(shots, "monitoring")
	s.Run("alert settings",
		chromedp.Click(css(`nav.tabs a[href$="/alerts"]`)),
		chromedp.WaitVisible(css(`a[href$="/alert-settings"]`)),
		chromedp.Click(css(`a[href$="/alert-settings"]`)),
		chromedp.WaitVisible(css("#triggerCount")),
	)
	s.Screenshot(shots, "alert-settings")
	s.Run("logs",
		chromedp.Click(css(`nav.tabs a[href$="/logs"]`)),
		chromedp.WaitVisible(css("#log-q")),
	)
	s.Screenshot(shots, "logs")
	s.Run("system", chromedp.Click(css(`a[href="/system"]`)), chromedp.WaitVisible(css("#rcv-url")))
	s.Screenshot(shots, "system")

	s.Run("log out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))
	if text := headless.Value(s, "login page", chromedp.Text(css("main"))); !strings.Contains(text, "You have logged out") {
		t.Errorf("after logout: %s", text)
	}
	s.Screenshot(shots, "login")

	// A viewer sees the cluster but no control to change it.
	s.Login(e.url, "victor", "victor-password")
	if n := headless.Value(s, "viewer list", chromedp.Evaluate[int](`document.querySelectorAll('a[href$="/clusters/new"], main form[method=post]').length`)); n != 0 {
		t.Errorf("viewer's list has %d write controls", n)
	}
	s.Run("viewer detail",
		chromedp.Click(css(`a[href$="/clusters/`+ag.cluster+`"]`)),
		chromedp.WaitVisible(css("#cluster-state")),
	)
	if n := headless.Value(s, "viewer controls", chromedp.Evaluate[int](`document.querySelectorAll('main form, main button').length`)); n != 0 {
		t.Errorf("viewer's detail page has %d forms or buttons", n)
	}
	s.Run("viewer logs out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))

	for _, r := range s.Sent() {
		if strings.Contains(r, password) || strings.Contains(r, "Pa55") {
			t.Errorf("a request carried the EMQX password: %s", r)
		}
	}
	if len(s.Sent()) < 10 {
		t.Errorf("only %d requests recorded; is the network listener working?", len(s.Sent()))
	}
	if errs := s.Errors(); len(errs) > 0 {
		t.Errorf("script errors in the page: %v", errs)
	}
}
