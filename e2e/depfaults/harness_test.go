package depfaults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// interval is the report, collection and evaluation interval: short, so a
// fault shows in seconds.
const interval = time.Second

const adminPassword = "depfaults-admin-password"

// deps says which real components a stack runs beside ecp.
type deps struct {
	// am brings Prometheus with it.
	prom, am, vl bool
}

// stack is ecp with the dependencies a test asked for, one EMQX simulator
// and one project, each process restartable on its own address and data.
type stack struct {
	t        *testing.T
	dir      string
	base     string
	ecpArgs  []string
	ecp      *testbed.Proc
	api      *testbed.Client
	project  string
	addrs    map[string]string
	rulesDir string
	amFile   string
	prom     *testbed.Proc
	am       *testbed.Proc
	vl       *testbed.Proc
	simURL   string
	logDir   string
	nagents  int
}

func newStack(t *testing.T, d deps) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("fault campaign: runs the built binaries")
	}
	s := &stack{t: t, dir: t.TempDir(), addrs: map[string]string{}}
	for _, n := range []string{"ecp", "prom", "am", "vl", "sim"} {
		a, err := testbed.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		s.addrs[n] = a
	}
	s.base = "http://" + s.addrs["ecp"]
	s.rulesDir, s.amFile = filepath.Join(s.dir, "rules"), filepath.Join(s.dir, "alertmanager.yml")
	s.ecpArgs = []string{"serve", "--web.listen-address", s.addrs["ecp"], "--web.external-url", s.base,
		"--data.dir", filepath.Join(s.dir, "ecp"), "--downloads.dir", bins.DistDir,
		"--agent.report-interval", interval.String(), "--log.level", "debug"}
	if d.am {
		// Alerting needs both: ecp writes the rules and the routes.
		d.prom = true
		s.startAM()
		s.ecpArgs = append(s.ecpArgs, "--alertmanager.url", "http://"+s.addrs["am"], "--alertmanager.config-file", s.amFile,
			"--prometheus.url", "http://"+s.addrs["prom"], "--prometheus.rules-dir", s.rulesDir)
	}
	if d.prom {
		s.startProm()
		s.ecpArgs = append(s.ecpArgs, "--remote-write.url", "http://"+s.addrs["prom"]+"/api/v1/write")
	}
	if d.vl {
		s.startVL()
	}
	s.startECP()
	ctx := t.Context()
	org, err := s.api.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.api.CreateProject(ctx, org.ID, "plant")
	if err != nil {
		t.Fatal(err)
	}
	s.project = p.ID
	if d.vl {
		if err := s.api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver",
			map[string]any{"type": "victorialogs", "url": "http://" + s.addrs["vl"]}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.logDir = filepath.Join(s.dir, "emqx-log")
	s.simURL = s.startSim(s.addrs["sim"], "--log.dir", s.logDir, "--log.level", "info", "--log.rate", "0")
	return s
}

// startSim runs an EMQX simulator at addr and returns its URL. Each agent
// needs its own: ecp binds one entry to one EMQX cluster.
func (s *stack) startSim(addr string, extra ...string) string {
	s.t.Helper()
	u := "http://" + addr
	sim := s.start("emqx-sim-"+addr, bins.Path("emqx-sim"), append([]string{"--listen", addr, "--nodes", "3", "--rules", "10",
		"--connectors", "4", "--seed", "7", "--tick-interval", "200ms", "--node.host-prefix", fmt.Sprintf("10.0.%d.", s.nagents)}, extra...))
	if err := sim.WaitReady(s.t.Context(), u+"/status", 30*time.Second); err != nil {
		s.t.Fatal(err)
	}
	return u
}

// start runs a process whose log is printed if the test fails.
func (s *stack) start(name, bin string, args []string) *testbed.Proc {
	s.t.Helper()
	p, err := testbed.Start(name, bin, args, []string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword},
		filepath.Join(s.dir, "logs", name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.cleanup(name, p)
	return p
}

func (s *stack) cleanup(name string, p *testbed.Proc) {
	s.t.Cleanup(func() {
		_ = p.Stop()
		if s.t.Failed() {
			s.t.Logf("log of %s:\n%s", name, p.Tail(4096))
		}
	})
}

// startECP starts (or restarts) ecp on its address and data directory.
func (s *stack) startECP() {
	s.t.Helper()
	s.ecp = s.start("ecp", bins.Path("ecp"), s.ecpArgs)
	if err := s.ecp.WaitReady(s.t.Context(), s.base+"/-/ready", time.Minute); err != nil {
		s.t.Fatal(err)
	}
	var err error
	if s.api, err = testbed.Login(s.t.Context(), s.base, "admin", adminPassword); err != nil {
		s.t.Fatal(err)
	}
}

func tool(t *testing.T, tl testbed.Tool) string {
	t.Helper()
	p, err := tl.Find("../..")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (s *stack) startProm() {
	s.t.Helper()
	p, err := testbed.StartPrometheus(s.t.Context(), tool(s.t, testbed.Prometheus), s.dir, s.addrs["prom"], testbed.PrometheusConfig{
		Interval: interval, RulesDir: s.rulesDir, AlertmanagerAddr: s.addrs["am"], ECPAddr: s.addrs["ecp"]})
	if err != nil {
		s.t.Fatal(err)
	}
	s.prom = p
	s.cleanup("prometheus", p)
}

func (s *stack) startAM() {
	s.t.Helper()
	p, err := testbed.StartAlertmanager(s.t.Context(), tool(s.t, testbed.Alertmanager), s.dir, s.addrs["am"], s.amFile)
	if err != nil {
		s.t.Fatal(err)
	}
	s.am = p
	s.cleanup("alertmanager", p)
}

func (s *stack) startVL() {
	s.t.Helper()
	p, err := testbed.StartVictoriaLogs(s.t.Context(), tool(s.t, testbed.VictoriaLogs), s.dir, s.addrs["vl"])
	if err != nil {
		s.t.Fatal(err)
	}
	s.vl = p
	s.cleanup("victoria-logs", p)
}

// agent is one managed cluster and the agent-exporter serving it.
type agent struct {
	id      string
	metrics string
	simURL  string
	proc    *testbed.Proc
}

// manage creates an entry for an EMQX simulator, runs an agent by the
// registration guide and waits until the entry is running. The first
// agent serves the stack's simulator and ships its logs; each later one
// gets a simulator of its own.
func (s *stack) manage() agent {
	s.t.Helper()
	ctx := s.t.Context()
	simURL, logs := s.simURL, s.nagents == 0
	s.nagents++
	if !logs {
		addr, err := testbed.FreeAddr()
		if err != nil {
			s.t.Fatal(err)
		}
		simURL = s.startSim(addr)
	}
	entry, err := s.api.CreateCluster(ctx, s.project, fmt.Sprintf("line-%d", s.nagents), simURL)
	if err != nil {
		s.t.Fatal(err)
	}
	reg, err := s.api.Register(ctx, entry.ID)
	if err != nil {
		s.t.Fatal(err)
	}
	setup := testbed.AgentSetup{Dir: filepath.Join(s.dir, fmt.Sprintf("agent-%d", s.nagents)),
		EMQXUsername: "admin", EMQXPassword: "public", CollectInterval: interval}
	if logs {
		setup.ExtraRegisterArgs = []string{"--emqx-log-collection-enabled", "--emqx-log-collection-dir", s.logDir}
	}
	if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
		s.t.Fatal(err)
	}
	p, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cleanup("agent-"+entry.ID, p)
	if _, err := s.api.WaitState(ctx, entry.ID, "running", 30*time.Second); err != nil {
		s.t.Fatal(err)
	}
	return agent{id: entry.ID, metrics: "http://" + setup.ListenAddress + "/metrics", simURL: simURL, proc: p}
}

// metric sums the samples of name whose labels contain every one of
// labels (each `key="value"`) on the /metrics page at url; ok is false
// when the page could not be read.
func metric(url, name string, labels ...string) (sum float64, ok bool) {
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback test URL, bounded by the server
	if err != nil {
		return 0, false
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return 0, false
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || len(line) == len(name) || (line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if !match {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil && len(f) >= 2 {
			sum += v
		}
	}
	return sum, sc.Err() == nil
}

// mustMetric is metric failing the test when the page cannot be read.
func mustMetric(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metric(url, name, labels...)
	if !ok {
		t.Fatalf("cannot read %s", url)
	}
	return v
}

// rssMiB is a process's resident set in MiB, from /proc.
func rssMiB(t *testing.T, p *testbed.Proc) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatalf("no VmRSS for %s", p.Name)
	return 0
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	testbed.Eventually(t, timeout, what, cond)
}

// during runs check every step until d has passed.
func during(d, step time.Duration, check func()) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		check()
		time.Sleep(step)
	}
}

func post(t *testing.T, u, body string) {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(body)) //nolint:gosec,noctx // loopback test URL
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST %s: %s %s", u, resp.Status, b)
	}
}

// simState reads the simulator's /sim/state.
type simState struct {
	LogLines              int `json:"logLines"`
	APIPathConcurrencyMax int `json:"apiPathConcurrencyMax"`
}

func (s *stack) simState() simState {
	s.t.Helper()
	var st simState
	c := &testbed.Client{BaseURL: s.simURL, HTTP: &http.Client{Timeout: 10 * time.Second}}
	if err := c.Do(s.t.Context(), http.MethodGet, "/sim/state", nil, &st); err != nil {
		s.t.Fatal(err)
	}
	return st
}

// logCount is how many lines of the project ecp's log store holds.
func (s *stack) logCount() (int, error) {
	var n struct {
		Count int `json:"count"`
	}
	err := s.api.Do(s.t.Context(), http.MethodGet, "/api/v1/projects/"+s.project+"/logs/count", nil, &n)
	return n.Count, err
}

// hook records Alertmanager's webhook notifications. A notification
// carries every alert of its group (a project's cluster), so an alert shows
// in several as its group changes; what it counts per alert is the
// notifications in which the alert first appeared with a status, and per
// group the notifications that repeated the group's previous one exactly
// (a duplicate: nothing changed, yet it was sent again).
type hook struct {
	*httptest.Server
	mu    sync.Mutex
	first map[string]int    // "firing EMQXConnectorAbnormal <cluster> <id>" → notifications where it first appeared so
	seen  map[string]string // alert → its status in its group's last notification
	last  map[string]string // group key → its last notification's alerts
	dups  []string
	at    time.Time // when the last notification arrived
}

func newHook(t *testing.T) *hook {
	h := &hook{first: map[string]int{}, seen: map[string]string{}, last: map[string]string{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			GroupKey string `json:"groupKey"`
			Alerts   []struct {
				Status string            `json:"status"`
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.at = time.Now()
		sig := make([]string, 0, len(m.Alerts))
		for _, a := range m.Alerts {
			alert := a.Labels["alertname"] + " " + a.Labels["cluster"] + " " + a.Labels["id"]
			sig = append(sig, a.Status+" "+alert)
			if h.seen[alert] != a.Status {
				h.seen[alert] = a.Status
				h.first[a.Status+" "+alert]++
			}
		}
		sort.Strings(sig)
		if joined := strings.Join(sig, ", "); h.last[m.GroupKey] == joined {
			h.dups = append(h.dups, joined)
		} else {
			h.last[m.GroupKey] = joined
		}
	}))
	t.Cleanup(h.Close)
	return h
}

// n is how many notifications announced key ("firing <alertname> <cluster> <id>").
func (h *hook) n(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.first[key]
}

// quietFor is how long ago the last notification arrived.
func (h *hook) quietFor() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return time.Since(h.at)
}

// duplicates lists the notifications that repeated their group's previous one.
func (h *hook) duplicates() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.dups...)
}

func (h *hook) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprint(h.first)
}

// alertTo switches the project's alerting on at trigger and recovery
// count 1 toward h and waits until Prometheus and Alertmanager have it.
func (s *stack) alertTo(h *hook) {
	s.t.Helper()
	ctx := s.t.Context()
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}}, nil); err != nil {
		s.t.Fatal(err)
	}
	path := "/api/v1/projects/" + s.project + "/alert-settings"
	if err := s.api.Do(ctx, http.MethodPut, path, map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical",
		"webhooks": []map[string]string{{"url": h.URL + "/hook"}},
	}, nil); err != nil {
		s.t.Fatal(err)
	}
	eventually(s.t, 30*time.Second, "alert settings applied", func() (bool, string) {
		var st struct {
			Status struct{ Delivery, Message string }
		}
		if err := s.api.Do(ctx, http.MethodGet, path, nil, &st); err != nil {
			return false, err.Error()
		}
		return st.Status.Delivery == "applied", st.Status.Delivery + ": " + st.Status.Message
	})
}
