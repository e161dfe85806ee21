package console_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/ecpio/ecp/internal/testbed/headless"
)

// TestBrowserClusterPageFillsIn: a cluster page opened before the agent
// registers fills in every field after the first report, without a reload.
func TestBrowserClusterPageFillsIn(t *testing.T) {
	exe := headless.Chromium(t)
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-live")
	s := headless.New(t, exe)
	s.Login(e.url, "admin", adminPassword)
	s.Run("open the cluster page",
		chromedp.Navigate(e.url+"/projects/"+e.project+"/clusters/"+id),
		chromedp.WaitVisible(chromedp.CSS("main .badge-created")),
	)
	before := headless.Value(s, "status before", chromedp.Text(chromedp.CSS("main .facts")))
	if !strings.Contains(before, "never") || strings.Contains(before, "5.8.6") {
		t.Fatalf("status before registration: %q", before)
	}
	headless.Value(s, "mark the page", chromedp.Evaluate[bool](`window.__notReloaded = true`))

	var reg struct{ Token string }
	if err := json.Unmarshal(e.api(201, "POST", "/api/v1/clusters/"+id+"/registration", e.admin, nil), &reg); err != nil || reg.Token == "" {
		t.Fatalf("registration token: %v", err)
	}
	e.register(reg.Token).report()
	headless.Value(s, "the version shows up", chromedp.Poll[bool](`document.querySelector("main .badge-running") !== null && document.querySelector("main .facts").textContent.includes("5.8.6")`))
	after := headless.Value(s, "status after", chromedp.Text(chromedp.CSS("main .facts")))
	for _, want := range []string{"1 running of 1", "3 (2 live) of max 10", "ago)"} {
		if !strings.Contains(after, want) {
			t.Errorf("status after the first report lacks %q: %q", want, after)
		}
	}
	if strings.Contains(after, "never") {
		t.Errorf("last report still says never: %q", after)
	}
	if !headless.Value(s, "check the mark", chromedp.Evaluate[bool](`window.__notReloaded === true`)) {
		t.Error("the page reloaded to fill in")
	}
	if errs := s.Errors(); len(errs) > 0 {
		t.Errorf("script errors in the page: %v", errs)
	}
}
