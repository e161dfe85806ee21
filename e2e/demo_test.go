package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestDemoStopsCleanly runs the demo as `make demo` does, waits until it
// manages both clusters, breaks a connector as `make demo-fault` does and
// waits for the alert mail, which the demo's own inbox page (the one its
// banner names) must list and show, presses Ctrl-C and checks that the demo
// exits 0 and no process it started is left.
func TestDemoStopsCleanly(t *testing.T) {
	t.Parallel() // see TestMain
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries")
	}
	for _, addr := range []string{"127.0.0.1:18083", "127.0.0.1:28083", "127.0.0.1:9733", "127.0.0.1:9734",
		"127.0.0.1:9090", "127.0.0.1:9093", "127.0.0.1:1025", "127.0.0.1:8025", "127.0.0.1:8026", "127.0.0.1:9428"} {
		if err := testbed.CheckFree(addr); err != nil {
			t.Fatalf("the demo's fixed ports must be free for this test: %v", err)
		}
	}
	dir := t.TempDir()
	demoBin := filepath.Join(dir, "demo")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", demoBin, "./demo")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}
	// The demo runs its own links to the binaries, so that the processes
	// of the tests running beside this one (from bins.Dir) are not taken
	// for what the demo left behind.
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ecp", "emqx-sim", "agent-exporter"} {
		if err := os.Link(bins.Path(name), filepath.Join(binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	ecpAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	// Not CommandContext: its cancel would SIGKILL the demo before it could
	// stop what it started; the cleanup below presses Ctrl-C instead.
	cmd := exec.Command(demoBin, "--bin", binDir, "--dist", bins.DistDir, "--dir", work) //nolint:noctx // see above
	cmd.Env = append(os.Environ(), "DEMO_ECP_ADDR="+ecpAddr, "ECP_ADMIN_PASSWORD=demo-test-password")
	cmd.Dir = ".." // as make demo runs it: the installed tools are found in .tools
	stdout := &transcript{want: "Press Ctrl-C", seen: make(chan struct{})}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false // set once the test itself received from exited
	t.Cleanup(func() {
		// On an early failure, stop the demo the way a user would.
		if waited {
			return
		}
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-exited:
			t.Logf("demo stopped by the cleanup: %v", err)
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
		}
	})
	select {
	case <-stdout.seen:
		out := stdout.String()
		for _, want := range []string{"north-line-1   running", "south-line-1   running", "ecp is managing 2 clusters",
			"Prometheus http://127.0.0.1:9090", "Mail inbox: http://127.0.0.1:8026", "collected into VictoriaLogs"} {
			if !strings.Contains(out, want) {
				t.Errorf("demo output lacks %q:\n%s", want, out)
			}
		}
	case err := <-exited:
		waited = true
		t.Fatalf("demo exited before it was ready (%v):\n%s\n%s", err, stdout.String(), stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("demo not ready within 3 minutes:\n%s\n%s", stdout.String(), stderr.String())
	}

	// make demo-fault breaks a connector; the alert must reach the
	// project's mailbox through Prometheus, Alertmanager and Mailpit.
	brokeAt := time.Now()
	fault := exec.CommandContext(t.Context(), demoBin, "--fault")
	if out, err := fault.CombinedOutput(); err != nil {
		t.Fatalf("demo --fault: %v\n%s", err, out)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var alert mailMessage
	for {
		var inbox struct {
			Messages []mailMessage `json:"messages"`
		}
		var ok bool
		if err := getJSONFrom("http://127.0.0.1:8025/api/v1/messages", &inbox); err == nil {
			alert, ok = alertMailed(inbox.Messages)
		}
		if ok {
			t.Logf("the alert mail arrived %s after the connector broke (demo intervals: %s)", time.Since(brokeAt).Round(time.Second), "5s")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert mail within 2 minutes of breaking a connector; demo output:\n%s", stdout.String())
		}
		time.Sleep(time.Second)
	}

	checkInboxShows(t, alert)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = <-exited
	waited = true
	if err != nil {
		t.Fatalf("demo after Ctrl-C: %v\n%s", err, stderr.String())
	}
	if left := processesUnder(t, binDir, work); len(left) > 0 {
		t.Fatalf("processes left after Ctrl-C: %v", left)
	}
}

// alertMailed finds the broken connector's alert (or its action's) in the
// mailbox of the project the first cluster belongs to.
func alertMailed(messages []mailMessage) (mailMessage, bool) {
	for _, m := range messages {
		north := len(m.To) > 0 && m.To[0].Address == "ops@factory-north.example"
		// One fault is one notification: the connector and its action
		// arrive grouped in one mail per cluster, whose subject names the
		// cluster (and the alert when it is alone) and whose text lists them.
		text := m.Subject + " " + m.Snippet
		if north && strings.Contains(m.Subject, "[FIRING") && strings.Contains(m.Subject, "north-line-1") &&
			(strings.Contains(text, "EMQXConnectorAbnormal") || strings.Contains(text, "EMQXActionAbnormal")) {
			return m, true
		}
	}
	return mailMessage{}, false
}

type mailMessage struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	Snippet string `json:"Snippet"`
	To      []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

// checkInboxShows checks that the demo's inbox page lists the alert mail with
// its subject and a link to it, and that the linked page shows its subject,
// sender, recipient and text body as Mailpit holds them.
func checkInboxShows(t *testing.T, alert mailMessage) {
	t.Helper()
	list := getPage(t, "http://127.0.0.1:8026/")
	link := `href="/message/` + alert.ID + `"`
	if !strings.Contains(list, link) || !strings.Contains(html.UnescapeString(list), alert.Subject) {
		t.Fatalf("inbox page lacks the alert mail (%s, %q):\n%s", link, alert.Subject, list)
	}
	var full struct {
		Text string `json:"Text"`
	}
	if err := getJSONFrom("http://127.0.0.1:8025/api/v1/message/"+alert.ID, &full); err != nil {
		t.Fatal(err)
	}
	page := html.UnescapeString(getPage(t, "http://127.0.0.1:8026/message/"+alert.ID))
	for _, want := range []string{alert.Subject, "ecp@demo.example", "ops@factory-north.example", strings.TrimSpace(full.Text)} {
		if want == "" || !strings.Contains(page, want) {
			t.Errorf("message page lacks %q:\n%s", want, page)
		}
	}
}

// getPage fetches an HTML page and returns its body.
func getPage(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback URL of the test's own making
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, body)
	}
	return string(body)
}

func getJSONFrom(url string, v any) error {
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback URL of the test's own making
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// processesUnder lists running processes whose command line names any of dirs.
func processesUnder(t *testing.T, dirs ...string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.ReplaceAll(string(raw), "\x00", " ")
		for _, d := range dirs {
			if strings.Contains(cmdline, d) {
				found = append(found, e.Name()+": "+cmdline)
				break
			}
		}
	}
	return found
}

// transcript keeps what the demo prints and closes seen once a line
// containing want was written.
type transcript struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *transcript) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

func (w *transcript) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
