package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const collectInterval = 300 * time.Millisecond

type harness struct {
	t      *testing.T
	app    *daemon.App
	dir    string
	logs   *syncBuffer
	stdout *syncBuffer
	reg    *prometheus.Registry
	stop   func()
}

func startDaemon(t *testing.T, dir string, mods ...func(*daemon.Options)) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, logs: &syncBuffer{}, stdout: &syncBuffer{}, reg: prometheus.NewRegistry()}
	opts := daemon.DefaultOptions()
	opts.ListenAddress = "127.0.0.1:0"
	opts.StateDir = dir
	opts.CollectInterval = collectInterval
	opts.HTTPTimeout = 3 * time.Second
	opts.DesiredWait = 2 * time.Second
	opts.BackoffBase = 20 * time.Millisecond
	opts.BackoffMax = 200 * time.Millisecond
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Registerer, opts.Gatherer, opts.Stdout = h.reg, h.reg, h.stdout
	for _, m := range mods {
		m(&opts)
	}
	app, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.app = app
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			if err := app.Stop(sctx); err != nil {
				t.Errorf("stop: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	eventually(t, 5*time.Second, "daemon ready", func() bool {
		resp, err := http.Get("http://" + app.Addr() + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return h
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cli runs an agent-exporter subcommand in-process against this daemon.
func (h *harness) cli(args ...string) (int, string, string) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--state.dir", h.dir)
	code := cli.Main(args, cli.Env{Stdout: &out, Stderr: &errOut, Context: h.t.Context()})
	return code, out.String(), errOut.String()
}

func registerArgs(ecpURL, token, emqxURL, password string) []string {
	return []string{"register", "--ecp-url", ecpURL, "--token", token, "--username", "admin",
		"--password", password, "--dashboard-url", emqxURL, "--api-url", emqxURL}
}

func lastReport(ecp *fakeecp.Server) (agentproto.ReportRequest, bool) {
	r := ecp.Reports()
	if len(r) == 0 {
		return agentproto.ReportRequest{}, false
	}
	return r[len(r)-1], true
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestEndToEnd is the agent's whole life against a fake ecp: register
// through the CLI, report the cluster's numbers, apply a max-connections
// change from ecp within 2 s, undo a change made on EMQX's dashboard within
// one interval, unregister.
func TestEndToEnd(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	// A long report interval: ecp's change can only arrive in time through
	// the desired-state long-poll, not a report reply.
	ecp.SetInterval(30)
	ecp.IssueToken("tok-1")
	h := startDaemon(t, t.TempDir())
	if !strings.Contains(h.stdout.String(), "EMQX Agent ") || !strings.Contains(h.stdout.String(), " is running!") {
		t.Fatalf("stdout = %q", h.stdout.String())
	}

	code, out, errOut := h.cli(registerArgs(ecp.URL, "tok-1", emqx.URL, "public")...)
	if code != cli.ExitOK || !strings.Contains(out, "cluster c-1") {
		t.Fatalf("register: code %d stdout %q stderr %q", code, out, errOut)
	}
	regs := ecp.Registrations()
	if len(regs) != 1 || regs[0].APIURL != emqx.URL || regs[0].DashboardURL != emqx.URL || regs[0].AgentVersion == "" {
		t.Fatalf("registrations = %+v", regs)
	}

	// Reports carry the cluster's numbers; the initial desired state
	// (max connections 10) is applied at registration.
	defer func() {
		if t.Failed() {
			for _, r := range ecp.Reports() {
				t.Logf("report: applied %d max %d reachable %v problem %+v", r.AppliedRevision, r.EMQX.MaxConnections, r.EMQX.Reachable, r.EMQX.Problem)
			}
			t.Logf("logs:\n%s", h.logs.String())
		}
	}()
	eventually(t, 5*time.Second, "a report with EMQX's numbers and revision 1 applied", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.EMQX.Reachable && r.EMQX.MaxConnections == 10 && r.AppliedRevision == 1
	})
	r, _ := lastReport(ecp)
	want := emqx.State()
	if r.EMQX.Connections != want.Connections || r.EMQX.LiveConnections != want.LiveConnections || want.Connections == 0 {
		t.Fatalf("report connections %d/%d, sim has %d/%d", r.EMQX.Connections, r.EMQX.LiveConnections, want.Connections, want.LiveConnections)
	}
	if len(r.EMQX.Nodes) != 2 || r.EMQX.Version != "5.8.9" || r.EMQX.Rules.Total != 4 || r.EMQX.Connectors.Total != 3 ||
		r.EMQX.Problem != nil || r.EMQX.StartedAt.IsZero() {
		t.Fatalf("report = %+v", r.EMQX)
	}
	if emqx.Dynamic() != 10 {
		t.Fatalf("dynamic_max_connections = %d, want 10", emqx.Dynamic())
	}

	// ecp changes max connections: EMQX follows within 2 s.
	ecp.SetMaxConnections(77)
	eventually(t, 2*time.Second, "dynamic_max_connections = 77 after ecp's change", func() bool { return emqx.Dynamic() == 77 })
	eventually(t, 5*time.Second, "a report acknowledging revision 2", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.AppliedRevision == ecp.Desired().Revision
	})

	// Someone changes it on EMQX's dashboard: put back within one
	// collection interval (plus scheduling slack on a loaded machine).
	emqx.SetDynamic(500)
	eventually(t, collectInterval+700*time.Millisecond, "drift corrected", func() bool { return emqx.Dynamic() == 77 })

	code, out, _ = h.cli("status")
	for _, want := range []string{"registered:           yes", "cluster id:           c-1", "ecp url:              " + ecp.URL, "emqx reachable:       yes", "applied 77"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status (code %d) lacks %q:\n%s", code, want, out)
		}
	}
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// The gauges show the latest collection, which may predate the drift
	// correction above: the next one has 77.
	for _, want := range []string{"emqx_up 1", `emqx_node_running{node="emqx@10.0.0.1"} 1`, "emqx_license_dynamic_max_connections 77", "agent_exporter_registered 1"} {
		eventually(t, 2*collectInterval, "/metrics has "+want, func() bool { return strings.Contains(scrape(t, h.app.Addr()), want) })
	}

	code, out, errOut = h.cli("unregister")
	if code != 0 || ecp.Unregisters() != 1 {
		t.Fatalf("unregister: code %d %q %q, ecp saw %d", code, out, errOut, ecp.Unregisters())
	}
	if _, err := os.Stat(filepath.Join(h.dir, state.RegistrationFile)); !os.IsNotExist(err) {
		t.Fatalf("registration file still there: %v", err)
	}
	n := len(ecp.Reports())
	time.Sleep(3 * collectInterval) // nothing may be reported after unregister
	if len(ecp.Reports()) != n {
		t.Fatal("reports continued after unregister")
	}
	code, out, _ = h.cli("status")
	if code != 0 || !strings.Contains(out, "registered:           no") || !strings.Contains(out, "unregistered by the operator") {
		t.Fatalf("status after unregister:\n%s", out)
	}
}

func TestRegisterFailures(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("used")
	ecp.ExpireToken("expired")
	tlsEMQX := httptest.NewTLSServer(http.NotFoundHandler())
	defer tlsEMQX.Close()
	h := startDaemon(t, t.TempDir())
	// Use the token once so it reads as used.
	if code, _, e := h.cli(registerArgs(ecp.URL, "used", emqx.URL, "public")...); code != 0 {
		t.Fatalf("first register: %s", e)
	}
	if code, _, e := h.cli("unregister"); code != 0 {
		t.Fatalf("unregister: %s", e)
	}
	ecp.IssueToken("fresh")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"wrong EMQX password", registerArgs(ecp.URL, "fresh", emqx.URL, "nope"), 1, "refused the username or password"},
		{"used token", registerArgs(ecp.URL, "used", emqx.URL, "public"), 1, "unknown or was already used"},
		{"expired token", registerArgs(ecp.URL, "expired", emqx.URL, "public"), 1, "expired at"},
		{"ecp unreachable", registerArgs("http://127.0.0.1:1", "fresh", emqx.URL, "public"), 1, "cannot reach ecp"},
		{"EMQX unreachable", registerArgs(ecp.URL, "fresh", "http://127.0.0.1:1", "public"), 1, "cannot reach EMQX"},
		{"EMQX TLS failure", registerArgs(ecp.URL, "fresh", tlsEMQX.URL, "public"), 1, "--insecure-skip-verify"},
		{"missing token", []string{"register", "--ecp-url", ecp.URL, "--username", "admin", "--password", "x", "--dashboard-url", emqx.URL, "--api-url", emqx.URL}, 2, "--token is required"},
		{"bad URL", registerArgs("ftp://x", "fresh", emqx.URL, "public"), 1, "--ecp-url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := h.cli(tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut, tc.wantMsg) {
				t.Fatalf("code %d stderr %q, want %d and %q", code, errOut, tc.wantCode, tc.wantMsg)
			}
		})
	}
	t.Run("fresh token still usable after the failures", func(t *testing.T) {
		if code, _, e := h.cli(registerArgs(ecp.URL, "fresh", emqx.URL, "public")...); code != 0 {
			t.Fatalf("register: %s", e)
		}
	})
	t.Run("already registered", func(t *testing.T) {
		ecp.IssueToken("another")
		code, _, errOut := h.cli(registerArgs(ecp.URL, "another", emqx.URL, "public")...)
		if code != 1 || !strings.Contains(errOut, "already registered as cluster c-1") {
			t.Fatalf("code %d %q", code, errOut)
		}
	})
}

func TestDaemonNotRunning(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range [][]string{registerArgs("http://e", "t", "http://x", "p"), {"status"}, {"unregister"}} {
		t.Run(cmd[0], func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := cli.Main(append(cmd, "--state.dir", dir), cli.Env{Stdout: &out, Stderr: &errOut})
			if code != 1 || !strings.Contains(errOut.String(), "not running") || !strings.Contains(errOut.String(), "agent-exporter run") {
				t.Fatalf("code %d stderr %q", code, errOut.String())
			}
		})
	}
}

func TestAgentURL(t *testing.T) {
	h := startDaemon(t, t.TempDir())
	tests := []struct {
		name     string
		url      string
		wantCode int
		wantOut  string
	}{
		{"the daemon's own URL", "http://" + h.app.Addr(), 0, "registered:           no"},
		{"nothing listening", "http://127.0.0.1:1", 1, "not running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := h.cli("status", "--agent.url", tc.url)
			if code != tc.wantCode || !strings.Contains(out+errOut, tc.wantOut) {
				t.Fatalf("code %d out %q err %q", code, out, errOut)
			}
		})
	}
}

func TestResumeWithoutRegistering(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	dir := t.TempDir()
	h := startDaemon(t, dir)
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	h.stop()

	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode = %v (%v), want 0700", st.Mode().Perm(), err)
	}
	fi, err := os.Stat(filepath.Join(dir, state.RegistrationFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("registration file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	n := len(ecp.Reports())
	h2 := startDaemon(t, dir)
	eventually(t, 5*time.Second, "reports after restart", func() bool { return len(ecp.Reports()) > n })
	if len(ecp.Registrations()) != 1 {
		t.Fatalf("the restarted agent registered again: %d registrations", len(ecp.Registrations()))
	}
	ecp.SetMaxConnections(33)
	eventually(t, 2*time.Second, "resumed agent applies ecp's change", func() bool { return emqx.Dynamic() == 33 })
	_ = h2
}

func TestRevocation(t *testing.T) {
	tests := []struct {
		name       string
		revoke     func(*fakeecp.Server)
		wantReason string
	}{
		{"401 CredentialRevoked", (*fakeecp.Server).RevokeAll, "credential revoked by ecp"},
		{"desired unregister", (*fakeecp.Server).RequestUnregister, "ecp asked the agent to unregister"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emqx := startEMQX(t)
			ecp := fakeecp.Start(t)
			ecp.IssueToken("tok")
			h := startDaemon(t, t.TempDir())
			if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
				t.Fatalf("register: %s", e)
			}
			eventually(t, 5*time.Second, "first report", func() bool { return len(ecp.Reports()) > 0 })
			tc.revoke(ecp)
			eventually(t, 5*time.Second, "agent forgets its registration", func() bool {
				return !h.app.Status().Registered
			})
			st := h.app.Status()
			if !strings.Contains(st.EndedReason, tc.wantReason) {
				t.Fatalf("ended reason = %q", st.EndedReason)
			}
			if _, err := os.Stat(filepath.Join(h.dir, state.RegistrationFile)); !os.IsNotExist(err) {
				t.Fatalf("credential not forgotten: %v", err)
			}
			_, out, _ := h.cli("status")
			if !strings.Contains(out, "registered:           no") || !strings.Contains(out, tc.wantReason) {
				t.Fatalf("status:\n%s", out)
			}
		})
	}
}

func TestProblemsReported(t *testing.T) {
	tests := []struct {
		name string
		emqx func(*sim.Options)
		ecp  func(*fakeecp.Server)
		want string
	}{
		{"licence not business-critical", func(o *sim.Options) { o.LicenseCustomerType = 1 }, func(*fakeecp.Server) {}, agentproto.ProblemLicenceUnsupported},
		// EMQX answers 400 "Bad license setting" to a negative value.
		{"EMQX refuses the setting", func(*sim.Options) {}, func(s *fakeecp.Server) { s.SetMaxConnections(-1) }, agentproto.ProblemQuotaApplyFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			emqx := startEMQX(t, tc.emqx)
			ecp := fakeecp.Start(t)
			tc.ecp(ecp)
			ecp.IssueToken("tok")
			h := startDaemon(t, t.TempDir())
			if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
				t.Fatalf("register: %s", e)
			}
			eventually(t, 5*time.Second, "a report with problem "+tc.want, func() bool {
				r, ok := lastReport(ecp)
				return ok && r.EMQX.Reachable && r.EMQX.Problem != nil && r.EMQX.Problem.Code == tc.want && r.AppliedRevision == 0
			})
		})
	}
}

func TestReportBufferWhileECPDown(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) {
		o.ReportBuffer = 2
		o.CollectInterval = 50 * time.Millisecond
	})
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 5*time.Second, "first report", func() bool { return len(ecp.Reports()) > 0 })
	ecp.SetFailing(true)
	// Read together: a retry in flight takes its report out of the
	// buffered count (it is being sent), so the metric and the status
	// read one after the other may see different moments.
	eventually(t, 10*time.Second, "reports dropped while ecp is down, in /metrics and the status", func() bool {
		m := scrape(t, h.app.Addr())
		st := h.app.Status()
		return strings.Contains(m, "agent_exporter_reports_buffered 2") && !strings.Contains(m, "agent_exporter_reports_dropped_total 0") &&
			st.LastReportError != "" && st.ReportsBuffered == 2
	})
	n := len(ecp.Reports())
	ecp.SetFailing(false)
	eventually(t, 5*time.Second, "buffer flushed after ecp is back", func() bool {
		return len(ecp.Reports()) >= n+2 && h.app.Status().ReportsBuffered == 0
	})
}

func TestSecretsNeverLeak(t *testing.T) {
	const password, token = "s3cret-EMQX-pw", "tok-SECRET-123"
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken(token)
	h := startDaemon(t, t.TempDir())
	// A wrong password is logged as a failure, never by value.
	h.cli(registerArgs(ecp.URL, token, emqx.URL, password)...)
	code, regOut, regErr := h.cli(registerArgs(ecp.URL, token, emqx.URL, "public")...)
	if code != 0 {
		t.Fatalf("register: %s", regErr)
	}
	eventually(t, 5*time.Second, "first report", func() bool { return len(ecp.Reports()) > 0 })
	_, statusOut, _ := h.cli("status")
	credential := "cred-1"
	ctl, err := state.At(h.dir).LoadControl()
	if err != nil {
		t.Fatal(err)
	}
	seen := h.logs.String() + regOut + regErr + statusOut + scrape(t, h.app.Addr()) + fmt.Sprintf("%+v %v", h.app.Status(), h.app.Status())
	for _, s := range []string{password, token, credential, "public", ctl.Token.Reveal()} {
		if strings.Contains(seen, s) {
			t.Errorf("secret %q reached logs, CLI output, status or /metrics", s)
		}
	}
	b, err := os.ReadFile(filepath.Join(h.dir, state.RegistrationFile))
	if err != nil || !strings.Contains(string(b), credential) {
		t.Fatalf("the credential must be kept on disk (mode 0600) to resume: %v", err)
	}
}

func TestReload(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(cfg, []byte("collect_interval: 1s\nlog_level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.ConfigFile = cfg })
	post := func() int {
		resp, err := http.Post("http://"+h.app.Addr()+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(); got != http.StatusOK {
		t.Fatalf("reload = %d", got)
	}
	if err := os.WriteFile(cfg, []byte("collect_interval: fast\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := post(); got != http.StatusInternalServerError {
		t.Fatalf("bad config reload = %d, want 500", got)
	}
	if !strings.Contains(scrape(t, h.app.Addr()), "agent_exporter_config_last_reload_successful 0") {
		t.Fatal("failed reload not visible in metrics")
	}
	resp, err := http.Get("http://" + h.app.Addr() + "/-/reload")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /-/reload = %d, want 405", resp.StatusCode)
	}
}

func TestControlAPINeedsToken(t *testing.T) {
	h := startDaemon(t, t.TempDir())
	resp, err := http.Get("http://" + h.app.Addr() + "/api/v1/control/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without token = %d, want 401", resp.StatusCode)
	}
}

func TestInsecureSkipVerifyCoversECP(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.StartTLS(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir())
	code, _, errOut := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...)
	if code != 1 || !strings.Contains(errOut, "TLS with ecp") || !strings.Contains(errOut, "--insecure-skip-verify") {
		t.Fatalf("verifying register: code %d %q", code, errOut)
	}
	code, _, errOut = h.cli(append(registerArgs(ecp.URL, "tok", emqx.URL, "public"), "--insecure-skip-verify")...)
	if code != 0 {
		t.Fatalf("register with --insecure-skip-verify: %q", errOut)
	}
	eventually(t, 5*time.Second, "reports over TLS", func() bool { return len(ecp.Reports()) > 0 })
}

// TestRetryAfterHonoured: while ecp answers 429 with Retry-After: 1, the
// agent's report and long-poll retries wait at least that second instead
// of its 20 ms backoff.
func TestRetryAfterHonoured(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	// Ticks 3 s apart: the agent's one connection holds each poll until
	// just before the next tick, so a change made while a poll is held
	// is answered by that poll.
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.CollectInterval = 3 * time.Second })
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 5*time.Second, "first report", func() bool { return len(ecp.Reports()) > 0 })
	eventually(t, 10*time.Second, "a held poll", func() bool { return ecp.HeldPolls() == 1 })
	ecp.RateLimit(1_000_000, 1)
	before, start := ecp.Requests(), time.Now()
	// The change ends the long-poll held before the limit: the agent
	// applies it, reports at once and polls again, and both meet 429s.
	ecp.SetMaxConnections(11)
	time.Sleep(1500 * time.Millisecond)
	if emqx.Dynamic() != 11 {
		t.Fatalf("dynamic = %d, want 11", emqx.Dynamic())
	}
	// At most one report and one poll at once, then one of each per
	// second that passed (a loaded machine may sleep longer than asked),
	// and one in flight; the 20 ms backoff alone would make dozens.
	n, elapsed := ecp.Requests()-before, time.Since(start)
	if most := 2*(1+int(elapsed/time.Second)) + 1; n > most {
		t.Fatalf("%d requests in %s despite Retry-After: 1, want at most %d", n, elapsed.Round(time.Millisecond), most)
	}
	if st := h.app.Status(); !strings.Contains(st.LastReportError, agentproto.CodeRateLimited) {
		t.Fatalf("last report error = %q", st.LastReportError)
	}
}

func TestStopIsIdempotent(t *testing.T) {
	opts := daemon.DefaultOptions()
	opts.ListenAddress, opts.StateDir = "127.0.0.1:0", t.TempDir()
	opts.Logger = slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	opts.Registerer, opts.Gatherer = reg, reg
	app, err := daemon.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := app.Stop(t.Context()); err != nil {
			t.Fatalf("stop before run: %v", err)
		}
	}
	if err := app.Run(t.Context()); err == nil {
		t.Fatal("run after stop must fail")
	}

	h := startDaemon(t, t.TempDir())
	h.stop()
	if err := h.app.Stop(t.Context()); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.dir, state.ControlFile)); !os.IsNotExist(err) {
		t.Fatalf("control file left after stop: %v", err)
	}
}

// TestEMQXOutage: while EMQX's API fails the reports say EMQXUnreachable;
// a licence reset during the outage is undone once EMQX is back, and the
// reports are clean again.
func TestEMQXOutage(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.CollectInterval = 100 * time.Millisecond })
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	if err := emqx.SetAPIFault(sim.APIFault{ErrorRate: 1, Status: http.StatusServiceUnavailable}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a report saying EMQX is unreachable", func() bool {
		r, ok := lastReport(ecp)
		return ok && !r.EMQX.Reachable && r.EMQX.Problem != nil && r.EMQX.Problem.Code == agentproto.ProblemEMQXUnreachable
	})
	if !strings.Contains(scrape(t, h.app.Addr()), "emqx_up 0") {
		t.Fatal("emqx_up not 0 during the outage")
	}
	emqx.ResetLicense() // dynamic_max_connections back to 25 behind the agent's back
	if err := emqx.SetAPIFault(sim.APIFault{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "limit restored after the outage", func() bool { return emqx.Dynamic() == 10 })
	eventually(t, 5*time.Second, "a clean report after the outage", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.EMQX.Reachable && r.EMQX.Problem == nil && r.AppliedRevision == 1
	})
}

// TestEMQXAuthFailedLater: the EMQX password changed after registration;
// once the token expires the agent cannot log in again and says so.
func TestEMQXAuthFailedLater(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.CollectInterval = 100 * time.Millisecond })
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	if err := emqx.RefuseLogin("BAD_USERNAME_OR_PWD"); err != nil {
		t.Fatal(err)
	}
	emqx.ExpireTokens()
	eventually(t, 5*time.Second, "a report with EMQXAuthFailed", func() bool {
		r, ok := lastReport(ecp)
		return ok && !r.EMQX.Reachable && r.EMQX.Problem != nil && r.EMQX.Problem.Code == agentproto.ProblemEMQXAuthFailed
	})
	_, out, _ := h.cli("status")
	if !strings.Contains(out, "emqx reachable:       no (EMQXAuthFailed") {
		t.Fatalf("status:\n%s", out)
	}
}

// TestJourneyAgentHeldByECP: the agent tells ecp which EMQX cluster it is on
// when it registers and in its reports, and while ecp says another entry's
// agent manages that cluster it leaves dynamic_max_connections alone, and
// says so on /metrics; once the hold is lifted it enforces again.
func TestJourneyAgentHeldByECP(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok-1")
	h := startDaemon(t, t.TempDir())
	if code, out, errOut := h.cli(registerArgs(ecp.URL, "tok-1", emqx.URL, "public")...); code != cli.ExitOK {
		t.Fatalf("register: code %d stdout %q stderr %q", code, out, errOut)
	}
	regs := ecp.Registrations()
	if len(regs) != 1 || regs[0].Cluster == nil || regs[0].Cluster.Name != "emqxcl" ||
		!slices.Equal(regs[0].Cluster.Nodes, []string{"emqx@10.0.0.1", "emqx@10.0.0.2"}) {
		t.Fatalf("registration identity = %+v", regs[0].Cluster)
	}
	eventually(t, 5*time.Second, "a report naming the cluster", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.EMQX.ClusterName == "emqxcl" && len(r.EMQX.Nodes) == 2
	})
	eventually(t, 5*time.Second, "max connections 10 applied", func() bool { return emqx.Dynamic() == 10 })

	ecp.SetHold(&agentproto.Problem{Code: agentproto.ProblemClusterManagedElsewhere, Message: "managed by cluster north"})
	ecp.SetMaxConnections(77)
	eventually(t, 5*time.Second, "a report acknowledging the hold", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.AppliedRevision == ecp.Desired().Revision
	})
	emqx.SetDynamic(1000) // The other agent's value.
	time.Sleep(3 * collectInterval)
	if got := emqx.Dynamic(); got != 1000 {
		t.Fatalf("held agent wrote dynamic_max_connections: %d, want the other agent's 1000", got)
	}
	if m := scrape(t, h.app.Addr()); !strings.Contains(m, "agent_exporter_enforcement_held 1") {
		t.Fatalf("/metrics does not say the agent is held")
	}
	if !strings.Contains(h.logs.String(), "not enforcing max connections: another agent manages this EMQX cluster") {
		t.Fatalf("log does not say the agent is held:\n%s", h.logs.String())
	}
	if code, out, _ := h.cli("status"); code != 0 || !strings.Contains(out, "(ClusterManagedElsewhere: managed by cluster north)") {
		t.Fatalf("status does not say the agent is held (code %d):\n%s", code, out)
	}
	ecp.SetHold(nil)
	eventually(t, 5*time.Second, "max connections enforced after the hold", func() bool { return emqx.Dynamic() == 77 })
}

// TestJourneyTokenErrorSaysItOnce: a refused registration token is
// explained once, in ecp's words, not wrapped in the agent's own account
// of the same thing ("…unknown, already used or expired (registration
// token unknown or used); issue a new one…").
func TestJourneyTokenErrorSaysItOnce(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.ExpireToken("expired")
	h := startDaemon(t, t.TempDir())
	for _, tc := range []struct{ token, want string }{
		{"never-issued", "register failed: the registration token is unknown or was already used; issue a new one\n"},
		{"expired", "register failed: the registration token expired at 2026-01-01T00:00:00Z; issue a new one\n"},
	} {
		code, _, errOut := h.cli(registerArgs(ecp.URL, tc.token, emqx.URL, "public")...)
		if code != 1 || errOut != tc.want {
			t.Errorf("token %s: code %d stderr\n%q\nwant\n%q", tc.token, code, errOut, tc.want)
		}
	}
}

// TestJourneyRegisterChecksTheLogDir: register with log collection from a
// directory this host does not have (the guide's /opt/emqx/log on a deb or
// rpm install) is refused before the token is spent, saying where EMQX
// keeps its logs; the same token then registers with the right directory.
func TestJourneyRegisterChecksTheLogDir(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok-1")
	h := startDaemon(t, t.TempDir())
	missing := filepath.Join(t.TempDir(), "opt-emqx-log")
	code, _, errOut := h.cli(append(registerArgs(ecp.URL, "tok-1", emqx.URL, "public"), "--emqx-log-collection-enabled", "--emqx-log-collection-dir", missing)...)
	want := "register failed: --emqx-log-collection-dir " + missing + " does not exist on this host. " +
		"EMQX writes its logs to /opt/emqx/log (tar.gz, Docker) or /var/log/emqx (deb, rpm); its dashboard shows the directory as the node's log path. " +
		"Give that one, or register without --emqx-log-collection-enabled to collect no logs\n"
	if code != 1 || errOut != want {
		t.Fatalf("code %d stderr\n%q\nwant\n%q", code, errOut, want)
	}
	if code, _, errOut := h.cli(append(registerArgs(ecp.URL, "tok-1", emqx.URL, "public"), "--emqx-log-collection-enabled", "--emqx-log-collection-dir", t.TempDir())...); code != 0 {
		t.Fatalf("the token was spent by the refused attempt: %s", errOut)
	}
}

// TestSlowEMQXReportsOnTime: EMQX answers every call slower than the
// collection interval. The agent still reports at its interval, never
// silent for ecp's SilentIntervals, and the report names the call that
// timed out (EMQXTimeout) rather than leaving ecp to call the agent silent.
func TestSlowEMQXReportsOnTime(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t) // reports every 1 s
	ecp.IssueToken("tok")
	// Pinned at 200 ms, reported as 1 s: ecp allows SilentIntervals × 1 s
	// between reports, and a tick gets 500 ms.
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.CollectInterval = 200 * time.Millisecond })
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 5*time.Second, "a clean report", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.EMQX.Reachable && r.EMQX.Problem == nil
	})
	// Each call takes 300 ms: a collection (a dozen calls) would take
	// about 4 s, longer than ecp's three seconds.
	if err := emqx.SetAPIFault(sim.APIFault{Latency: 300 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emqx.SetAPIFault(sim.APIFault{}) })
	from := len(ecp.Reports())
	eventually(t, 15*time.Second, "three reports after EMQX slowed down", func() bool { return len(ecp.Reports()) >= from+3 })
	silence := agentproto.SilentIntervals * time.Second
	rs := ecp.Reports()[from:]
	for i := 1; i < len(rs); i++ {
		if gap := rs[i].CollectedAt.Sub(rs[i-1].CollectedAt); gap >= silence {
			t.Errorf("reports %s apart with EMQX slow, ecp calls the agent silent after %s", gap, silence)
		}
	}
	last := rs[len(rs)-1].EMQX.Problem
	if last == nil || last.Code != agentproto.ProblemEMQXTimeout || !strings.Contains(last.Message, "EMQX timed out on GET /api/v5/") || !strings.Contains(last.Message, "500ms") {
		t.Errorf("the report does not name the slow call and the deadline: %+v", last)
	}
	if got := emqx.State().APIPathConcurrencyMax; got > 1 {
		t.Errorf("collections overlapped: %d requests in flight on one EMQX path", got)
	}
}

// TestSlowEMQXIntervalChangedMidTick: ecp moves its interval while EMQX
// is slow; the agent hears of it in a report reply, at the end of a tick.
// The ticks after it take their deadline from the new interval, and
// reports stay inside ecp's silence threshold throughout.
func TestSlowEMQXIntervalChangedMidTick(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir(), func(o *daemon.Options) { o.FollowECPInterval = true })
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	if err := emqx.SetAPIFault(sim.APIFault{Latency: 1200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emqx.SetAPIFault(sim.APIFault{}) })
	timedOut := func(r agentproto.ReportRequest, budget string) bool {
		p := r.EMQX.Problem
		return p != nil && p.Code == agentproto.ProblemEMQXTimeout && strings.Contains(p.Message, "tick deadline of "+budget)
	}
	eventually(t, 10*time.Second, "a report at 1s naming the 500ms deadline", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.IntervalSeconds == 1 && timedOut(r, "500ms")
	})
	ecp.SetInterval(2)
	eventually(t, 15*time.Second, "two reports at 2s naming the 1s deadline", func() bool {
		n := 0
		for _, r := range reportsAfter(ecp, 2) {
			if timedOut(r, "1s") {
				n++
			}
		}
		return n >= 2
	})
	rs := reportsAfter(ecp, 2)
	for i := 1; i < len(rs); i++ {
		if gap := rs[i].CollectedAt.Sub(rs[i-1].CollectedAt); gap >= agentproto.SilentIntervals*2*time.Second {
			t.Errorf("reports %s apart at a 2s interval", gap)
		}
	}
}
