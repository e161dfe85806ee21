package longpoll

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var costAgents = flag.Int("longpoll.agents", 2000, "agents BenchmarkHeldPollMemory holds a poll for")

// costClientEnv, when set ("mode addr n"), makes the test binary the
// benchmark's client process: its memory must not count as the server's.
const costClientEnv = "LONGPOLL_COST_CLIENT"

// BenchmarkHeldPollMemory measures what ecp's memory grows by per agent
// holding a desired-state poll, each agent as the real one connects:
//
//	http1-takeover  a poll taken over + the report's kept-alive connection (agents before HTTP/2)
//	http1-oneconn   a poll taken over, the report sent before it on the same connection
//	http1-handler   the same with the poll left in its handler (no take-over)
//	h2c             one HTTP/2 connection: the poll parked in its handler, the report beside it
//	h2-tls          the same over TLS, as a deployment with https:// serves its agents
//
// The agents run in a child process; the figures are the server's heap and
// stacks (and resident set, and descriptors) per agent. Run with
//
//	go test -run '^$' -bench HeldPollMemory -benchtime 1x ./ecp/longpoll/ [-longpoll.agents 2000]
func BenchmarkHeldPollMemory(b *testing.B) {
	for _, mode := range []string{"http1-takeover", "http1-oneconn", "http1-handler", "h2c", "h2-tls"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				heap, stack, rss, fds := heldPollCost(b, mode, *costAgents)
				b.ReportMetric(heap+stack, "heap+stack-B/agent")
				b.ReportMetric(stack, "stack-B/agent")
				b.ReportMetric(rss, "rss-B/agent")
				b.ReportMetric(fds, "fds/agent")
			}
		})
	}
}

func heldPollCost(b *testing.B, mode string, n int) (heap, stack, rss, fds float64) {
	stop, stopPolls := context.WithCancel(context.Background())
	var held atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		if mode == "http1-handler" {
			w = struct{ http.ResponseWriter }{w} // hides Hijack
		}
		counted := false
		_ = Hold(w, r, Poll{Deadline: time.Now().Add(time.Hour), Stop: stop,
			Check: func() (any, context.Context) {
				if !counted {
					counted = true
					held.Add(1)
				}
				return nil, stop
			},
			Answered: func(int, bool) {}})
	})
	mux.HandleFunc("/report", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "{}\n") })
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	if mode == "h2-tls" {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv.Start()
	}
	defer srv.Close()
	defer stopPolls()

	heap0, stack0, rss0, fds0 := serverCost(b)
	defer startCostClient(b, fmt.Sprintf("%s %s %d", mode, srv.URL, n))()
	for deadline := time.Now().Add(time.Minute); held.Load() < int64(n); {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d polls held", held.Load(), n)
		}
		time.Sleep(10 * time.Millisecond) // the child's polls arrive on their own
	}
	heap1, stack1, rss1, fds1 := serverCost(b)
	per := func(a, b int64) float64 { return float64(b-a) / float64(n) }
	return per(heap0, heap1), per(stack0, stack1), per(rss0, rss1), per(fds0, fds1)
}

// startCostClient runs this test binary as a benchmark's client process,
// playing the agents spec (costClientEnv) says, and returns once they are
// ready; calling what it returns ends the client.
func startCostClient(b *testing.B, spec string) (stop func()) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), costClientEnv+"="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop = func() { _ = stdin.Close(); _ = cmd.Wait() }
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		stop()
		b.Fatalf("client: %q %v", line, err)
	}
	return stop
}

// serverCost is this process's heap in use, goroutine stacks, resident set
// and open descriptors, after a collection.
func serverCost(b *testing.B) (heap, stack, rss, fds int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			rss = kib << 10
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		b.Fatal(err)
	}
	return int64(ms.HeapInuse), int64(ms.StackInuse), rss, int64(len(ents))
}

// costClient plays n agents against base, prints "ready" once every
// agent's report was answered and its poll sent, then holds them until
// stdin closes.
func costClient(spec string) int {
	var mode, base string
	var n int
	if _, err := fmt.Sscanf(spec, "%s %s %d", &mode, &base, &n); err != nil {
		fmt.Fprintln(os.Stderr, "client spec:", err)
		return 2
	}
	if mode == "answers" {
		var hold time.Duration
		if _, err := fmt.Sscanf(spec, "%s %s %d %d", &mode, &base, &n, &hold); err != nil {
			fmt.Fprintln(os.Stderr, "client spec:", err)
			return 2
		}
		return answersClient(base, n, hold)
	}
	h2 := mode == "h2c" || mode == "h2-tls"
	newTransport := func(h2 bool) *http.Transport {
		t := &http.Transport{MaxConnsPerHost: 1, Protocols: new(http.Protocols),
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the benchmark's own test certificate
		t.Protocols.SetHTTP1(!h2)
		t.Protocols.SetUnencryptedHTTP2(h2)
		t.Protocols.SetHTTP2(h2)
		return t
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		// As the agent: before HTTP/2 a client for the poll and another
		// for the rest; with it one for everything.
		// http1-oneconn: one HTTP/1.1 connection, the report answered
		// before the poll is sent on it.
		poll := &http.Client{Transport: newTransport(h2)}
		report := poll
		if !h2 && mode != "http1-oneconn" {
			report = &http.Client{Transport: newTransport(false)}
		}
		reported := make(chan struct{})
		go func() {
			if mode == "http1-oneconn" {
				<-reported
			}
			_, _ = poll.Get(base + "/poll")
		}()
		wg.Go(func() {
			defer close(reported)
			resp, err := report.Get(base + "/report")
			if err != nil {
				errs <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		fmt.Fprintln(os.Stderr, "report:", err)
		return 1
	default:
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
