package alerting

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/rules"
)

// fakeReloader stands in for /-/reload of Prometheus or Alertmanager.
type fakeReloader struct {
	*httptest.Server
	calls   atomic.Int32
	failMsg atomic.Pointer[string]
}

func newFakeReloader(t testing.TB) *fakeReloader {
	f := &fakeReloader{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/-/reload" || r.Method != http.MethodPost {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusMethodNotAllowed)
			return
		}
		f.calls.Add(1)
		if m := f.failMsg.Load(); m != nil {
			http.Error(w, *m, http.StatusInternalServerError)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

type applyEnv struct {
	a         *Alerting
	opts      Options
	reg       *prometheus.Registry
	prom, am  *fakeReloader
	logs      *bytes.Buffer
	rulesDir  string
	amFile    string
	foreignAt string
}

func newApplyEnv(t testing.TB) *applyEnv {
	t.Helper()
	e := &applyEnv{reg: prometheus.NewRegistry(), prom: newFakeReloader(t), am: newFakeReloader(t), logs: &bytes.Buffer{}}
	dir := t.TempDir()
	e.rulesDir = filepath.Join(dir, "rules")
	e.amFile = filepath.Join(dir, "alertmanager.yml")
	o := testOptions()
	o.RulesDir, o.AlertmanagerConfigFile = e.rulesDir, e.amFile
	o.PrometheusURL, o.AlertmanagerURL = e.prom.URL, e.am.URL+"/"
	o.Registerer = e.reg
	o.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.opts = o
	// An operator's own rule file beside ecp's: never touched.
	if err := os.MkdirAll(e.rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	e.foreignAt = filepath.Join(e.rulesDir, "operator.rules.yml")
	if err := os.WriteFile(e.foreignAt, []byte("groups: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	return e
}

func (e *applyEnv) ruleFiles(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(e.rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

func TestApplyWritesReloadsAndRemoves(t *testing.T) {
	e := newApplyEnv(t)
	projects := testProjects()
	if err := e.a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(e.ruleFiles(t), " "), "ecp_alpha.rules.yml ecp_beta.rules.yml ecp_gamma.rules.yml operator.rules.yml"; got != want {
		t.Fatalf("rules dir holds %q, want %q", got, want)
	}
	for _, id := range []string{"alpha", "beta", "gamma"} {
		got, err := os.ReadFile(filepath.Join(e.rulesDir, RuleFileName(id)))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join("testdata", "rules", RuleFileName(id)))
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from its golden file", id)
		}
	}
	am, err := os.ReadFile(e.amFile)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := os.ReadFile(filepath.Join("testdata", "alertmanager.yml")); !bytes.Equal(am, want) {
		t.Fatal("alertmanager.yml differs from its golden file")
	}
	if st, err := os.Stat(e.amFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("alertmanager.yml holds secrets: want mode 0600, got %v (%v)", st.Mode(), err)
	}
	if e.prom.calls.Load() != 1 || e.am.calls.Load() != 1 {
		t.Fatalf("reloads: prometheus %d, alertmanager %d; want 1 each", e.prom.calls.Load(), e.am.calls.Load())
	}

	// alpha switches alerting off, gamma is deleted: their files go, the
	// operator's stays, and alpha's route leaves Alertmanager.
	alpha := projects["alpha"]
	alpha.Enabled = false
	projects["alpha"] = alpha
	delete(projects, "gamma")
	if err := e.a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(e.ruleFiles(t), " "), "ecp_beta.rules.yml operator.rules.yml"; got != want {
		t.Fatalf("rules dir holds %q, want %q", got, want)
	}
	am, _ = os.ReadFile(e.amFile)
	if bytes.Contains(am, []byte(`project="alpha"`)) {
		t.Fatal("alpha's route survived disabling")
	}
	if e.prom.calls.Load() != 2 || e.am.calls.Load() != 2 {
		t.Fatalf("reloads: prometheus %d, alertmanager %d; want 2 each", e.prom.calls.Load(), e.am.calls.Load())
	}
	if err := testutil.CollectAndCompare(e.a.reloadSuccess, strings.NewReader(`
# HELP ecp_alerting_last_reload_success Whether the last reload of the target succeeded (1) or failed (0).
# TYPE ecp_alerting_last_reload_success gauge
ecp_alerting_last_reload_success{target="alertmanager"} 1
ecp_alerting_last_reload_success{target="prometheus"} 1
`)); err != nil {
		t.Fatal(err)
	}
}

func TestApplyReportsFailedReload(t *testing.T) {
	e := newApplyEnv(t)
	msg := "failed to reload config: one or more errors occurred while applying the new configuration"
	e.prom.failMsg.Store(&msg)
	err := e.a.Apply(t.Context(), testProjects())
	if err == nil || !strings.Contains(err.Error(), "reloading prometheus: 500 Internal Server Error: "+msg) {
		t.Fatalf("got %v, want prometheus' own message", err)
	}
	if e.am.calls.Load() != 1 {
		t.Fatal("a failed Prometheus reload must not stop the Alertmanager reload")
	}
	if got := testutil.ToFloat64(e.a.reloadFailures.WithLabelValues(TargetPrometheus)); got != 1 {
		t.Fatalf("prometheus reload failures %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.a.reloadSuccess.WithLabelValues(TargetPrometheus)); got != 0 {
		t.Fatalf("prometheus last reload success %v, want 0", got)
	}
	if got := testutil.ToFloat64(e.a.reloadSuccess.WithLabelValues(TargetAlertmanager)); got != 1 {
		t.Fatalf("alertmanager last reload success %v, want 1", got)
	}

	// Unreachable server: an error too, never silence.
	e.am.Close()
	e.prom.failMsg.Store(nil)
	err = e.a.Reload(t.Context())
	if err == nil || !strings.Contains(err.Error(), "reloading alertmanager") {
		t.Fatalf("got %v, want the alertmanager reload error", err)
	}
	if got := testutil.ToFloat64(e.a.reloadFailures.WithLabelValues(TargetAlertmanager)); got != 1 {
		t.Fatalf("alertmanager reload failures %v, want 1", got)
	}
	if problems, err := testutil.GatherAndLint(e.reg); err != nil || len(problems) > 0 {
		t.Fatalf("metric lint: %v %v", problems, err)
	}
}

func TestApplyLeavesOutAnInvalidProject(t *testing.T) {
	e := newApplyEnv(t)
	projects := testProjects()
	projects["bad"] = Settings{Enabled: true, TriggerCount: 0, RecoveryCount: 1, Severity: SeverityInfo}
	projects["bad id!"] = Settings{Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityInfo}
	err := e.a.Apply(t.Context(), projects)
	var pe *ProjectError
	if !errors.As(err, &pe) {
		t.Fatalf("got %v, want a *ProjectError", err)
	}
	var he *httpapi.Error
	if !errors.As(err, &he) || he.Field != "triggerCount" {
		t.Fatalf("got %v, want the triggerCount field named", err)
	}
	if !strings.Contains(err.Error(), `project "bad id!"`) {
		t.Fatalf("got %v, want the bad id reported", err)
	}
	// The others are in place and reloaded.
	if got, want := strings.Join(e.ruleFiles(t), " "), "ecp_alpha.rules.yml ecp_beta.rules.yml ecp_gamma.rules.yml operator.rules.yml"; got != want {
		t.Fatalf("rules dir holds %q, want %q", got, want)
	}
	if e.prom.calls.Load() != 1 {
		t.Fatal("the valid projects were not reloaded")
	}
	if got := testutil.ToFloat64(e.a.invalid); got != 2 {
		t.Fatalf("invalid projects gauge %v, want 2", got)
	}
}

func TestCheckRefusesEmailWithoutSMTP(t *testing.T) {
	e := newApplyEnv(t)
	if err := e.a.Check("beta", testProjects()["beta"]); err != nil {
		t.Fatalf("with SMTP: %v", err)
	}
	o := e.opts
	o.SMTP = SMTP{}
	o.Registerer = nil
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Check("beta", testProjects()["beta"])
	var he *httpapi.Error
	if !errors.As(err, &he) || he.Field != "emails" || !strings.Contains(he.Message, "--smtp.smarthost") {
		t.Fatalf("got %v, want 400 on emails naming --smtp.smarthost", err)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	e := newApplyEnv(t)
	msg := "boom"
	e.am.failMsg.Store(&msg)
	err := e.a.Apply(t.Context(), testProjects())
	if err == nil {
		t.Fatal("want the failed reload")
	}
	for name, out := range map[string]string{"logs": e.logs.String(), "error": err.Error()} {
		for _, s := range []string{testSMTPPassword, testWebhookToken} {
			if strings.Contains(out, s) {
				t.Fatalf("secret in %s: %s", name, out)
			}
		}
	}
	if !strings.Contains(e.logs.String(), "reload failed") {
		t.Fatalf("the failed reload was not logged: %s", e.logs.String())
	}
}

func TestWriteAtomicLeavesNoTemporaryFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.yml")
	for _, content := range []string{"one\n", "two\n"} {
		if err := writeAtomic(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		if string(got) != content {
			t.Fatalf("got %q, want %q", got, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want 1", len(entries))
	}
	// A missing directory fails and leaves nothing behind.
	if err := writeAtomic(filepath.Join(dir, "missing", "f.yml"), []byte("x"), 0o644); err == nil {
		t.Fatal("want an error for a missing directory")
	}
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no rules dir", func(o *Options) { o.RulesDir = "" }, "rules directory"},
		{"no alertmanager file", func(o *Options) { o.AlertmanagerConfigFile = "" }, "alertmanager config file"},
		{"no external URL", func(o *Options) { o.ExternalURL = "" }, "external URL"},
		{"no webhook URL", func(o *Options) { o.WebhookURL = "" }, "webhook URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions()
			o.RulesDir, o.AlertmanagerConfigFile = t.TempDir(), filepath.Join(t.TempDir(), "am.yml")
			tc.change(&o)
			if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// TestApplyReloadsOnlyWhatChanged: an Apply that changes nothing reloads
// nothing (every Prometheus reload restarts its Alertmanager discovery);
// a change to routes alone reloads only Alertmanager; a failed reload is
// retried by the next Apply even without a change; Reload forces both.
func TestApplyReloadsOnlyWhatChanged(t *testing.T) {
	e := newApplyEnv(t)
	projects := testProjects()
	calls := func() [2]int32 { return [2]int32{e.prom.calls.Load(), e.am.calls.Load()} }
	for _, step := range []struct {
		name   string
		change func()
		want   [2]int32
		err    bool
	}{
		{"first apply reloads both", func() {}, [2]int32{1, 1}, false},
		{"nothing changed", func() {}, [2]int32{1, 1}, false},
		{"only a route changed", func() {
			b := projects["beta"]
			b.Emails = []string{"night@example.test"}
			projects["beta"] = b
		}, [2]int32{1, 2}, false},
		{"prometheus refuses a rule change", func() {
			a := projects["alpha"]
			a.TriggerCount = 5
			projects["alpha"] = a
			msg := "boom"
			e.prom.failMsg.Store(&msg)
		}, [2]int32{2, 2}, true},
		{"the refused reload is retried without a change", func() { e.prom.failMsg.Store(nil) }, [2]int32{3, 2}, false},
		{"and then left alone", func() {}, [2]int32{3, 2}, false},
	} {
		step.change()
		err := e.a.Apply(t.Context(), projects)
		if (err != nil) != step.err {
			t.Fatalf("%s: Apply error %v, want error %v", step.name, err, step.err)
		}
		if got := calls(); got != step.want {
			t.Fatalf("%s: reloads (prometheus, alertmanager) %v, want %v", step.name, got, step.want)
		}
	}
	if err := e.a.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := calls(); got != [2]int32{4, 3} {
		t.Fatalf("Reload: reloads %v, want both", got)
	}
}

// issue #14: a rule file names every cluster of its project, and every
// Apply rendered and validated every project's, so one new cluster cost
// the whole fleet's files. An Apply renders only the projects whose
// settings or names changed, and the files still follow the change.
func TestApplyRendersOnlyTheProjectsThatChanged(t *testing.T) {
	e := newApplyEnv(t)
	projects := testProjects()
	if err := e.a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	first := map[string][]byte{}
	for id, r := range e.a.rendered {
		first[id] = r.file
	}
	b := projects["beta"]
	b.Names.Clusters = append(slices.Clone(b.Names.Clusters), rules.Cluster{ID: "c4", Name: "Plant East"})
	projects["beta"] = b
	if err := e.a.Apply(t.Context(), projects); err != nil {
		t.Fatal(err)
	}
	for id, file := range first {
		rendered := &e.a.rendered[id].file[0] != &file[0]
		if rendered != (id == "beta") {
			t.Errorf("project %s rendered again: %v, want %v", id, rendered, id == "beta")
		}
	}
	got, err := os.ReadFile(filepath.Join(e.rulesDir, RuleFileName("beta")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `cluster=~"c3|c4"`) || !strings.Contains(string(got), `{{ "Plant East" }}`) {
		t.Fatalf("beta's rule file does not follow its new cluster:\n%s", got)
	}
}
