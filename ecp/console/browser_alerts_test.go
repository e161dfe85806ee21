package console_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/internal/testbed/headless"
)

// fireBoth fires one alert as Prometheus and Alertmanager do together: into
// Alertmanager, which silences it, and, with Alertmanager's fingerprint,
// into ecp's webhook, which lists it.
func (e *env) fireBoth(am, project, cluster, name string) {
	e.t.Helper()
	start := fireAt(e.t, am, project, cluster, name)
	labels := model.LabelSet{"alertname": model.LabelValue(name), "project": model.LabelValue(project), "cluster": model.LabelValue(cluster), "severity": "warning"}
	e.hook("firing", map[string]any{
		"status": "firing", "fingerprint": labels.Fingerprint().String(), "startsAt": start, "labels": labels,
		"annotations": map[string]string{"summary": "EMQX connector http:sink is not connected in cluster edge-shanghai-1."},
	})
}

// TestBrowserAlerts drives the alert list in Chromium: an admin silences a
// firing alert from its row, the list marks it silenced and lists the
// silence; then the storm guard trips and the open page says so.
func TestBrowserAlerts(t *testing.T) {
	exe := headless.Chromium(t)
	wire, am := withAlertmanager(t)
	e := start(t, wire)
	shots := headless.ScreenshotDir(t)
	s := headless.New(t, exe)
	css := func(s string) chromedp.CSS { return chromedp.CSS(s) }
	e.api(200, "PUT", "/api/v1/projects/"+e.project+"/alert-settings", e.admin, map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "warning", "stormThreshold": 5})
	edge := e.createCluster(e.project, "edge-shanghai-1")
	line := e.createCluster(e.project, "edge-berlin-2")
	e.fireBoth(am, e.project, edge, "EMQXConnectorAbnormal")
	e.fire(e.project, line, "EMQXRuleAbnormal")

	s.Login(e.url, "admin", adminPassword)
	s.Run("open alerts",
		chromedp.Click(css(`nav.tabs a[href$="/alerts"]`)),
		chromedp.WaitVisible(css(`a[aria-label="Silence alert EMQXConnectorAbnormal"]`)),
		chromedp.Click(css(`a[aria-label="Silence alert EMQXConnectorAbnormal"]`)),
		chromedp.WaitVisible(css("#comment")),
		chromedp.SendKeys(css("#comment"), "connector swap during tonight's maintenance"),
		chromedp.Submit(css("#comment")),
		chromedp.WaitVisible(css("#silences [data-silence]")),
	)
	s.RunFor("see it silenced", 20*time.Second, chromedp.WaitVisible(css("[data-silenced]")))
	if text := headless.Value(s, "silenced row", chromedp.Text(css("[data-silenced]"))); !strings.Contains(text, "by admin until") || !strings.Contains(text, "connector swap") {
		t.Errorf("silenced alert says %q", text)
	}
	s.Screenshot(shots, "alerts-silenced")
	if n := headless.Value(s, "rows", chromedp.Evaluate[int](`document.querySelectorAll("tr[data-alert]").length`)); n != 2 {
		t.Errorf("%d alerts listed, want 2", n)
	}

	for i := range 5 {
		e.fire(e.project, line, "EMQXRuleFailuresHigh"+strconv.Itoa(i))
	}
	s.RunFor("see the storm", 20*time.Second, chromedp.WaitVisible(css("#storm")))
	if text := headless.Value(s, "storm", chromedp.Text(css("#storm"))); !strings.Contains(text, "notifications are stopped") {
		t.Errorf("storm says %q", text)
	}
	s.Screenshot(shots, "alerts-storm")
	if errs := s.Errors(); len(errs) > 0 {
		t.Errorf("script errors in the page: %v", errs)
	}
}
