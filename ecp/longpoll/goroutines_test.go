package longpoll

import (
	"bytes"
	"context"
	"net/http"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serverLabel marks the goroutines a test server starts (child goroutines
// inherit their parent's profiler labels), so they can be told from the
// clients' in the same process.
const serverLabel = "longpoll-test-server"

// TestParkedPollGoroutines: what stays running on the server per parked
// poll, the agent's report answered first on the same connection. With
// HTTP/2 that is the connection's serve loop, its frame reader and the
// handler, net/http's floor (docs/scaling.md, "What an HTTP/2 agent
// costs"); with HTTP/1.1 the poll is taken over and keeps one goroutine,
// the connection's own goroutine gone, and keeps none: the holder's one
// goroutine waits for every taken-over poll. Each goroutine is several KiB
// of stack per agent: one more per poll (a watcher, a timer of its own)
// shows here before it shows at 10,000 agents.
func TestParkedPollGoroutines(t *testing.T) {
	const polls = 10
	for _, tc := range []struct {
		name    string
		h2c     bool
		perPoll int
		shared  int // besides those per poll
	}{
		{"h2c", true, 3, 0},
		{"http1 taken over", false, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *server
			pprof.Do(context.Background(), pprof.Labels(serverLabel, "1"), func(context.Context) { s = newServer(t, tc.h2c) })
			t.Cleanup(s.stopPolls) // before s.Close: answers the polls
			base, _ := serverGoroutines(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var results []<-chan result
			for range polls {
				hc := client(tc.h2c)
				defer hc.CloseIdleConnections()
				if r := get(ctx, hc, s.URL+"/other"); r.err != nil {
					t.Fatal(r.err)
				}
				results = append(results, goGet(ctx, hc, s.URL+"/poll?wait=1h"))
			}
			for range polls {
				<-s.src.asked // each poll found nothing and parks
			}
			// Parking and a taken-over connection's own goroutine ending
			// happen just after: wait for the count to settle.
			var n, parked int
			for deadline := time.Now().Add(time.Minute); ; {
				total, p := serverGoroutines(t)
				n, parked = total-base, p+heldPolls.count()
				if parked == polls && n <= polls*tc.perPoll+tc.shared {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d server goroutines for %d parked polls of %d, want at most %d per poll and %d besides", n, parked, polls, tc.perPoll, tc.shared)
				}
				runtime.Gosched()
			}
			s.stopPolls()
			for _, r := range results {
				if got := <-r; got.err != nil || got.resp.StatusCode != http.StatusNoContent {
					t.Fatalf("poll after stop: %v %v", got.err, got.resp)
				}
			}
			for range polls {
				<-s.answered
			}
		})
	}
}

// serverGoroutines counts the goroutines labelled serverLabel, and of
// them those parked in Hold.
func serverGoroutines(t *testing.T) (total, parked int) {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	// debug=1: records of "N @ pcs", "# labels: {...}", "#\t0x... fn+0x..."
	// lines, separated by blank lines.
	for _, rec := range strings.Split(b.String(), "\n\n") {
		if !strings.Contains(rec, `"`+serverLabel+`":"1"`) {
			continue
		}
		count, _, _ := strings.Cut(rec, " @ ")
		count = count[strings.LastIndexByte(count, '\n')+1:]
		c, err := strconv.Atoi(count)
		if err != nil {
			t.Fatalf("goroutine profile record %q: %v", rec, err)
		}
		total += c
		if strings.Contains(rec, "longpoll.Hold+") {
			parked += c
		}
	}
	return total, parked
}

// count is how many taken-over polls a is holding.
func (a *holder) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.waiting) + len(a.woken)
}
