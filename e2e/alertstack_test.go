package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
	"github.com/ecpio/ecp/rules"
)

// alertStack is ecp with real Prometheus, Alertmanager and Mailpit, and a
// free address for an EMQX simulator.
type alertStack struct {
	*stack
	promURL, amURL, mailURL string
	simAddr                 string
}

// startAlertStack starts Mailpit, Alertmanager, Prometheus (evaluating
// every second) and ecp telling agents to report every interval, and logs
// in as the system admin.
func startAlertStack(t *testing.T, interval time.Duration) alertStack {
	t.Helper()
	promBin := tool(t, "prometheus", "bash scripts/install-prometheus.sh")
	amBin := tool(t, "prometheus-alertmanager", "bash scripts/install-prometheus.sh")
	mailpitBin := tool(t, "mailpit", "bash scripts/install-mailpit.sh")
	ctx := t.Context()
	s := &stack{t: t, dir: t.TempDir()}
	addrs := make([]string, 6)
	for i := range addrs {
		a, err := testbed.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = a
	}
	ecpAddr, promAddr, amAddr, smtpAddr, mailAddr, simAddr := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4], addrs[5]
	s.base = "http://" + ecpAddr
	promURL, amURL, mailURL := "http://"+promAddr, "http://"+amAddr, "http://"+mailAddr

	// Mailpit: the SMTP server Alertmanager delivers to, read over its API.
	mail := s.start("mailpit", mailpitBin, []string{"--smtp", smtpAddr, "--listen", mailAddr,
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--disable-version-check",
		"--database", filepath.Join(s.dir, "mailpit.db")}, nil)
	if err := mail.WaitReady(ctx, mailURL+"/readyz", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Alertmanager starts from an empty route until ecp writes its file.
	rulesDir := filepath.Join(s.dir, "rules")
	amFile := filepath.Join(s.dir, "alertmanager.yml")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(amFile, []byte("route:\n  receiver: ecp-none\nreceivers:\n  - name: ecp-none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	am := s.start("alertmanager", amBin, []string{"--config.file=" + amFile, "--storage.path=" + filepath.Join(s.dir, "am-data"),
		"--web.listen-address=" + amAddr, "--cluster.listen-address="}, nil)
	if err := am.WaitReady(ctx, amURL+"/-/ready", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	promCfg := filepath.Join(s.dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
scrape_configs:
  - job_name: ecp
    honor_labels: true
    static_configs: [{targets: [%q]}]
`, filepath.Join(rulesDir, "*.rules.yml"), amAddr, ecpAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := s.start("prometheus", promBin, []string{"--config.file=" + promCfg, "--storage.tsdb.path=" + filepath.Join(s.dir, "prom-data"),
		"--web.listen-address=" + promAddr, "--web.enable-lifecycle", "--web.enable-remote-write-receiver",
		// Each reload ecp posts re-discovers Alertmanager; alerts that fire
		// in that gap are dropped and re-sent only after the resend delay
		// (1m by default), which this test cannot wait for.
		"--rules.alert.resend-delay=1s"}, nil)
	if err := prom.WaitReady(ctx, promURL+"/-/ready", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	s.ecp = s.start("ecp", bins.Path("ecp"), []string{"serve",
		"--web.listen-address", ecpAddr, "--web.external-url", s.base,
		"--data.dir", filepath.Join(s.dir, "ecp"), "--downloads.dir", bins.DistDir,
		"--agent.report-interval", interval.String(), "--log.level", "debug",
		"--remote-write.url", promURL + "/api/v1/write",
		"--prometheus.url", promURL, "--prometheus.rules-dir", rulesDir,
		"--alertmanager.url", amURL, "--alertmanager.config-file", amFile,
		"--smtp.smarthost", smtpAddr, "--smtp.from", "ecp@example.test", "--no-smtp.require-tls"},
		[]string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword})
	if err := s.ecp.WaitReady(ctx, s.base+"/-/ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	var err error
	if s.api, err = testbed.Login(ctx, s.base, "admin", adminPassword); err != nil {
		t.Fatal(err)
	}
	return alertStack{stack: s, promURL: promURL, amURL: amURL, mailURL: mailURL, simAddr: simAddr}
}

// alertToWebhook lets the project's alerts reach a webhook on loopback (the
// notification policy allows 127.0.0.0/8), switches alerting on at trigger
// and recovery count 1 with that webhook at path, and waits until the
// settings are applied to Prometheus and Alertmanager.
func alertToWebhook(t *testing.T, s *stack, projectID, path string, emqxAlertPush bool) *sink {
	t.Helper()
	ctx := t.Context()
	hook := newSink(t)
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}}, nil); err != nil {
		t.Fatal(err)
	}
	applyAlertSettings(t, s, projectID, map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical", "emqxAlertPush": emqxAlertPush,
		"webhooks": []map[string]string{{"url": hook.URL + path}},
	})
	return hook
}

// stormOf is the project's storm state (GET …/alerts/storm).
type stormOf struct {
	State    string     `json:"state"`
	Count    int        `json:"count"`
	NoticeAt *time.Time `json:"noticeAt"`
}

// raiseStorm raises five new EMQX alarms (storm_0 to storm_4) on the
// simulator at simURL and waits until ecp says the project's storm guard
// tripped and sent its notice.
func raiseStorm(t *testing.T, s *stack, projectID, simURL string) {
	t.Helper()
	for i := range 5 {
		simPost(t, fmt.Sprintf("%s/sim/alarms/storm_%d/raise", simURL, i), `{"message":"e2e: storm"}`)
	}
	eventually(t, 60*time.Second, "the storm tripped and its notice sent", func() (bool, string) {
		var storm stormOf
		if err := s.api.Do(t.Context(), http.MethodGet, "/api/v1/projects/"+projectID+"/alerts/storm", nil, &storm); err != nil {
			return false, err.Error()
		}
		return storm.State == "storm" && storm.NoticeAt != nil, fmt.Sprintf("%+v", storm)
	})
}

// applyAlertSettings puts the project's alert settings and waits until
// they are applied to Prometheus and Alertmanager.
func applyAlertSettings(t *testing.T, s *stack, projectID string, settings map[string]any) {
	t.Helper()
	ctx := t.Context()
	settingsPath := "/api/v1/projects/" + projectID + "/alert-settings"
	if err := s.api.Do(ctx, http.MethodPut, settingsPath, settings, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "settings applied to Prometheus and Alertmanager", func() (bool, string) {
		var st struct {
			Status struct{ Delivery, Message string }
		}
		if err := s.api.Do(ctx, http.MethodGet, settingsPath, nil, &st); err != nil {
			return false, err.Error()
		}
		return st.Status.Delivery == "applied", st.Status.Delivery + ": " + st.Status.Message
	})
}

// waitAlertmanagerFound waits until Prometheus sends to Alertmanager
// again. Each reload ecp posts makes Prometheus discover its Alertmanager
// anew, which takes up to five seconds (its discovery's update period);
// alerts that fire in that gap reach Alertmanager only at a later
// evaluation, seconds late.
func (as alertStack) waitAlertmanagerFound(t *testing.T) {
	t.Helper()
	eventually(t, 30*time.Second, "Prometheus sending to Alertmanager", func() (bool, string) {
		var r struct {
			Data struct {
				Active []struct {
					URL string `json:"url"`
				} `json:"activeAlertmanagers"`
			} `json:"data"`
		}
		getJSON(t, as.promURL+"/api/v1/alertmanagers", &r)
		for _, am := range r.Data.Active {
			if strings.HasPrefix(am.URL, as.amURL) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("active Alertmanagers %v", r.Data.Active)
	})
}

// alertTrail says where alert name stands on its way from the samples of
// series (a selector) to ecp's active list, for a failure to tell which
// stage held it: the samples Prometheus holds for the last minute, the
// alert's state there, Alertmanager's copy and ecp's list.
func (as alertStack) alertTrail(t *testing.T, project, name, series string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\nPrometheus %s[1m]: %s", series, promRaw(t, as.promURL, series+"[1m]"))
	fmt.Fprintf(&b, "\nPrometheus ALERTS: %s", promRaw(t, as.promURL, `ALERTS{alertname="`+name+`"}`))
	fmt.Fprintf(&b, "\nPrometheus rule group: %s", as.ruleGroupTimes(t, project, name))
	am := "unreachable"
	if resp, err := http.Get(as.amURL + "/api/v2/alerts?filter=" + url.QueryEscape(`alertname="`+name+`"`)); err == nil {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
		_ = resp.Body.Close()
		am = resp.Status + " " + string(body)
	}
	fmt.Fprintf(&b, "\nAlertmanager: %s", am)
	var listed []string
	for _, a := range listAlerts(t, as.stack, project, "active") {
		listed = append(listed, a.Name+" "+a.Labels["id"])
	}
	fmt.Fprintf(&b, "\necp's active list: %v", listed)
	return b.String()
}

// promRuleGroup is a rule group as Prometheus' /api/v1/rules lists it.
type promRuleGroup struct {
	Name           string    `json:"name"`
	Interval       float64   `json:"interval"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	EvaluationTime float64   `json:"evaluationTime"`
	Rules          []struct {
		Name      string `json:"name"`
		Query     string `json:"query"`
		State     string `json:"state"`
		Health    string `json:"health"`
		LastError string `json:"lastError"`
	} `json:"rules"`
}

// ruleGroup is the project's rule group in the Prometheus at promURL;
// false while Prometheus has not loaded it.
func ruleGroup(t *testing.T, promURL, project string) (promRuleGroup, bool) {
	t.Helper()
	var r struct {
		Data struct{ Groups []promRuleGroup } `json:"data"`
	}
	getJSON(t, promURL+"/api/v1/rules", &r)
	for _, g := range r.Data.Groups {
		if g.Name == rules.GroupName(project) {
			return g, true
		}
	}
	return promRuleGroup{}, false
}

// ruleGroupTimes says when Prometheus last evaluated the project's rule
// group and alert name in it, with the time now: against the samples'
// timestamps it shows which samples each evaluation could see.
func (as alertStack) ruleGroupTimes(t *testing.T, project, name string) string {
	t.Helper()
	g, ok := ruleGroup(t, as.promURL, project)
	if !ok {
		return "no group for project " + project
	}
	out := fmt.Sprintf("%s every %gs, last evaluated %s (took %.3fs), now %s", g.Name, g.Interval,
		g.LastEvaluation.UTC().Format("15:04:05.000"), g.EvaluationTime, time.Now().UTC().Format("15:04:05.000"))
	for _, rl := range g.Rules {
		if rl.Name == name {
			out += fmt.Sprintf("; %s %s %s %s, evaluating %q", rl.Name, rl.State, rl.Health, rl.LastError, rl.Query)
		}
	}
	return out
}
