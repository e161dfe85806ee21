package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// BenchmarkLogShipping measures log collection end to end with the built
// binaries on this machine: emqx-sim writes ECP_BENCH_LOG_LINES lines
// (default 200,000) at once, and the clock runs until ecp has stored every
// one in VictoriaLogs, all four processes sharing the machine. It reports
// lines/s end to end and the CPU time the agent (and ecp) spent per 10,000
// lines, read from /proc (and the store's, for comparison).
//
//	go test ./e2e -run '^$' -bench LogShipping -benchtime 1x
func BenchmarkLogShipping(b *testing.B) {
	if testing.Short() {
		b.Skip("end-to-end: runs the built binaries")
	}
	lines := 200_000
	if s := os.Getenv("ECP_BENCH_LOG_LINES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("ECP_BENCH_LOG_LINES=%q: want a positive number", s)
		}
		lines = n
	}
	dir := b.TempDir()
	ctx := b.Context()
	procs := []*testbed.Proc{}
	start := func(name, bin string, args, env []string) *testbed.Proc {
		p, err := testbed.Start(name, bin, args, env, filepath.Join(dir, "logs", name+".log"))
		if err != nil {
			b.Fatal(err)
		}
		procs = append(procs, p)
		return p
	}
	b.Cleanup(func() {
		for i := len(procs) - 1; i >= 0; i-- {
			_ = procs[i].Stop()
		}
	})
	addr := func() string {
		a, err := testbed.FreeAddr()
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	ecpAddr, vlAddr, simAddr := addr(), addr(), addr()
	base, vlURL, simURL := "http://"+ecpAddr, "http://"+vlAddr, "http://"+simAddr
	ecp := start("ecp", bins.Path("ecp"), []string{"serve", "--web.listen-address", ecpAddr, "--web.external-url", base,
		"--data.dir", filepath.Join(dir, "ecp"), "--downloads.dir", bins.DistDir, "--agent.report-interval", reportInterval.String()},
		[]string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword})
	vl := start("victoria-logs", victoriaLogsBin(b), []string{"-storageDataPath=" + filepath.Join(dir, "vl"), "-httpListenAddr=" + vlAddr, "-loggerLevel=ERROR"}, nil)
	logDir := filepath.Join(dir, "emqx-log")
	sim := start("emqx-sim", bins.Path("emqx-sim"), []string{"--listen", simAddr, "--nodes", "1", "--seed", "7",
		"--log.dir", logDir, "--log.level", "info", "--log.rate", "0"}, nil)
	for p, u := range map[*testbed.Proc]string{ecp: base + "/-/ready", vl: vlURL + "/health", sim: simURL + "/status"} {
		if err := p.WaitReady(ctx, u, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	api, err := testbed.Login(ctx, base, "admin", adminPassword)
	if err != nil {
		b.Fatal(err)
	}
	if err := api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver", map[string]any{"type": "victorialogs", "url": vlURL}, nil); err != nil {
		b.Fatal(err)
	}
	org, err := api.CreateOrg(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	project, err := api.CreateProject(ctx, org.ID, "bench")
	if err != nil {
		b.Fatal(err)
	}
	entry, err := api.CreateCluster(ctx, project.ID, "bench", simURL)
	if err != nil {
		b.Fatal(err)
	}
	reg, err := api.Register(ctx, entry.ID)
	if err != nil {
		b.Fatal(err)
	}
	setup := testbed.AgentSetup{Dir: filepath.Join(dir, "agent"), ListenAddress: addr(), EMQXUsername: "admin", EMQXPassword: "public",
		CollectInterval: reportInterval, ExtraRegisterArgs: []string{"--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir}}
	agent, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		b.Fatal(err)
	}
	procs = append(procs, agent)
	if _, err := api.WaitState(ctx, entry.ID, "running", time.Minute); err != nil {
		b.Fatal(err)
	}
	simAPI := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 5 * time.Minute}}
	count := func() int {
		var n struct {
			Count int `json:"count"`
		}
		_ = api.Do(ctx, http.MethodGet, "/api/v1/projects/"+project.ID+"/logs/count", nil, &n)
		return n.Count
	}

	// emqx-sim writes a line or two of its own at start: ship them first.
	for agentMetric(b, setup.ListenAddress, "agent_exporter_log_bytes_behind") != "0" {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if resp, err := http.Get(vlURL + "/internal/force_flush"); err == nil {
		_ = resp.Body.Close()
	}
	b.ResetTimer()
	var total time.Duration
	var agentCPU, ecpCPU, vlCPU, simCPU time.Duration
	shipped := 0
	for i := range b.N {
		before := count()
		a0, e0, v0, s0 := cpuTime(b, agent.PID()), cpuTime(b, ecp.PID()), cpuTime(b, vl.PID()), cpuTime(b, sim.PID())
		t0 := time.Now()
		if err := simAPI.Do(ctx, http.MethodPost, "/sim/logs/write", map[string]int{"lines": lines}, nil); err != nil {
			b.Fatal(err)
		}
		// Done when the agent holds nothing unacknowledged: ecp
		// acknowledges a batch only once the store took it. Polling the
		// agent's /metrics costs next to nothing; counting in the store
		// is done once, after the clock stopped.
		time.Sleep(20 * time.Millisecond)
		for agentMetric(b, setup.ListenAddress, "agent_exporter_log_bytes_behind") != "0" {
			if time.Since(t0) > 5*time.Minute {
				b.Fatalf("round %d: not shipped after 5 minutes", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
		total += time.Since(t0)
		agentCPU += cpuTime(b, agent.PID()) - a0
		ecpCPU += cpuTime(b, ecp.PID()) - e0
		vlCPU += cpuTime(b, vl.PID()) - v0
		simCPU += cpuTime(b, sim.PID()) - s0
		if resp, err := http.Get(vlURL + "/internal/force_flush"); err == nil {
			_ = resp.Body.Close()
		}
		if got := count() - before; got != lines {
			b.Fatalf("round %d: ecp counts %d new lines, want %d", i, got, lines)
		}
		shipped += lines
	}
	b.StopTimer()
	per10k := func(d time.Duration) float64 { return float64(d.Milliseconds()) / (float64(shipped) / 10_000) }
	b.ReportMetric(float64(shipped)/total.Seconds(), "lines/s")
	b.ReportMetric(per10k(agentCPU), "agent-cpu-ms/10k-lines")
	b.ReportMetric(per10k(ecpCPU), "ecp-cpu-ms/10k-lines")
	b.ReportMetric(per10k(vlCPU), "store-cpu-ms/10k-lines")
	b.ReportMetric(per10k(simCPU), "emqx-sim-cpu-ms/10k-lines")
	b.ReportMetric(peakRSSMB(b, agent.PID()), "agent-peak-rss-MB")
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the user+system CPU time of process pid so far (/proc/pid/stat).
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// peakRSSMB is the process's peak resident set (VmHWM) in MB.
func peakRSSMB(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
