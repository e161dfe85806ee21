// Package headless drives the console in a headless Chromium for the
// browser tests (the console's own and the end-to-end journey): it starts
// Chromium, records every request the page makes and every script error,
// runs actions with a deadline and takes screenshots.
package headless

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// ScreenshotDirEnv names a directory the browser tests write their
// screenshots to (docs/console when refreshing the committed ones); without
// it they go to a temporary directory.
const ScreenshotDirEnv = "ECP_CONSOLE_SCREENSHOTS"

// actionTimeout bounds each step: a page that never shows what a step waits
// for fails the test with what the page holds instead of hanging it.
const actionTimeout = 15 * time.Second

// ScreenshotDir is where a test writes its screenshots: $ECP_CONSOLE_SCREENSHOTS,
// or a temporary directory.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(ScreenshotDirEnv); dir != "" {
		return dir
	}
	return t.TempDir()
}

// Chromium finds Debian's chromium ($ECP_CHROMIUM first); the test fails
// with the install command when it is missing, except under -short.
func Chromium(t testing.TB) string {
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

// Session is one headless Chromium tab that records every request and
// every script error.
type Session struct {
	t      testing.TB
	ctx    context.Context
	mu     sync.Mutex
	sent   []string // URL and body of every request the page made
	errors []string
}

// New starts Chromium at exe with one blank tab; the test's cleanup closes
// it.
func New(t testing.TB, exe string) *Session {
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
	s := &Session{t: t}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(s.listen))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	s.ctx = ctx
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return s
}

func (s *Session) listen(ev any) {
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

// Sent is the URL and body of every request the page made so far.
func (s *Session) Sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.sent...)
}

// Errors is every script error the page raised so far.
func (s *Session) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errors...)
}

// Run runs actions with a deadline, failing the test with what it was
// doing and what the page shows.
func (s *Session) Run(what string, actions ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	s.RunFor(what, actionTimeout, actions...)
}

// RunFor is Run with its own deadline, for a step that waits on something
// slower than a page (an alert, a log line shipped and stored).
func (s *Session) RunFor(what string, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	for _, a := range actions {
		if err := doAgainIfStale(ctx, a); err != nil {
			s.Fail(what, err)
		}
	}
}

// doAgainIfStale runs a, and runs it again while it fails on a node of a
// document Chromium has just replaced. Around a navigation, chromedp asks
// for the new document once per DOM.documentUpdated, and each time the
// browser forgets the node ids it gave out before: an action that found
// its node in between fails on the node's first use ("Could not find node
// with given id"), on a loaded machine often enough to fail a test. That
// first use (scroll into view, focus, resolve) comes before any click,
// key or submit, so running the action again, which queries afresh, does
// nothing twice.
func doAgainIfStale(ctx context.Context, a chromedp.Action[chromedp.Void]) error {
	for {
		err := chromedp.Do(ctx, a)
		var cdpErr *cdproto.Error
		if err == nil || ctx.Err() != nil || !errors.As(err, &cdpErr) || cdpErr.Message != staleNode {
			return err
		}
	}
}

// staleNode is Chromium's answer to a node id of a replaced document.
const staleNode = "Could not find node with given id"

// Value runs one action that gives a value.
func Value[T any](s *Session, what string, a chromedp.Action[T]) T {
	s.t.Helper()
	return ValueFor(s, what, actionTimeout, a)
}

// ValueFor is Value with its own deadline.
func ValueFor[T any](s *Session, what string, timeout time.Duration, a chromedp.Action[T]) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		s.Fail(what, err)
	}
	return v
}

// Fail ends the test with what it was doing, the page's address and its
// main content.
func (s *Session) Fail(what string, err error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
	s.t.Fatalf("%s: %v\nat %s\n%s", what, err, loc, html)
}

// Screenshot writes the whole page to dir/name.png.
func (s *Session) Screenshot(dir, name string) {
	s.t.Helper()
	png := Value(s, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// ColorScheme makes the page see prefers-color-scheme: scheme.
func (s *Session) ColorScheme(scheme string) {
	s.t.Helper()
	_, err := chromedp.Call(s.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
	if err != nil {
		s.t.Fatalf("emulate %s colour scheme: %v", scheme, err)
	}
}

// Login logs in to the console at url and waits for the cluster list a
// user with a project lands on.
func (s *Session) Login(url, user, pw string) {
	s.t.Helper()
	s.Run("log in as "+user,
		chromedp.Navigate(url+"/login"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), user),
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("#cluster-table")),
	)
}
