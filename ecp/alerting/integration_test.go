package alerting

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/rules"
)

// daemon is a real Prometheus or Alertmanager started for one test.
type daemon struct {
	url string
	out *bytes.Buffer
}

// freeAddr picks a free loopback port. The daemon binds it a moment later;
// another process taking it in between makes startDaemon fail loudly.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// startDaemon runs bin until the test ends and waits for /-/ready.
func startDaemon(t *testing.T, bin, addr string, args ...string) *daemon {
	t.Helper()
	d := &daemon{url: "http://" + addr, out: &bytes.Buffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the test binary
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), d.out)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(d.url + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s within 15s (last error %v)\n%s", filepath.Base(bin), d.url, err, d.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

// promRules is the part of Prometheus' /api/v1/rules the test reads.
type promRules struct {
	Data struct {
		Groups []struct {
			Name  string `json:"name"`
			File  string `json:"file"`
			Rules []struct {
				Name          string  `json:"name"`
				Duration      float64 `json:"duration"`
				KeepFiringFor float64 `json:"keepFiringFor"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"data"`
}

func loadedGroups(t *testing.T, promURL string) map[string]map[string][2]float64 {
	t.Helper()
	var r promRules
	getJSON(t, promURL+"/api/v1/rules", &r)
	groups := map[string]map[string][2]float64{}
	for _, g := range r.Data.Groups {
		rules := map[string][2]float64{}
		for _, rl := range g.Rules {
			rules[rl.Name] = [2]float64{rl.Duration, rl.KeepFiringFor}
		}
		groups[g.Name] = rules
	}
	return groups
}

func loadedAlertmanagerConfig(t *testing.T, amURL string) string {
	t.Helper()
	var st struct {
		Config struct {
			Original string `json:"original"`
		} `json:"config"`
	}
	getJSON(t, amURL+"/api/v2/status", &st)
	return st.Config.Original
}

// routedProjects lists the projects Alertmanager's running config routes
// to a receiver of their own. Its status shows the config as Alertmanager
// re-marshalled it (secrets as <secret>), not the file's bytes.
func routedProjects(t *testing.T, amURL string) []string {
	t.Helper()
	var cfg struct {
		Route struct {
			Routes []struct {
				Receiver string   `yaml:"receiver"`
				Matchers []string `yaml:"matchers"`
				Continue bool     `yaml:"continue"`
			} `yaml:"routes"`
		} `yaml:"route"`
	}
	if err := yaml.Unmarshal([]byte(loadedAlertmanagerConfig(t, amURL)), &cfg); err != nil {
		t.Fatal(err)
	}
	var projects []string
	for i, r := range cfg.Route.Routes {
		if i == 0 {
			if r.Receiver != ReceiverECP || !r.Continue || len(r.Matchers) != 0 {
				t.Fatalf("first route %+v, want ecp's catch-all with continue", r)
			}
			continue
		}
		id := strings.TrimPrefix(r.Receiver, "project-")
		if len(r.Matchers) != 1 || r.Matchers[0] != fmt.Sprintf("project=%q", id) {
			t.Fatalf("route %+v does not match its project alone", r)
		}
		projects = append(projects, id)
	}
	return projects
}

func groupNames(g map[string]map[string][2]float64) []string {
	var names []string
	for n := range g {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// stack is a real Prometheus and Alertmanager wired together, with the
// options that point ecp at them.
type stack struct {
	prom, am *daemon
	opts     Options
}

// startStack starts Debian's Alertmanager and Prometheus on free loopback
// ports, data in t.TempDir(), killed when the test ends. scrapeTarget, when
// set, is scraped every second with honor_labels (it plays the stamped agent
// series).
func startStack(t *testing.T, o Options, scrapeTarget string) *stack {
	t.Helper()
	promBin, amBin := tool(t, "prometheus"), tool(t, "prometheus-alertmanager")
	dir := t.TempDir()
	o.RulesDir = filepath.Join(dir, "rules")
	o.AlertmanagerConfigFile = filepath.Join(dir, "alertmanager.yml")
	if err := os.MkdirAll(o.RulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Alertmanager needs a config to start: ecp's, with no project yet.
	empty, err := RenderAlertmanager(nil, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(o.AlertmanagerConfigFile, empty, 0o600); err != nil {
		t.Fatal(err)
	}
	amAddr, promAddr := freeAddr(t), freeAddr(t)
	am := startDaemon(t, amBin, amAddr, "--config.file="+o.AlertmanagerConfigFile, "--storage.path="+filepath.Join(dir, "am-data"),
		"--web.listen-address="+amAddr, "--cluster.listen-address=")
	scrape := ""
	if scrapeTarget != "" {
		scrape = fmt.Sprintf(`scrape_configs:
  - job_name: agent
    scrape_interval: 1s
    honor_labels: true
    static_configs: [{targets: [%q]}]
`, scrapeTarget)
	}
	promCfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, fmt.Appendf(nil, `global:
  evaluation_interval: 15s
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%q]}]
%s`, filepath.Join(o.RulesDir, "*"+RuleFileSuffix), amAddr, scrape), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := startDaemon(t, promBin, promAddr, "--config.file="+promCfg, "--storage.tsdb.path="+filepath.Join(dir, "prom-data"),
		"--web.listen-address="+promAddr, "--web.enable-lifecycle", "--web.enable-remote-write-receiver")
	o.PrometheusURL, o.AlertmanagerURL = prom.url, am.url
	return &stack{prom: prom, am: am, opts: o}
}

// TestIntegrationRealPrometheusAndAlertmanager applies settings to Debian's
// Prometheus 2.42 and Alertmanager 0.25, checks through their APIs that
// the rules and routes are what runs, and that a broken file is refused
// with the server's message while the running configuration stays.
func TestIntegrationRealPrometheusAndAlertmanager(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and Alertmanager; skipped with -short")
	}
	reg := prometheus.NewRegistry()
	o := testOptions()
	o.Registerer = reg
	st := startStack(t, o, "")
	prom, am := st.prom, st.am
	rulesDir, amFile := st.opts.RulesDir, st.opts.AlertmanagerConfigFile
	a, err := New(st.opts)
	if err != nil {
		t.Fatal(err)
	}

	// 1. Apply: the enabled projects' rules and routes are loaded.
	projects := testProjects()
	if err := a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	groups := loadedGroups(t, prom.url)
	if got, want := groupNames(groups), []string{"ecp-project-alpha", "ecp-project-beta", "ecp-project-gamma"}; !slices.Equal(got, want) {
		t.Fatalf("loaded groups %v, want %v", got, want)
	}
	// beta: trigger 3, recovery 2 at 15s → for 30s, keep_firing_for 15s.
	if got := groups["ecp-project-beta"]["EMQXConnectorAbnormal"]; got != [2]float64{30, 15} {
		t.Fatalf("beta's for/keep_firing_for as loaded: %v, want [30 15]", got)
	}
	if got := groups["ecp-project-alpha"]["EMQXConnectorAbnormal"]; got != [2]float64{0, 0} {
		t.Fatalf("alpha's for/keep_firing_for as loaded: %v, want [0 0]", got)
	}
	if got, want := routedProjects(t, am.url), []string{"alpha", "beta"}; !slices.Equal(got, want) {
		t.Fatalf("alertmanager routes projects %v, want %v", got, want)
	}
	if cfg := loadedAlertmanagerConfig(t, am.url); strings.Contains(cfg, testSMTPPassword) || strings.Contains(cfg, testWebhookToken) {
		t.Fatal("alertmanager's status shows a secret")
	}

	// 2. Invalid settings are refused before anything is written: the
	// others keep running, the bad project gets nothing.
	bad := map[string]Settings{"alpha": projects["alpha"], "beta": {Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: "urgent"}}
	err = a.Apply(t.Context(), bad)
	var pe *ProjectError
	if !errors.As(err, &pe) || pe.Project != "beta" || !strings.Contains(err.Error(), "severity") {
		t.Fatalf("got %v, want beta refused on severity", err)
	}
	if got, want := groupNames(loadedGroups(t, prom.url)), []string{"ecp-project-alpha"}; !slices.Equal(got, want) {
		t.Fatalf("loaded groups %v, want %v", got, want)
	}
	if err := a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}

	// 3. A broken rule file (as if edited by hand) is refused by
	// Prometheus: the error carries its message, the metric counts it, and
	// the previous rules stay loaded.
	broken := filepath.Join(rulesDir, RuleFileName("broken"))
	if err := os.WriteFile(broken, []byte("groups:\n  - name: broken\n    rules:\n      - alert: X\n        expr: sum(up\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = a.Reload(t.Context())
	if err == nil || !strings.Contains(err.Error(), "reloading prometheus: 500") || !strings.Contains(err.Error(), "failed to reload config") {
		t.Fatalf("got %v, want Prometheus' refusal", err)
	}
	if got := groupNames(loadedGroups(t, prom.url)); len(got) != 3 {
		t.Fatalf("after a refused reload Prometheus runs %v, want the 3 previous groups", got)
	}
	if got := testutil.ToFloat64(a.reloadFailures.WithLabelValues(TargetPrometheus)); got != 1 {
		t.Fatalf("prometheus reload failures %v, want 1", got)
	}

	// 4. The same for a broken Alertmanager config.
	before := loadedAlertmanagerConfig(t, am.url)
	if err := os.WriteFile(amFile, []byte("route: {receiver: nowhere}\nreceivers: [{name: x}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = a.Reload(t.Context())
	if err == nil || !strings.Contains(err.Error(), "reloading alertmanager: 500") || !strings.Contains(err.Error(), `undefined receiver "nowhere"`) {
		t.Fatalf("got %v, want Alertmanager's refusal", err)
	}
	if got := loadedAlertmanagerConfig(t, am.url); got != before {
		t.Fatal("Alertmanager dropped its running config after a refused reload")
	}
	if got := testutil.ToFloat64(a.reloadSuccess.WithLabelValues(TargetAlertmanager)); got != 0 {
		t.Fatalf("alertmanager last reload success %v, want 0", got)
	}

	// 5. The next Apply repairs both: ecp's stale file is removed, the
	// config rewritten, and both reloads succeed.
	if err := a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(broken); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale ecp rule file still there: %v", err)
	}
	for _, target := range []string{TargetPrometheus, TargetAlertmanager} {
		if got := testutil.ToFloat64(a.reloadSuccess.WithLabelValues(target)); got != 1 {
			t.Fatalf("%s last reload success %v, want 1", target, got)
		}
	}
	if got, want := routedProjects(t, am.url), []string{"alpha", "beta"}; !slices.Equal(got, want) {
		t.Fatalf("after the repair alertmanager routes projects %v, want %v", got, want)
	}
}

// webhookSink records Alertmanager's webhook notifications by path.
type webhookSink struct {
	*httptest.Server
	mu    sync.Mutex
	calls []sinkCall
}

type sinkCall struct {
	path, auth string
	at         time.Time
	msg        amMessage
}

// amMessage is the part of Alertmanager's webhook payload (version 4) the
// tests read.
type amMessage struct {
	Version string `json:"version"`
	Status  string `json:"status"`
	Alerts  []struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
	} `json:"alerts"`
}

func newWebhookSink(t *testing.T) *webhookSink {
	s := &webhookSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m amMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.calls = append(s.calls, sinkCall{path: r.URL.Path, auth: r.Header.Get("Authorization"), at: time.Now(), msg: m})
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

// wait returns the first notification on path with the given status, or
// fails after timeout.
func (s *webhookSink) wait(t *testing.T, path, status string, timeout time.Duration) sinkCall {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		for _, c := range s.calls {
			if c.path == path && c.msg.Status == status {
				s.mu.Unlock()
				return c
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s notification on %s within %s", status, path, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForSeries waits until Prometheus has a sample for query.
func waitForSeries(t *testing.T, promURL, query string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var r struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		getJSON(t, promURL+"/api/v1/query?query="+url.QueryEscape(query), &r)
		if len(r.Data.Result) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has no %s within 30s", query)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestIntegrationConnectorAlertReachesWebhooks drives one alert through the
// real pipeline: a connector reported down fires EMQXConnectorAbnormal
// (trigger count 1), Alertmanager delivers it to ecp's webhook (with its
// bearer token) and to the project's webhook, both carrying project,
// cluster and connector; the connector heals and both get the resolution.
// Intervals are one second here; the figure logged is for these intervals.
func TestIntegrationConnectorAlertReachesWebhooks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and Alertmanager; skipped with -short")
	}
	var connected atomic.Int32 // the value of the connected status series
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c := connected.Load()
		fmt.Fprintf(w, "emqx_connector_status{project=\"alpha\",cluster=\"c1\",id=\"http:sink\",status=\"connected\"} %d\n", c)
		fmt.Fprintf(w, "emqx_connector_status{project=\"alpha\",cluster=\"c1\",id=\"http:sink\",status=\"disconnected\"} %d\n", 1-c)
		fmt.Fprintln(w, "emqx_connector_enabled{project=\"alpha\",cluster=\"c1\",id=\"http:sink\"} 1")
	}))
	t.Cleanup(agent.Close)
	connected.Store(1)
	sink := newWebhookSink(t)

	o := testOptions()
	o.Interval = time.Second
	o.WebhookURL = sink.URL + "/ecp"
	// Zero timers would mean Alertmanager's defaults (30s group_wait).
	o.Routing.GroupWait = model.Duration(100 * time.Millisecond)
	o.Routing.GroupInterval, o.Routing.ECPGroupInterval = model.Duration(time.Second), model.Duration(time.Second)
	st := startStack(t, o, strings.TrimPrefix(agent.URL, "http://"))
	a, err := New(st.opts)
	if err != nil {
		t.Fatal(err)
	}
	projects := map[string]Settings{
		"alpha": {Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityCritical,
			Webhooks: []Webhook{{URL: sink.URL + "/alpha"}},
			Names:    Names{Organization: "Acme", Project: "Alpha", Clusters: []rules.Cluster{{ID: "c1", Name: "Plant North"}}}},
	}
	if err := a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}

	// Prometheus starts scraping a new target only after its discovery
	// settles (about 5 s): measure from a connector Prometheus already sees.
	waitForSeries(t, st.prom.url, `emqx_connector_enabled{project="alpha"}`)
	down := time.Now()
	connected.Store(0)
	for _, path := range []string{"/ecp", "/alpha"} {
		c := sink.wait(t, path, "firing", 30*time.Second)
		if path == "/ecp" {
			t.Logf("connector down → ecp webhook: %s (1s scrape and evaluation, trigger count 1)", c.at.Sub(down).Round(10*time.Millisecond))
			if c.auth != "Bearer "+testWebhookToken {
				t.Fatalf("ecp webhook got Authorization %q", c.auth)
			}
		}
		if len(c.msg.Alerts) != 1 {
			t.Fatalf("%s got %d alerts, want 1", path, len(c.msg.Alerts))
		}
		al := c.msg.Alerts[0]
		for k, v := range map[string]string{"alertname": "EMQXConnectorAbnormal", "project": "alpha", "cluster": "c1", "id": "http:sink", "severity": "critical"} {
			if al.Labels[k] != v {
				t.Fatalf("%s: label %s=%q, want %q (labels %v)", path, k, al.Labels[k], v, al.Labels)
			}
		}
		if _, ok := al.Labels["status"]; ok {
			t.Fatalf("%s: the status label leaked into the alert: %v", path, al.Labels)
		}
		if al.Annotations["link"] != "https://ecp.example.test/clusters/c1" || al.Annotations["cluster_name"] != "Plant North" ||
			al.Annotations["project_name"] != "Alpha" || al.Annotations["organization_name"] != "Acme" ||
			al.Annotations["summary"] != "EMQX connector http:sink is not connected in cluster Plant North." {
			t.Fatalf("%s: annotations %v", path, al.Annotations)
		}
	}

	healed := time.Now()
	connected.Store(1)
	for _, path := range []string{"/ecp", "/alpha"} {
		c := sink.wait(t, path, "resolved", 90*time.Second)
		if path == "/ecp" {
			t.Logf("connector healed → resolution at ecp webhook: %s", c.at.Sub(healed).Round(10*time.Millisecond))
		}
	}

	// Alerting switched off: the route leaves, nothing more is sent.
	projects["alpha"] = Settings{Enabled: false, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityCritical}
	if err := a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	if got := routedProjects(t, st.am.url); len(got) != 0 {
		t.Fatalf("alerting off, yet alertmanager routes %v", got)
	}
	if got := loadedGroups(t, st.prom.url); len(got) != 0 {
		t.Fatalf("alerting off, yet prometheus runs %v", groupNames(got))
	}
}

// issue #12 item 9: "a deleted cluster's alert lingers 5 minutes". Its
// series stay in Prometheus' lookback for five minutes after the agent's
// last sample (remote write carries no staleness), so the rule kept firing.
// Here the series never stop (the worst case). Once the project's clusters
// no longer include it, the rules stop selecting it and Resolve (which ecp
// calls with the alerts it moved to history) resolves it in Alertmanager,
// which sends the resolution to ecp and the project within seconds: the
// rules alone take Prometheus' resend delay (1m2s measured), since the
// reload restarts Prometheus' Alertmanager discovery.
func TestJourneyRemovedClusterResolvesAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus and Alertmanager; skipped with -short")
	}
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, `emqx_connector_status{project="alpha",cluster="c1",id="http:sink",status="connected"} 0`)
		fmt.Fprintln(w, `emqx_connector_enabled{project="alpha",cluster="c1",id="http:sink"} 1`)
	}))
	t.Cleanup(agent.Close)
	sink := newWebhookSink(t)
	o := testOptions()
	o.Interval = time.Second
	o.WebhookURL = sink.URL + "/ecp"
	o.Routing.GroupWait = model.Duration(100 * time.Millisecond)
	o.Routing.GroupInterval, o.Routing.ECPGroupInterval = model.Duration(time.Second), model.Duration(time.Second)
	st := startStack(t, o, strings.TrimPrefix(agent.URL, "http://"))
	a, err := New(st.opts)
	if err != nil {
		t.Fatal(err)
	}
	alpha := Settings{Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityCritical,
		Webhooks: []Webhook{{URL: sink.URL + "/alpha"}},
		Names:    Names{Organization: "Acme", Project: "Alpha", Clusters: []rules.Cluster{{ID: "c1", Name: "Plant North"}}}}
	if err := a.Apply(t.Context(), map[string]Settings{"alpha": alpha}); err != nil {
		t.Fatal(err)
	}
	var fired sinkCall
	for _, path := range []string{"/ecp", "/alpha"} {
		fired = sink.wait(t, path, "firing", 45*time.Second)
	}

	// The cluster is deleted (or transferred away): ecp applies again and
	// resolves the alerts it moved to history.
	removed := time.Now()
	alpha.Names.Clusters = []rules.Cluster{}
	if err := a.Apply(t.Context(), map[string]Settings{"alpha": alpha}); err != nil {
		t.Fatal(err)
	}
	f := fired.msg.Alerts[0]
	if err := a.Resolve(t.Context(), []Resolution{{Labels: f.Labels, Annotations: f.Annotations, StartsAt: f.StartsAt}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/ecp", "/alpha"} {
		c := sink.wait(t, path, "resolved", 15*time.Second)
		t.Logf("cluster removed → resolution on %s: %s", path, c.at.Sub(removed).Round(10*time.Millisecond))
		if got := c.msg.Alerts[0].Annotations["cluster_name"]; got != "Plant North" {
			t.Errorf("%s: the resolution names cluster %q, want Plant North", path, got)
		}
	}
}
