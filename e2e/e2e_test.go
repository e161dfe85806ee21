// Package e2e runs the built binaries together, as an operator would: ecp
// with its embedded etcd, emqx-sim standing in for EMQX, and agent-exporter
// downloaded from ecp and registered with the command ecp renders.
package e2e

import (
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// reportInterval is short so liveness can be watched in seconds; ecp tells
// the agents to use it.
const reportInterval = time.Second

const adminPassword = "e2e-admin-password"

var bins testbed.Binaries

// TestMain builds the binaries once for the package. Most tests only wait
// on the processes they start, on their own ports and directories, so they
// call t.Parallel and run side by side after the others. These stay
// serial, as their timing bounds would feel other tests' CPU use:
// TestJourneyAlertCatalogue (fault-to-mail latency from the configured
// timers), TestJourneyRuleAlertsWithGuideAgent (rule-to-webhook budget),
// TestLifecycle and TestJourneySecondEntryOnManagedClusterIsRefused (an
// allocation applied within 5 s at a 1 s interval) and
// TestAgentHoldsOneConnection (one connection held over several reports: a
// stalled agent would time out and reconnect). TestJourneyNewOperatorInBrowser
// stays serial too: beside the others, a click once landed on the page
// the browser was leaving ("Could not find node with given id").
func TestMain(m *testing.M) {
	flag.Parse()
	testbed.AllowParallel(6)
	os.Exit(testbed.RunTests(m, testing.Short(), "..", &bins))
}

// stack is one ecp and its operator client.
type stack struct {
	t    *testing.T
	dir  string
	base string
	ecp  *testbed.Proc
	api  *testbed.Client
}

func startECP(t *testing.T) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries")
	}
	s := &stack{t: t, dir: t.TempDir()}
	addr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + addr
	s.ecp = s.start("ecp", bins.Path("ecp"), []string{"serve",
		"--web.listen-address", addr, "--web.external-url", s.base,
		"--data.dir", filepath.Join(s.dir, "ecp"), "--downloads.dir", bins.DistDir,
		"--agent.report-interval", reportInterval.String(), "--log.level", "debug"},
		[]string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword})
	if err := s.ecp.WaitReady(t.Context(), s.base+"/-/ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	s.api, err = testbed.Login(t.Context(), s.base, "admin", adminPassword)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) start(name, bin string, args, env []string) *testbed.Proc {
	s.t.Helper()
	p, err := testbed.Start(name, bin, args, env, filepath.Join(s.dir, "logs", strings.ReplaceAll(name, " ", "-")+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			s.t.Error(err)
		}
		if s.t.Failed() {
			s.t.Logf("log of %s:\n%s", name, p.Tail(8192))
		}
	})
	return p
}

// startSim runs a simulated EMQX cluster at addr; extra flags follow the
// usual ones.
func (s *stack) startSim(addr string, extra ...string) *testbed.Proc {
	s.t.Helper()
	p := s.start("emqx-sim", bins.Path("emqx-sim"), append([]string{"--listen", addr, "--nodes", "3", "--rules", "10",
		"--connectors", "4", "--seed", "7", "--version", "5.8.9", "--tick-interval", "200ms"}, extra...), nil)
	if err := p.WaitReady(s.t.Context(), "http://"+addr+"/status", 30*time.Second); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *stack) waitState(id, state string) testbed.Cluster {
	s.t.Helper()
	cl, err := s.api.WaitState(s.t.Context(), id, state, 30*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	return cl
}

// agentCmd runs an agent-exporter subcommand against the agent's state dir.
func agentCmd(t *testing.T, setup testbed.AgentSetup, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), filepath.Join(setup.Dir, "agent-exporter"), append(args, "--state.dir", setup.StateDir())...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// simClient is logged in to the EMQX API of the simulator at simURL as its
// dashboard administrator.
func simClient(t *testing.T, simURL string) *testbed.Client {
	t.Helper()
	c := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 5 * time.Second}}
	var login struct {
		Token string `json:"token"`
	}
	if err := c.Do(t.Context(), http.MethodPost, "/api/v5/login", map[string]string{"username": "admin", "password": "public"}, &login); err != nil {
		t.Fatalf("log in to emqx-sim: %v", err)
	}
	c.Token = login.Token
	return c
}

// simLicenceSetting reads dynamic_max_connections from EMQX's own API.
func simLicenceSetting(t *testing.T, simURL string) int {
	t.Helper()
	c := simClient(t, simURL)
	var setting struct {
		DynamicMaxConnections int `json:"dynamic_max_connections"`
	}
	if err := c.Do(t.Context(), http.MethodGet, "/api/v5/license/setting", nil, &setting); err != nil {
		t.Fatalf("read licence setting: %v", err)
	}
	return setting.DynamicMaxConnections
}

func setSimLicence(t *testing.T, simURL string, maxConns int) {
	t.Helper()
	c := simClient(t, simURL)
	if err := c.Do(t.Context(), http.MethodPut, "/api/v5/license/setting", map[string]any{"dynamic_max_connections": maxConns}, nil); err != nil {
		t.Fatalf("change licence setting on emqx-sim: %v", err)
	}
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, what, cond)
}

// newSim runs a simulated EMQX cluster on a free port and returns its URL.
func (s *stack) newSim() string {
	s.t.Helper()
	addr, err := testbed.FreeAddr()
	if err != nil {
		s.t.Fatal(err)
	}
	s.startSim(addr)
	return "http://" + addr
}

// projects creates an organization holding the named projects.
func (s *stack) projects(names ...string) []testbed.Named {
	s.t.Helper()
	org, err := s.api.CreateOrg(s.t.Context(), "acme")
	if err != nil {
		s.t.Fatal(err)
	}
	out := make([]testbed.Named, 0, len(names))
	for _, n := range names {
		p, err := s.api.CreateProject(s.t.Context(), org.ID, n)
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// managed is a simulated cluster under management.
type managed struct {
	entry testbed.Cluster
	setup testbed.AgentSetup
	agent *testbed.Proc
}

// manage creates an entry for the EMQX cluster at simURL in project, runs
// an agent with the registration commands ecp renders, and waits until the
// entry is running.
func (s *stack) manage(project, simURL string) managed {
	s.t.Helper()
	return s.manageCollecting(project, simURL, reportInterval)
}

// manageCollecting is manage with the agent's --collect.interval; zero
// leaves the flag out, as the registration guide's run command does.
func (s *stack) manageCollecting(project, simURL string, collect time.Duration) managed {
	s.t.Helper()
	ctx := s.t.Context()
	entry, err := s.api.CreateCluster(ctx, project, "line-1", simURL)
	if err != nil {
		s.t.Fatal(err)
	}
	reg, err := s.api.Register(ctx, entry.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	setup := testbed.AgentSetup{Dir: filepath.Join(s.dir, "agent"), EMQXUsername: "admin", EMQXPassword: "public", CollectInterval: collect}
	if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
		s.t.Fatal(err)
	}
	agent, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = agent.Stop() })
	return managed{entry: s.waitState(entry.ID, "running"), setup: setup, agent: agent}
}
