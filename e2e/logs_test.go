package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// logLines is how many EMQX log lines TestLogs ships; ECP_E2E_LOG_LINES
// changes it (issue 6 asks for 100,000, the default).
func logLines(t *testing.T) int {
	if s := os.Getenv("ECP_E2E_LOG_LINES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 {
			t.Fatalf("ECP_E2E_LOG_LINES=%q: want a number ≥ 10", s)
		}
		return n
	}
	return 100_000
}

// logStoreDown is how long TestLogs keeps VictoriaLogs stopped mid-stream:
// longer than ecp's write retries (10 s), so the agent really hears 503
// and keeps its lines.
const logStoreDown = 12 * time.Second

// victoriaLogsBin finds the binary scripts/install-victorialogs.sh installs.
func victoriaLogsBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ECP_VICTORIALOGS_BIN"); p != "" {
		return p
	}
	if p, err := filepath.Abs("../.tools/victoria-logs"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("victoria-logs"); err == nil {
		return p
	}
	t.Fatal("victoria-logs is not installed; run scripts/install-victorialogs.sh (or set ECP_VICTORIALOGS_BIN)")
	return ""
}

// TestLogs ships EMQX's log lines end to end with the built binaries:
// emqx-sim writes them into wrap files that rotate and wrap around, the
// agent tails and ships them, ecp writes them into a real VictoriaLogs, and
// the operator reads them back through ecp's API. Mid-stream the agent is
// killed with SIGKILL twice and the log store is down for logStoreDown; at
// the end ecp must hold every line exactly once, with the right cluster and
// project, and a user of another project must see none of them.
func TestLogs(t *testing.T) {
	t.Parallel() // see TestMain
	s := startECP(t)
	ctx := t.Context()
	total := logLines(t)
	const chunks = 10

	vlAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	vlURL := "http://" + vlAddr
	vlBin, vlData := victoriaLogsBin(t), filepath.Join(s.dir, "victoria-logs")
	startVL := func() *testbed.Proc {
		p := s.start("victoria-logs", vlBin, []string{"-storageDataPath=" + vlData, "-httpListenAddr=" + vlAddr, "-loggerLevel=ERROR"}, nil)
		if err := p.WaitReady(ctx, vlURL+"/health", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vl := startVL()

	// Without a receiver ecp refuses agent batches (the agent keeps them);
	// the receiver is set only after its connection test passed, and its
	// password never comes back.
	var apiErr *testbed.APIError
	err = s.api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver", map[string]any{"type": "victorialogs", "url": "http://127.0.0.1:1"}, nil)
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnprocessableEntity || apiErr.Code != "LogReceiverTestFailed" {
		t.Fatalf("unreachable receiver: %v, want 422 LogReceiverTestFailed", err)
	}
	var rcv map[string]any
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver",
		map[string]any{"type": "victorialogs", "url": vlURL, "username": "ecp", "password": "store-secret"}, &rcv); err != nil {
		t.Fatal(err)
	}
	if err := s.api.Do(ctx, http.MethodGet, "/api/v1/system/log-receiver", nil, &rcv); err != nil {
		t.Fatal(err)
	}
	if rcv["url"] != vlURL || rcv["passwordSet"] != true || strings.Contains(fmt.Sprint(rcv), "store-secret") {
		t.Fatalf("receiver reads back as %v", rcv)
	}
	if err := s.api.Do(ctx, http.MethodPost, "/api/v1/system/log-receiver/test", nil, nil); err != nil {
		t.Fatalf("test of the stored receiver: %v", err)
	}

	// EMQX with 1 MB wrap files, 8 of them: 100,000 lines (~21 MB) rotate
	// about 20 times and wrap around to emqx.log.1 twice.
	simAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	simURL := "http://" + simAddr
	logDir := filepath.Join(s.dir, "emqx-log")
	// --node.host-prefix: the node is emqx@10.0.0.1, which every line must name.
	sim := s.start("emqx-sim", bins.Path("emqx-sim"), []string{"--listen", simAddr, "--nodes", "1", "--seed", "7", "--node.host-prefix", "10.0.0.",
		"--log.dir", logDir, "--log.level", "info", "--log.rate", "0", "--log.rotation-size", "1048576", "--log.rotation-count", "8"}, nil)
	if err := sim.WaitReady(ctx, simURL+"/status", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	org, err := s.api.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	plant, err := s.api.CreateProject(ctx, org.ID, "plant")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.api.CreateProject(ctx, org.ID, "other")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := s.api.CreateCluster(ctx, plant.ID, "line-1", simURL)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := s.api.Register(ctx, entry.ID)
	if err != nil {
		t.Fatal(err)
	}
	setup := testbed.AgentSetup{
		Dir: filepath.Join(s.dir, "agent"), EMQXUsername: "admin", EMQXPassword: "public", CollectInterval: reportInterval,
		ExtraRegisterArgs: []string{"--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir},
	}
	if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	agent, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Stop() })
	s.waitState(entry.ID, "running")
	restartAgent := func() {
		t.Helper()
		agent.Kill()
		agent, err = testbed.Start("agent-exporter", filepath.Join(setup.Dir, "agent-exporter"), []string{"run",
			"--state.dir", setup.StateDir(), "--web.listen-address", setup.ListenAddress, "--log.file", filepath.Join(setup.Dir, "agent.log"),
			"--collect.interval", reportInterval.String()}, nil, filepath.Join(setup.Dir, "agent.out"))
		if err != nil {
			t.Fatal(err)
		}
		if err := agent.WaitReady(ctx, "http://"+setup.ListenAddress+"/-/healthy", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	sim2 := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: time.Minute}}
	simLines := func() int {
		var st struct {
			LogLines int `json:"logLines"`
		}
		if err := sim2.Do(ctx, http.MethodGet, "/sim/state", nil, &st); err != nil {
			t.Fatal(err)
		}
		return st.LogLines
	}
	count := func(c *testbed.Client, project string) (int, error) {
		var n struct {
			Count int `json:"count"`
		}
		err := c.Do(ctx, http.MethodGet, "/api/v1/projects/"+project+"/logs/count", nil, &n)
		return n.Count, err
	}
	// waitShipped waits until ecp holds at least n lines, so the agent is
	// never further behind than the wrap files hold.
	waitShipped := func(n int, timeout time.Duration) {
		t.Helper()
		eventually(t, timeout, fmt.Sprintf("%d lines stored", n), func() (bool, string) {
			got, err := count(s.api, plant.ID)
			return err == nil && got >= n, fmt.Sprintf("%d (%v)", got, err)
		})
	}

	start := time.Now()
	per := total / chunks
	for i := range chunks {
		n := per
		if i == chunks-1 {
			n = total - per*(chunks-1)
		}
		if err := sim2.Do(ctx, http.MethodPost, "/sim/logs/write", map[string]int{"lines": n}, nil); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 2, 6:
			// Killed mid-stream: the chunk is being shipped right now.
			time.Sleep(150 * time.Millisecond)
			restartAgent()
			t.Logf("agent killed with SIGKILL and restarted after chunk %d", i+1)
		case 4:
			_ = vl.Stop()
			t.Logf("log store stopped for %s after chunk %d", logStoreDown, i+1)
			time.Sleep(logStoreDown)
			vl = startVL()
		}
		// Stay within the 8 MB the wrap files keep.
		waitShipped(per*i, 2*time.Minute)
	}
	// emqx-sim may add a line of its own (an alarm at start); every line
	// in the files counts.
	want := simLines()
	if want < total || want > total+10 {
		t.Fatalf("emqx-sim wrote %d lines, want %d and at most a few of its own", want, total)
	}
	waitShipped(want, 2*time.Minute)
	// The agent has nothing left unacknowledged, and the store has made
	// everything it took searchable: from here the count is final.
	eventually(t, time.Minute, "the agent caught up", func() (bool, string) {
		b := agentMetric(t, setup.ListenAddress, "agent_exporter_log_bytes_behind")
		return b == "0", "bytes behind " + b
	})
	if resp, err := http.Get(vlURL + "/internal/force_flush"); err == nil {
		_ = resp.Body.Close()
	}
	t.Logf("%d lines shipped in %s", want, time.Since(start).Round(time.Millisecond))
	// What happened on the way, for the record: duplicates recognised by
	// batch id, backpressure answered while the store was down.
	if resp, err := http.Get(s.base + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "ecp_log_") {
				t.Log(l)
			}
		}
	}
	if got, _ := count(s.api, plant.ID); got != want {
		t.Fatalf("ecp counts %d lines, want exactly %d", got, want)
	}

	// Page through every line as the operator's client would.
	seen := make(map[string]bool, want)
	// Part of a word, in another case, as a person types it.
	const typed = "Permission_Den"
	withTyped := 0
	token := ""
	for {
		var page struct {
			Items []struct {
				Cluster, Project, Level, Message, Raw, ID, Node string
				Time                                            time.Time
			} `json:"items"`
			NextPageToken string `json:"nextPageToken"`
		}
		q := url.Values{"limit": {"1000"}}
		if token != "" {
			q.Set("pageToken", token)
		}
		if err := s.api.Do(ctx, http.MethodGet, "/api/v1/projects/"+plant.ID+"/logs?"+q.Encode(), nil, &page); err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if it.Cluster != entry.ID || it.Project != plant.ID || it.Level == "" || it.Message == "" || it.Node != "emqx@10.0.0.1" {
				t.Fatalf("line with wrong labels, no node or unparsed: %+v", it)
			}
			if strings.Contains(strings.ToLower(it.Raw), strings.ToLower(typed)) {
				withTyped++
			}
			if seen[it.Raw] {
				t.Fatalf("line stored twice: %s", it.Raw)
			}
			seen[it.Raw] = true
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if len(seen) != want {
		t.Fatalf("paged through %d distinct lines, want %d", len(seen), want)
	}
	var found struct {
		Count int `json:"count"`
	}
	if err := s.api.Do(ctx, http.MethodGet, "/api/v1/projects/"+plant.ID+"/logs/count?"+url.Values{"q": {typed}}.Encode(), nil, &found); err != nil ||
		found.Count != withTyped || withTyped == 0 {
		t.Fatalf("q=%s found %d lines (%v), want the %d that contain it", typed, found.Count, err, withTyped)
	}

	// A user of another project sees none of them.
	if err := s.api.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "outsider", "password": "outsider-password"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.api.Do(ctx, http.MethodPost, "/api/v1/role-bindings", map[string]string{"username": "outsider", "role": "project-viewer", "project": other.ID}, nil); err != nil {
		t.Fatal(err)
	}
	outsider, err := testbed.Login(ctx, s.base, "outsider", "outsider-password")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := count(outsider, plant.ID); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("outsider counting plant's logs: %v, want 404", err)
	}
	if err := outsider.Do(ctx, http.MethodGet, "/api/v1/projects/"+plant.ID+"/logs", nil, nil); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("outsider reading plant's logs: %v, want 404", err)
	}
	if n, err := count(outsider, other.ID); err != nil || n != 0 {
		t.Fatalf("outsider's own project holds %d lines (%v), want 0", n, err)
	}
}

// agentMetric reads one sample of the agent's /metrics ("" when absent).
func agentMetric(t testing.TB, addr, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}
