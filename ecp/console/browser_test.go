package console_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ecpio/ecp/agentproto"
)

// screenshotDirEnv names a directory the browser test writes its
// screenshots to (docs/console when refreshing the committed ones); without
// it they go to a temporary directory.
const screenshotDirEnv = "ECP_CONSOLE_SCREENSHOTS"

// chromium finds Debian's chromium; the test fails with the install command
// when it is missing, except under -short.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{os.Getenv("ECP_CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if testing.Short() {
		t.Skip("chromium not installed (skipped under -short)")
	}
	t.Fatal("chromium not installed: run scripts/install-chromium.sh (apt-get install chromium chromium-driver)")
	return ""
}

// session is one headless Chromium tab that records every request and
// every script error.
type session struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	sent   []string // URL and body of every request the page made
	errors []string
}

func newSession(t *testing.T, exe string) *session {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	s := &session{t: t}
	listen := func(ev any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			entry := ev.Request.URL
			for _, e := range ev.Request.PostDataEntries {
				entry += " " + string(e.Bytes)
			}
			s.sent = append(s.sent, entry)
		case *runtime.EventExceptionThrown:
			s.errors = append(s.errors, ev.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			// The browser's own log: CSP violations and the like. HTTP
			// statuses ("network") are the test's own business: a refused
			// form answers 422 on purpose.
			if string(ev.Entry.Level) == "error" && string(ev.Entry.Source) != "network" {
				s.errors = append(s.errors, ev.Entry.URL+": "+ev.Entry.Text)
			}
		case *runtime.EventConsoleAPICalled:
			if string(ev.Type) == "error" {
				s.errors = append(s.errors, "console.error")
			}
		}
	}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(listen))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	s.ctx = ctx
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return s
}

// run runs actions with a deadline, failing the test with what it was
// doing.
func (s *session) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		s.fail(what, err)
	}
}

// value runs one action that gives a value.
func value[T any](s *session, what string, a chromedp.Action[T]) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		s.fail(what, err)
	}
	return v
}

func (s *session) fail(what string, err error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	s.t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, html)
}

func (s *session) screenshot(dir, name string) {
	s.t.Helper()
	png := value(s, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// colorScheme makes the page see prefers-color-scheme: scheme.
func (s *session) colorScheme(scheme string) {
	s.t.Helper()
	_, err := chromedp.Call(s.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		s.t.Fatalf("emulate %s colour scheme: %v", scheme, err)
	}
}

func (s *session) login(url, user, pw string) {
	s.t.Helper()
	s.run("log in as "+user,
		chromedp.Navigate(url+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("#cluster-table")),
	)
}

func TestBrowser(t *testing.T) {
	exe := chromium(t)
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	shots := os.Getenv(screenshotDirEnv)
	if shots == "" {
		shots = t.TempDir()
	}
	s := newSession(t, exe)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }

	s.login(e.url, "admin", adminPassword)
	s.run("add a cluster",
		chromedp.Click(css(`a[href$="/clusters/new"]`)),
		chromedp.WaitVisible(css("#name")),
		chromedp.SendKeys(css("#name"), "edge-shanghai-1"),
		chromedp.Submit(css("#name")),
		chromedp.WaitVisible(css("#register-cmd")),
	)
	text := value(s, "guide text", chromedp.Text(css("main")))
	for _, want := range []string{"Download the agent", "Start it", "Register it with ecp", "single-use and expires at", "linux/amd64"} {
		if !strings.Contains(text, want) {
			t.Errorf("registration page lacks %q", want)
		}
	}
	// A reload must not issue another token: the address is the cluster's.
	if path := value(s, "address", chromedp.Evaluate[string](`location.pathname`)); !strings.Contains(path, "/clusters/") || strings.HasSuffix(path, "/clusters") {
		t.Errorf("address after create is %q, want the cluster's page", path)
	}

	// The EMQX form fills the command in the page, password included.
	const password = "Pa55-w0rd-never-sent"
	before := value(s, "command before", chromedp.Text(css("#register-cmd")))
	s.run("fill the EMQX form",
		chromedp.Click(css("#arch-arm64")),
		chromedp.SendKeys(css("#emqx-username"), "admin"),
		chromedp.SendKeys(css("#emqx-password"), password),
		chromedp.SendKeys(css("#emqx-dashboard-url"), "http://10.0.0.7:18083"),
		chromedp.SendKeys(css("#emqx-api-url"), "http://127.0.0.1:18083"),
	)
	after := value(s, "command after", chromedp.Text(css("#register-cmd")))
	token := value(s, "token", chromedp.Evaluate[string](`document.getElementById("register-cmd").dataset.token`))
	if !strings.Contains(before, "--username '<EMQX_USERNAME>'") || strings.Contains(before, "--password") {
		t.Errorf("register command before typing: %s", before)
	}
	for _, want := range []string{"--token " + token, "--username admin", "--password " + password, "--dashboard-url http://10.0.0.7:18083", "--api-url http://127.0.0.1:18083"} {
		if !strings.Contains(after, want) {
			t.Errorf("filled register command lacks %q:\n%s", want, after)
		}
	}
	if !value(s, "arch choice", chromedp.Evaluate[bool](`getComputedStyle(document.querySelector('.cmd[data-arch="arm64"]')).display !== "none" && getComputedStyle(document.querySelector('.cmd[data-arch="amd64"]')).display === "none"`)) {
		t.Error("choosing arm64 does not show only the arm64 download")
	}
	s.screenshot(shots, "registration")

	// The agent registers and reports; the list shows it without a reload.
	s.run("open the list",
		chromedp.Click(css(`nav.tabs a[href$="/clusters"]`)),
		chromedp.WaitVisible(css(".badge-created")),
	)
	value(s, "mark the page", chromedp.Evaluate[bool](`window.__notReloaded = true`))
	ag := e.register(token)
	s.run("see registering", chromedp.WaitVisible(css("#cluster-table .badge-registering")))
	ag.report()
	s.run("see running", chromedp.WaitVisible(css("#cluster-table .badge-running")))
	if !value(s, "check the mark", chromedp.Evaluate[bool](`window.__notReloaded === true`)) {
		t.Error("the page reloaded to show the new state")
	}
	for i := range 3 {
		e.createCluster(e.project, "edge-berlin-"+strconv.Itoa(i+1))
	}
	s.run("refresh", chromedp.Reload(), chromedp.WaitVisible(css("#cluster-table .badge-running")))
	s.screenshot(shots, "clusters")
	// The dark theme follows the system setting.
	s.colorScheme("dark")
	s.run("dark list", chromedp.Reload(), chromedp.WaitVisible(css("#cluster-table .badge-running")))
	s.screenshot(shots, "clusters-dark")
	s.colorScheme("light")

	// Max connections beyond the licence: the refusal shows at the field.
	s.run("refuse max connections",
		chromedp.Click(css(`a[href$="/clusters/`+ag.cluster+`"]`)),
		chromedp.WaitVisible(css("#maxConnections")),
		chromedp.SetValue(css("#maxConnections"), "99999999"),
		chromedp.Submit(css("#maxConnections")),
		chromedp.WaitVisible(css("#max-error")),
	)
	if text := value(s, "refusal", chromedp.Text(css("#max-error"))); !strings.Contains(text, "remaining") && !strings.Contains(text, "ceiling") {
		t.Errorf("refusal message: %q", text)
	}
	s.screenshot(shots, "cluster")

	// A broken connector shows on the monitoring page, with its cause.
	ag.report(agentproto.Resource{Kind: agentproto.KindConnector, ID: "http:sink", Name: "sink", Status: "disconnected", Reason: "econnrefused"})
	s.run("monitoring",
		chromedp.Click(css(`nav.tabs a[href$="/monitoring"]`)),
		chromedp.WaitVisible(css(`[data-abnormal="http:sink"]`)),
	)
	if text := value(s, "abnormal row", chromedp.Text(css(`[data-abnormal="http:sink"]`))); !strings.Contains(text, "econnrefused") {
		t.Errorf("abnormal connector row: %q", text)
	}
	s.screenshot(shots, "monitoring")
	s.run("alert settings",
		chromedp.Click(css(`nav.tabs a[href$="/alerts"]`)),
		chromedp.WaitVisible(css(`a[href$="/alert-settings"]`)),
		chromedp.Click(css(`a[href$="/alert-settings"]`)),
		chromedp.WaitVisible(css("#triggerCount")),
	)
	s.screenshot(shots, "alert-settings")
	s.run("logs",
		chromedp.Click(css(`nav.tabs a[href$="/logs"]`)),
		chromedp.WaitVisible(css("#log-q")),
	)
	s.screenshot(shots, "logs")
	s.run("system", chromedp.Click(css(`a[href="/system"]`)), chromedp.WaitVisible(css("#rcv-url")))
	s.screenshot(shots, "system")

	s.run("log out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))
	if text := value(s, "login page", chromedp.Text(css("main"))); !strings.Contains(text, "You have logged out") {
		t.Errorf("after logout: %s", text)
	}
	s.screenshot(shots, "login")

	// A viewer sees the cluster but no control to change it.
	s.login(e.url, "victor", "victor-password")
	if n := value(s, "viewer list", chromedp.Evaluate[int](`document.querySelectorAll('a[href$="/clusters/new"], main form[method=post]').length`)); n != 0 {
		t.Errorf("viewer's list has %d write controls", n)
	}
	s.run("viewer detail",
		chromedp.Click(css(`a[href$="/clusters/`+ag.cluster+`"]`)),
		chromedp.WaitVisible(css("#cluster-state")),
	)
	if n := value(s, "viewer controls", chromedp.Evaluate[int](`document.querySelectorAll('main form, main button').length`)); n != 0 {
		t.Errorf("viewer's detail page has %d forms or buttons", n)
	}
	s.run("viewer logs out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.sent {
		if strings.Contains(r, password) || strings.Contains(r, "Pa55") {
			t.Errorf("a request carried the EMQX password: %s", r)
		}
	}
	if len(s.sent) < 10 {
		t.Errorf("only %d requests recorded; is the network listener working?", len(s.sent))
	}
	if len(s.errors) > 0 {
		t.Errorf("script errors in the page: %v", s.errors)
	}
}
