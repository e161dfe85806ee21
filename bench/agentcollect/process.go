package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// callsPath is where the simulator child answers how many EMQX API calls
// it served so far (every request but this one).
const callsPath = "/bench/calls"

// targetCalls is issue 14's bound on EMQX calls per tick.
const targetCalls = 20

// targetProcessCPU is issue 14's bound on the agent process's CPU per
// tick, the remote-write push included.
const targetProcessCPU = 25 * time.Millisecond

// countCalls counts every request to h and answers callsPath with the
// count.
func countCalls(h http.Handler) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == callsPath {
			_, _ = io.WriteString(w, strconv.FormatInt(n.Load(), 10))
			return
		}
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// simCalls reads the simulator child's call count.
func simCalls(ctx context.Context, base string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+callsPath, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read the simulator's call count: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// fakeECP is the ecp side of one agent: it registers it, answers reports
// with a report interval of one second (so the agent, following ecp,
// collects, pushes and reports every second), holds the long-poll and
// counts the remote-write pushes it takes as a sink.
type fakeECP struct {
	srv    *http.Server
	url    string
	pushes atomic.Int64
	bytes  atomic.Int64
	tick   chan struct{} // signalled on every push
}

const benchCredential = "agentcollect-credential"

func startFakeECP(ctx context.Context) (*fakeECP, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the fake ecp: %w", err)
	}
	f := &fakeECP{url: "http://" + ln.Addr().String(), tick: make(chan struct{}, 1024)}
	desired := agentproto.DesiredState{Revision: 1, MaxConnections: 1000}
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentproto.PathRegister, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		reply(w, agentproto.RegisterResponse{ClusterID: "bench", Project: "bench", Credential: benchCredential, ReportIntervalSeconds: 1, Desired: desired})
	})
	mux.HandleFunc("POST "+agentproto.PathReport, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		reply(w, agentproto.ReportResponse{ReportIntervalSeconds: 1, Desired: desired})
	})
	mux.HandleFunc("GET "+agentproto.PathDesired, func(w http.ResponseWriter, r *http.Request) {
		wait, _ := time.ParseDuration(r.URL.Query().Get(agentproto.QueryTimeout))
		t := time.NewTimer(min(max(wait, time.Second), time.Minute))
		defer t.Stop()
		select {
		case <-r.Context().Done():
		case <-t.C:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+agentproto.PathWrite, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		f.bytes.Add(n)
		f.pushes.Add(1)
		select {
		case f.tick <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST "+agentproto.PathLogs, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// waitPushes waits until the sink holds n pushes.
func (f *fakeECP) waitPushes(ctx context.Context, n int64, within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for f.pushes.Load() < n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("the agent pushed %d collections of the %d awaited within %s", f.pushes.Load(), n, within)
		case <-f.tick:
		}
	}
	return nil
}

// agentProc is a running `agent-exporter run`.
type agentProc struct {
	cmd      *exec.Cmd
	bin, dir string
	url      string
}

// startAgent runs the built binary with its state in dir, following ecp's
// interval, with pprof on, and waits until it says it is running.
func startAgent(ctx context.Context, bin, dir string) (*agentProc, error) {
	cmd := exec.CommandContext(ctx, bin, "run", "--state.dir", filepath.Join(dir, "state"),
		"--log.file", filepath.Join(dir, "agent.log"), "--web.listen-address", "127.0.0.1:0", "--web.enable-pprof")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("agent stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	a := &agentProc{cmd: cmd, bin: bin, dir: dir}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "is running") {
		a.stop()
		if err == nil {
			err = errors.New("no start line")
		}
		return nil, fmt.Errorf("the agent did not start (said %q): %w", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	var ctl struct {
		URL string `json:"url"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "state", "control.json"))
	if err == nil {
		err = json.Unmarshal(b, &ctl)
	}
	if err != nil {
		a.stop()
		return nil, fmt.Errorf("read the agent's control file: %w", err)
	}
	a.url = ctl.URL
	return a, nil
}

func (a *agentProc) stop() {
	if a.cmd.Process != nil {
		_ = a.cmd.Process.Signal(os.Interrupt)
	}
	_ = a.cmd.Wait()
}

// register runs `agent-exporter register` against the running agent.
func (a *agentProc) register(ctx context.Context, ecpURL, emqxURL string) error {
	cmd := exec.CommandContext(ctx, a.bin, "register", "--state.dir", filepath.Join(a.dir, "state"),
		"--ecp-url", ecpURL, "--token", "agentcollect-token", "--username", sim.DefaultUsername,
		"--password", sim.DefaultPassword, "--dashboard-url", emqxURL, "--api-url", emqxURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("agent-exporter register: %w: %s", err, out)
	}
	return nil
}

// profile fetches a CPU profile of d from the agent's pprof endpoint.
func (a *agentProc) profile(ctx context.Context, d time.Duration, path string) error {
	return a.pprof(ctx, "profile?seconds="+strconv.Itoa(int(d/time.Second)), d, path)
}

// pprof fetches one of the agent's pprof profiles (taking d) into path.
func (a *agentProc) pprof(ctx context.Context, what string, d time.Duration, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("agent %s profile: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent %s profile: status %d", what, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("agent %s profile: %w", what, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("agent %s profile: %w", what, err)
	}
	return f.Close()
}

// measureProcess measures the built `agent-exporter run` doing its whole
// job: registered with a fake ecp whose remote-write sink takes its
// pushes, collecting from emqx-sim every second (ecp's report interval).
// A tick is one push at the sink; per tick it reads the agent process's
// CPU time from /proc/<pid>/stat and the simulator's calls, and at the
// end its peak RSS (VmHWM).
func measureProcess(ctx context.Context, cfg config) error {
	simURL, stopSim, err := startSim(ctx)
	if err != nil {
		return err
	}
	defer stopSim()
	ecp, err := startFakeECP(ctx)
	if err != nil {
		return err
	}
	defer ecp.srv.Close()
	dir, err := os.MkdirTemp("", "agentcollect-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	agent, err := startAgent(ctx, cfg.agentBinary, dir)
	if err != nil {
		return err
	}
	defer agent.stop()
	if err := agent.register(ctx, ecp.url, simURL); err != nil {
		return err
	}
	// Warm up: login, connections, the selector's first view.
	if err := ecp.waitPushes(ctx, 3, time.Minute); err != nil {
		return err
	}
	pid := agent.cmd.Process.Pid
	// reading is the agent's cost so far and the EMQX calls it made.
	reading := func() (agentsim.Proc, int64, error) {
		p, err := agentsim.ReadProc(pid)
		if err != nil {
			return p, 0, err
		}
		c, err := simCalls(ctx, simURL)
		return p, c, err
	}
	p0, c0, err := reading()
	if err != nil {
		return err
	}
	n0 := ecp.pushes.Load()
	profErr := make(chan error, 1)
	if cfg.cpuProfile != "" {
		go func() { profErr <- agent.profile(ctx, time.Duration(cfg.collections)*time.Second, cfg.cpuProfile) }()
	}
	if err := ecp.waitPushes(ctx, n0+int64(cfg.collections), time.Duration(cfg.collections)*5*time.Second+time.Minute); err != nil {
		return err
	}
	p1, c1, err := reading()
	if err != nil {
		return err
	}
	ticks := ecp.pushes.Load() - n0
	if cfg.cpuProfile != "" {
		if err := <-profErr; err != nil {
			return err
		}
	}
	if cfg.heapProfile != "" {
		if err := agent.pprof(ctx, "heap", 0, cfg.heapProfile); err != nil {
			return err
		}
	}
	cpu := (p1.CPU - p0.CPU) / time.Duration(ticks)
	calls := float64(c1-c0) / float64(ticks)
	peak := p1.HWMKiB << 10
	fmt.Printf("agentcollect: built agent %s against emqx-sim (%d nodes, %d rules, %d connectors), fake ecp sink, 1 s ticks; %d ticks measured\n",
		cfg.agentBinary, cfg.nodes, cfg.rules, cfg.connectors, ticks)
	fmt.Printf("agent process cpu/tick %-9s (target ≤ %s) %s  [/proc/%d/stat, %s over %d ticks, 10 ms clock ticks]\n",
		ms(cpu), ms(targetProcessCPU), verdict(cpu <= targetProcessCPU), pid, ms(p1.CPU-p0.CPU), ticks)
	kib, err := agentsim.StatusKiB(strconv.Itoa(pid), "RssAnon", "RssFile")
	if err != nil {
		return err
	}
	fmt.Printf("agent process peak rss %-9s (target ≤ %s) %s  [VmHWM; rss now %s: anonymous %s, file-backed %s]\n", mib(peak), mib(targetRSS), verdict(peak <= targetRSS),
		mib(p1.RSSKiB<<10), mib(kib[0]<<10), mib(kib[1]<<10))
	fmt.Printf("emqx calls/tick        %-9.1f (target ≤ %d) %s\n", calls, targetCalls, verdict(calls <= targetCalls))
	fmt.Printf("remote write           %.0f bytes/push\n", float64(ecp.bytes.Load())/float64(max(ecp.pushes.Load(), 1)))
	if cfg.cpuProfile != "" {
		fmt.Printf("cpu profile            %s (go tool pprof -top %s %s)\n", cfg.cpuProfile, cfg.agentBinary, cfg.cpuProfile)
	}
	return nil
}

var errNoBinary = errors.New("--agent.binary: build it first: go build -o /tmp/agent-exporter ./agent-exporter")
