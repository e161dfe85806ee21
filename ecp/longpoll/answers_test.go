package longpoll

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	answersAgents = flag.Int("longpoll.answers-agents", 1000, "agents BenchmarkHeldPollAnswers holds polls for")
	answersHold   = flag.Duration("longpoll.answers-hold", 2*time.Second, "how long each of BenchmarkHeldPollAnswers' polls asks to be held")
	answersWindow = flag.Duration("longpoll.answers-window", 10*time.Second, "BenchmarkHeldPollAnswers' measured window")
)

// BenchmarkHeldPollAnswers measures the server's CPU per poll answered at
// its deadline, the steady state of a fleet on one HTTP/1.1 connection
// each: every agent's poll is taken over, answered when its hold ends,
// its connection handed back, and the agent's next poll arrives on it.
// The agents (a child process) send their polls at ticks spread evenly
// over an interval, as a fleet's reports are. Run with
//
//	go test -run '^$' -bench HeldPollAnswers -benchtime 1x ./ecp/longpoll/
//
// It measured 232-340 us per answer (1,000 agents, 2 s holds, 400
// answers/s, a loaded two-core host). Moving long holds' deadlines to
// 20 ms slots, so that one wake-up of the runtime answers a slot's polls,
// gave 175-229 us here, but not on ecp under bench/fleet in session 7,
// with a goroutine and a timer per poll. With one goroutine holding every
// poll (holder.go) answering polls up to 30 ms early with the one falling
// due did pay on ecp (session 8; holder.go has the figures).
func BenchmarkHeldPollAnswers(b *testing.B) {
	for b.Loop() {
		perAnswer, answers := heldPollAnswers(b, *answersAgents, *answersHold, *answersWindow)
		b.ReportMetric(perAnswer, "cpu-µs/answer")
		b.ReportMetric(answers, "answers/s")
	}
}

func heldPollAnswers(b *testing.B, n int, hold, window time.Duration) (perAnswer, perSecond float64) {
	stop, stopPolls := context.WithCancel(context.Background())
	var answered atomic.Int64
	type reply struct {
		ReportIntervalSeconds int `json:"reportIntervalSeconds"`
		Desired               struct {
			Revision       int64 `json:"revision"`
			MaxConnections int   `json:"maxConnections"`
		} `json:"desired"`
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		_ = Hold(w, r, Poll{Deadline: time.Now().Add(hold), Stop: stop,
			Final:    func() any { return reply{ReportIntervalSeconds: 15} },
			Check:    func() (any, context.Context) { return nil, stop },
			Answered: func(int, bool) { answered.Add(1) }})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	// A plain http.Server: httptest's would count the connections handed
	// back while it closes.
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	defer stopPolls()

	defer startCostClient(b, fmt.Sprintf("answers http://%s %d %d", ln.Addr(), n, int64(hold)))()
	time.Sleep(2 * (hold + time.Second)) // every agent started and answered once: the steady state
	cpu0, n0, t0 := processCPU(b), answered.Load(), time.Now()
	time.Sleep(window)
	cpu1, n1, t1 := processCPU(b), answered.Load(), time.Now()
	if n1 == n0 {
		b.Fatal("no poll answered in the window")
	}
	return float64((cpu1-cpu0)/time.Microsecond) / float64(n1-n0), float64(n1-n0) / t1.Sub(t0).Seconds()
}

// processCPU is the CPU time this process used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// answersClient plays n agents for BenchmarkHeldPollAnswers: each holds
// one HTTP/1.1 connection and sends a poll at each of its ticks, half a
// second more than a hold apart (an agent's margin), the agents' ticks
// spread evenly over the interval as a fleet's are.
func answersClient(base string, n int, hold time.Duration) int {
	every := hold + 500*time.Millisecond
	start := time.Now()
	for i := range n {
		go func() {
			hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
			for next := start.Add(every * time.Duration(i) / time.Duration(n)); ; next = next.Add(every) {
				time.Sleep(time.Until(next))
				resp, err := hc.Get(base + "/poll")
				if err != nil {
					fmt.Fprintln(os.Stderr, "poll:", err)
					os.Exit(1)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}
