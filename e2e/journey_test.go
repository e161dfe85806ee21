package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ecpio/ecp/internal/testbed"
	"github.com/ecpio/ecp/internal/testbed/headless"
)

// TestJourneyNewOperatorInBrowser walks, in a browser, the first hour of a
// new operator on a fresh ecp wired to real Prometheus, Alertmanager,
// Mailpit and VictoriaLogs: the system admin sets up an organization, a
// project and a project admin from the console and points ecp at the log
// store; the project admin turns alerting on, adds a cluster and registers
// emqx-sim with the commands copied out of the registration guide, run
// with the agent ecp serves for download; the cluster page fills in without
// a reload; a rule broken on EMQX arrives on the Alerts page and by e-mail
// with names; the Logs page finds its log line by part of a word. No page
// raises a script error on the way. With $ECP_CONSOLE_SCREENSHOTS it writes
// the journey's screenshots there (docs/console).
func TestJourneyNewOperatorInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries, Chromium, Prometheus, Alertmanager, Mailpit and VictoriaLogs")
	}
	exe := headless.Chromium(t)
	// ecp's interval as in the demo: alerts fire within seconds.
	const interval = 5 * time.Second
	const (
		org, project, cluster = "Northwind", "plant-1", "edge-shanghai-1"
		user, password        = "olivia", "olivia-Secret-99"
		inbox                 = "ops@example.test"
	)
	as := startAlertStack(t, interval)
	ctx, st := t.Context(), as.stack
	vlURL := startVictoriaLogs(t, st)
	simURL, logDir := "http://"+as.simAddr, filepath.Join(st.dir, "emqx-log")
	sim := st.start("emqx-sim", bins.Path("emqx-sim"), []string{"--listen", as.simAddr, "--nodes", "3", "--rules", "10",
		"--connectors", "4", "--seed", "7", "--version", "5.8.9", "--tick-interval", "200ms",
		"--log.dir", logDir, "--log.rate", "0"}, nil)
	if err := sim.WaitReady(ctx, simURL+"/status", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	shots := headless.ScreenshotDir(t)
	s := headless.New(t, exe)
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	// send fills a form's fields in order, sends it and waits for what the
	// answer shows.
	// saved waits for the address a form's success redirects to.
	saved := func(what string) {
		t.Helper()
		eventually(t, 15*time.Second, what+" saved", func() (bool, string) {
			loc := headless.Value(s, "address", chromedp.Location())
			return strings.Contains(loc, "done=saved"), loc
		})
	}
	send := func(what, action string, fields [][2]string, shows string) {
		t.Helper()
		var acts []chromedp.Action[chromedp.Void]
		for _, f := range fields {
			acts = append(acts, chromedp.SendKeys(css(f[0]), f[1]))
		}
		acts = append(acts, chromedp.Click(css(`form[action="`+action+`"] button`)), chromedp.WaitVisible(css(shows)))
		s.Run(what, acts...)
	}

	// The system admin: organization, project, user and role from Setup.
	s.Run("log in to a fresh ecp",
		chromedp.Navigate(st.base+"/login"),
		chromedp.SendKeys(css("#username"), "admin"),
		chromedp.SendKeys(css("#password"), adminPassword),
		chromedp.Submit(css("#password")),
		chromedp.Click(css(`main a.button[href="/setup"]`)),
		chromedp.WaitVisible(css("#org-name")),
	)
	send("create the organization", "/setup/orgs", [][2]string{{"#org-name", org}}, "#project-name")
	send("create the project", "/setup/projects", [][2]string{{"#project-name", project}}, `#orgs a[data-project="`+project+`"]`)
	send("create the user", "/setup/users", [][2]string{{"#user-username", user}, {"#user-password", password}, {"#user-password2", password}},
		`#users tr[data-user="`+user+`"]`)
	headless.Value(s, "choose project admin of "+project, chromedp.Evaluate[bool](fmt.Sprintf(`
		document.getElementById("grant-role").value = "project-admin";
		[...document.querySelectorAll("#grant-scope option")].find(o => o.text === %q).selected = true`, "Project "+org+" / "+project)))
	send("make "+user+" the project's admin", "/setup/role-bindings", nil, `tr[data-binding][data-user="`+user+`"]`)

	// The log store, on the System page: saving tests the connection.
	s.Run("set the log receiver",
		chromedp.Click(css(`a[href="/system"]`)),
		chromedp.WaitVisible(css("#rcv-url")),
		chromedp.SetValue(css("#rcv-type"), "victorialogs"),
		chromedp.SendKeys(css("#rcv-url"), vlURL),
		chromedp.Click(css(`form[action="/system/log-receiver"] button.primary`)),
	)
	saved("the log receiver")
	s.Run("log out", chromedp.Click(css(`form.user button`)), chromedp.WaitVisible(css("#username")))

	// The project admin: alerting on, by e-mail, with one bad collection.
	s.Login(st.base, user, password)
	s.Run("open the alert settings",
		chromedp.Click(css(`nav.tabs a[href$="/alerts"]`)),
		chromedp.Click(css(`a[href$="/alert-settings"]`)),
		chromedp.WaitVisible(css("#triggerCount")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('input[name="enabled"]').checked = true`),
		chromedp.SetValue(css("#triggerCount"), "1"),
		chromedp.SetValue(css("#emails"), inbox),
		chromedp.Click(css(`main form[action$="/alert-settings"] button.primary`)),
	)
	saved("the alert settings")
	eventually(t, 30*time.Second, "the alert settings applied to Prometheus and Alertmanager", func() (bool, string) {
		s.Run("reload", chromedp.Reload())
		status := headless.Value(s, "delivery", chromedp.Text(css(`main p[class*="delivery-"]`)))
		return strings.HasPrefix(status, "applied"), status
	})

	// Add a cluster and follow its registration guide.
	s.Run("add a cluster",
		chromedp.Click(css(`nav.tabs a[href$="/clusters"]`)),
		chromedp.Click(css(`a[href$="/clusters/new"]`)),
		chromedp.SendKeys(css("#name"), cluster),
		chromedp.Submit(css("#name")),
		chromedp.WaitVisible(css("#register-cmd")),
	)
	// What the Copy buttons hand the clipboard is what the operator pastes.
	headless.Value(s, "watch the clipboard", chromedp.Evaluate[bool](`
		window.__copied = [];
		navigator.clipboard.writeText = t => { window.__copied.push(t); return Promise.resolve(); };
		true`))
	s.Run("fill the EMQX form as the guide asks",
		chromedp.Click(css("#arch-"+runtime.GOARCH)),
		chromedp.SendKeys(css("#emqx-username"), "admin"),
		chromedp.SendKeys(css("#emqx-password"), "public"),
		chromedp.SendKeys(css("#emqx-dashboard-url"), simURL),
		chromedp.SendKeys(css("#emqx-api-url"), simURL),
		chromedp.Click(css("#emqx-logs")),
		chromedp.Clear(css("#emqx-log-dir")),
		chromedp.SendKeys(css("#emqx-log-dir"), logDir),
		chromedp.Click(css(`button.copy[data-copy="download-`+runtime.GOARCH+`"]`)),
		chromedp.Click(css(`button.copy[data-copy="run-cmd"]`)),
		chromedp.Click(css(`button.copy[data-copy="register-cmd"]`)),
	)
	copied := headless.Value(s, "copied commands", chromedp.Poll[[]string](`window.__copied.length === 3 && window.__copied`))
	download, run, register := copied[0], copied[1], copied[2]
	if strings.Contains(register, "<") {
		t.Fatalf("the register command keeps a placeholder after filling the form: %s", register)
	}
	s.Screenshot(shots, "journey-registration")
	clusterPath := headless.Value(s, "the cluster's address", chromedp.Evaluate[string](`location.pathname`))
	s.Run("open the cluster page",
		chromedp.Click(css(`nav.crumbs a[href="`+clusterPath+`"]`)),
		chromedp.WaitVisible(css("main .badge-created")),
		chromedp.Evaluate[chromedp.Void](`window.__notReloaded = true`),
	)

	// On the broker host: paste the three steps. Other tests run agents on
	// this machine at the same time: the agent takes another port, as the
	// guide says to where 9733 is taken, and its own state directory.
	agentDir := filepath.Join(st.dir, "broker-host")
	if err := os.MkdirAll(agentDir, 0o750); err != nil {
		t.Fatal(err)
	}
	agentAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	local := " --state.dir " + filepath.Join(agentDir, "state")
	shell(t, agentDir, download)
	runArgs := strings.Fields(strings.TrimSuffix(strings.TrimSpace(run), "&"))
	if len(runArgs) != 2 || runArgs[0] != "./agent-exporter" {
		t.Fatalf("the guide's run command is %q, want ./agent-exporter run &", run)
	}
	agent := st.start("agent-exporter", filepath.Join(agentDir, "agent-exporter"), append(runArgs[1:],
		strings.Fields(local+" --web.listen-address "+agentAddr)...), nil)
	if err := agent.WaitReady(ctx, "http://"+agentAddr+"/-/healthy", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	shell(t, agentDir, register+local)

	// Every field fills in by itself.
	// Version, nodes, connections, started, managed since, last report:
	// none may still show what it shows before the first report.
	headless.ValueFor(s, "the cluster page fills in", 4*interval, chromedp.Poll[bool](`document.querySelector("main .badge-running") !== null &&
		[...document.querySelectorAll("main .facts dd")].slice(0, 6).every(d => !/^(—|never|0 \(0 live\))/.test(d.textContent.trim()))`, slowPoll...))
	facts := headless.Value(s, "facts", chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("main .facts dt")].map(dt => [dt.textContent, dt.nextElementSibling.textContent.trim()]))`))
	for field, want := range map[string]string{
		"Version":        `^5\.8\.9$`,
		"Nodes":          `^3 running of 3$`,
		"Connections":    `^\d+ \(\d+ live\) of max 10\b`,
		"Started":        `\d`,
		"Last report":    `ago|just now|\d`,
		"Log collection": "^on, " + regexp.QuoteMeta(logDir) + "$",
	} {
		if !regexp.MustCompile(want).MatchString(facts[field]) {
			t.Errorf("cluster page %s: %q, want %s", field, facts[field], want)
		}
	}
	if !headless.Value(s, "the page was not reloaded", chromedp.Evaluate[bool](`window.__notReloaded === true`)) {
		t.Error("the cluster page reloaded to fill in")
	}
	s.Screenshot(shots, "journey-cluster")

	// Break a rule on EMQX: the alert arrives with names.
	var rule string
	eventually(t, 4*interval, "the agent's rule series in Prometheus", func() (bool, string) {
		ids := promLabelValues(t, as.promURL, `emqx_rule_enabled == 1`, "id")
		if len(ids) == 0 {
			return false, "no series"
		}
		rule = ids[0]
		return true, ""
	})
	simPost(t, simURL+"/sim/rules/"+rule+"/fail", `{"reason":"journey: bad SQL"}`)
	failed := time.Now()
	alertShown := false
	defer func() {
		// Which stage held it: the samples, Prometheus, Alertmanager or ecp.
		if !alertShown && t.Failed() {
			t.Log("the rule's alert after", time.Since(failed).Round(time.Second), as.alertTrail(t, strings.Split(clusterPath, "/")[2],
				"EMQXRuleAbnormal", `{__name__=~"emqx_rule_failed_total|emqx_rule_actions_failed_total", id="`+rule+`"}`))
		}
	}()
	s.Run("open the alerts", chromedp.Click(css(`nav.tabs a[href$="/alerts"]`)), chromedp.WaitVisible(css("#alerts-body")))
	row := headless.ValueFor(s, "the rule's alert on the Alerts page", 2*interval+30*time.Second,
		chromedp.Poll[string](`[...document.querySelectorAll("#alerts-body tr[data-alert]")].map(r => r.textContent).find(t => t.includes("EMQXRuleAbnormal")) || false`, slowPoll...))
	alertShown = true
	t.Logf("the rule's alert on the Alerts page %s after the rule failed", time.Since(failed).Round(100*time.Millisecond))
	// The summary names the cluster, not only its id.
	if want := rule + " is failing in cluster " + cluster; !strings.Contains(row, want) {
		t.Errorf("the alert row lacks %q: %s", want, row)
	}
	s.Screenshot(shots, "journey-alerts")
	eventually(t, 30*time.Second, "the alert's e-mail in Mailpit", func() (bool, string) {
		body, n := mailFor(t, as.mailURL, inbox, "EMQXRuleAbnormal")
		for _, want := range []string{org, project, cluster} {
			if !strings.Contains(body, want) {
				return false, fmt.Sprintf("%d messages, none names %q: %.2000s", n, want, body)
			}
		}
		return true, ""
	})

	// A connector's health check fails on EMQX; its log line is found by
	// part of a word: "health" finds health_check_failed.
	connectors := promLabelValues(t, as.promURL, `emqx_connector_enabled == 1`, "id")
	if len(connectors) == 0 {
		t.Fatal("no connector series in Prometheus")
	}
	simPost(t, simURL+"/sim/connectors/"+connectors[0]+"/fail", `{"reason":"journey: sink down"}`)
	s.Run("search the logs for part of a word",
		chromedp.Click(css(`nav.tabs a[href$="/logs"]`)),
		chromedp.SendKeys(css("#log-q"), "health"),
		chromedp.Submit(css("#log-q")),
		chromedp.WaitVisible(css(`#log-q[value="health"]`)),
	)
	rowsJS := `[...document.querySelectorAll("main table.logs tbody tr")].map(r => r.innerText)`
	eventually(t, 30*time.Second, "the health_check_failed line on the Logs page", func() (bool, string) {
		rows := headless.Value(s, "search result", chromedp.Evaluate[[]string](rowsJS))
		if len(rows) > 0 {
			return true, ""
		}
		// The line may still be on its way: search again.
		s.Run("search again", chromedp.Reload(), chromedp.WaitVisible(css(`#log-q[value="health"]`)))
		return false, "no lines"
	})
	for _, row := range headless.Value(s, "search result", chromedp.Evaluate[[]string](rowsJS)) {
		for _, want := range []string{"health_check_failed", cluster, "emqx@", connectors[0]} {
			if !strings.Contains(row, want) {
				t.Errorf("a line found by %q lacks %q: %s", "health", want, row)
			}
		}
	}
	s.Screenshot(shots, "journey-logs")

	if errs := s.Errors(); len(errs) > 0 {
		t.Errorf("script errors in the pages: %v", errs)
	}
}

// slowPoll lets a step wait as long as its own deadline, checking a few
// times a second rather than at every frame on a busy machine.
var slowPoll = []chromedp.PollOption{chromedp.WithPollingTimeout(0), chromedp.WithPollingInterval(250 * time.Millisecond)}

// startVictoriaLogs runs a VictoriaLogs for the stack and returns its URL.
func startVictoriaLogs(t *testing.T, st *stack) string {
	t.Helper()
	addr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p := st.start("victoria-logs", victoriaLogsBin(t), []string{"-storageDataPath=" + filepath.Join(st.dir, "victoria-logs"),
		"-httpListenAddr=" + addr, "-loggerLevel=ERROR"}, nil)
	if err := p.WaitReady(t.Context(), "http://"+addr+"/health", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// shell runs commands copied from the guide in dir, as a terminal would.
func shell(t *testing.T, dir, commands string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "sh", "-e", "-c", commands)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("running the guide's commands:\n%s\n%v\n%s", commands, err, out)
	}
}
