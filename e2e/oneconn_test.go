package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestAgentHoldsOneConnection: the built agent, with remote write and log
// shipping on, reaches ecp over one connection for its reports, long-poll,
// pushes and log batches (issue 14: at most one descriptor per agent on
// ecp): by default one HTTP/1.1 connection on which the calls take turns
// between polls. The agent talks to ecp through a counting TCP proxy (ecp's
// external URL), so the test sees every connection it opens.
func TestAgentHoldsOneConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries")
	}
	ctx := t.Context()
	var pushes atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		pushes.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer sink.Close()

	s := &stack{t: t, dir: t.TempDir()}
	addr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s.base = "http://" + addr
	px := startProxy(t, addr)
	s.ecp = s.start("ecp", bins.Path("ecp"), []string{"serve",
		"--web.listen-address", addr, "--web.external-url", px.url,
		"--data.dir", filepath.Join(s.dir, "ecp"), "--downloads.dir", bins.DistDir,
		"--agent.report-interval", reportInterval.String(), "--remote-write.url", sink.URL + "/api/v1/write"},
		[]string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword})
	if err := s.ecp.WaitReady(ctx, s.base+"/-/ready", time.Minute); err != nil {
		t.Fatal(err)
	}
	if s.api, err = testbed.Login(ctx, s.base, "admin", adminPassword); err != nil {
		t.Fatal(err)
	}

	vlAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	vl := s.start("victoria-logs", victoriaLogsBin(t), []string{"-storageDataPath=" + filepath.Join(s.dir, "victoria-logs"), "-httpListenAddr=" + vlAddr, "-loggerLevel=ERROR"}, nil)
	if err := vl.WaitReady(ctx, "http://"+vlAddr+"/health", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver", map[string]any{"type": "victorialogs", "url": "http://" + vlAddr}, nil); err != nil {
		t.Fatal(err)
	}

	simAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	simURL := "http://" + simAddr
	logDir := filepath.Join(s.dir, "emqx-log")
	sim := s.start("emqx-sim", bins.Path("emqx-sim"), []string{"--listen", simAddr, "--nodes", "1", "--seed", "7", "--log.dir", logDir, "--log.level", "info", "--log.rate", "5"}, nil)
	if err := sim.WaitReady(ctx, simURL+"/status", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	p := s.projects("plant")[0]
	entry, err := s.api.CreateCluster(ctx, p.ID, "line-1", simURL)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := s.api.Register(ctx, entry.ID)
	if err != nil {
		t.Fatal(err)
	}
	setup := testbed.AgentSetup{Dir: filepath.Join(s.dir, "agent"), EMQXUsername: "admin", EMQXPassword: "public", CollectInterval: reportInterval,
		ExtraRegisterArgs: []string{"--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir}}
	if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	agent, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Stop() })
	s.waitState(entry.ID, "running")

	// reports waits for n more reports than the entry showed.
	reports := func(n int) {
		t.Helper()
		seen, last := 0, time.Time{}
		eventually(t, time.Duration(n+10)*reportInterval, "reports", func() (bool, string) {
			cl, err := s.api.Cluster(ctx, entry.ID)
			if err != nil {
				return false, err.Error()
			}
			if !cl.LastReportAt.Equal(last) {
				seen, last = seen+1, cl.LastReportAt
			}
			return seen > n, ""
		})
	}
	logCount := func() int {
		var c struct {
			Count int `json:"count"`
		}
		if err := s.api.Do(ctx, http.MethodGet, "/api/v1/projects/"+p.ID+"/logs/count", nil, &c); err != nil {
			t.Fatal(err)
		}
		return c.Count
	}
	reports(3)
	accepted, open := px.counts()
	pushed, logged := pushes.Load(), logCount()
	reports(5)
	eventually(t, 20*time.Second, "log lines shipped during the window", func() (bool, string) { return logCount() > logged, "" })
	if pushes.Load() <= pushed {
		t.Fatalf("no remote write reached the sink during the window (%d before, %d after)", pushed, pushes.Load())
	}
	accepted2, open2 := px.counts()
	if open != 1 || open2 != 1 || accepted2 != accepted {
		t.Fatalf("connections from the agent: %d open after 3 reports, %d open and %d new after 5 more with pushes and logs; want one, held throughout\n%s",
			open, open2, accepted2-accepted, px.describe())
	}
	if !px.allOpenBegin("GET /", "POST /") {
		t.Fatalf("the agent's connection is not HTTP/1.1:\n%s", px.describe())
	}
}

// proxy forwards TCP connections to ecp and keeps what it saw of each.
type proxy struct {
	url string
	mu  sync.Mutex
	// conns are the connections accepted so far: whether each is open and
	// how it began ("PRI * HTTP/2.0" for HTTP/2 with prior knowledge).
	conns []*proxied
}

type proxied struct {
	open  bool
	start []byte
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{url: "http://" + ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			pc := &proxied{open: true}
			p.mu.Lock()
			p.conns = append(p.conns, pc)
			p.mu.Unlock()
			wg.Go(func() { p.forward(c, target, pc) })
		}
	})
	return p
}

func (p *proxy) forward(c net.Conn, target string, pc *proxied) {
	defer func() {
		_ = c.Close()
		p.mu.Lock()
		pc.open = false
		p.mu.Unlock()
	}()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return
	}
	p.mu.Lock()
	pc.start = bytes.Clone(buf[:n])
	p.mu.Unlock()
	if _, err := up.Write(buf[:n]); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, up)
		_ = c.Close()
		close(done)
	}()
	_, _ = io.Copy(up, c)
	_ = up.Close()
	<-done
}

// counts is how many connections the agent opened and how many are open;
// the operator's download of the agent binary is not the agent's.
func (p *proxy) counts() (accepted, open int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if bytes.HasPrefix(c.start, []byte("GET /downloads/")) {
			continue
		}
		accepted++
		if c.open {
			open++
		}
	}
	return accepted, open
}

// allOpenBegin says whether every open connection began with one of the
// prefixes ("PRI * HTTP/2.0" for HTTP/2 with prior knowledge).
func (p *proxy) allOpenBegin(prefixes ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if c.open && !slices.ContainsFunc(prefixes, func(pre string) bool { return bytes.HasPrefix(c.start, []byte(pre)) }) {
			return false
		}
	}
	return true
}

func (p *proxy) describe() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b bytes.Buffer
	for i, c := range p.conns {
		line, _, _ := bytes.Cut(c.start, []byte("\r\n"))
		fmt.Fprintf(&b, "  #%d open=%v %q\n", i, c.open, line)
	}
	return b.String()
}
