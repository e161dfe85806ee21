//go:build unix

package logstore

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// BenchmarkWriterVictoriaLogs measures lines per second written through the
// Writer into a real VictoriaLogs on this machine, one agent at a time and
// several at once (ecp serves many agents concurrently).
//
//	go test -run '^$' -bench WriterVictoriaLogs ./ecp/logstore/
func BenchmarkWriterVictoriaLogs(b *testing.B) {
	vl := startVictoriaLogs(b)
	const batchSize = 1000
	start := time.Now().Add(-10 * time.Minute)
	template := make([]agentproto.LogEntry, batchSize)
	for i := range template {
		t := start.Add(time.Duration(i) * time.Microsecond)
		msg := fmt.Sprintf("tag: AUTHZ, clientid: client-%d, msg: cannot_publish_to_topic_due_to_not_authorized, peername: 10.0.%d.%d:47860, username: user-%d, topic: devices/%d/up, reason: not_authorized", i, i%256, i%200, i%97, i)
		template[i] = agentproto.LogEntry{
			Time: t, Level: "warning", Node: "emqx@10.0.0.1", Message: msg,
			Fields: map[string]string{"tag": "AUTHZ", "clientid": fmt.Sprintf("client-%d", i)},
			Raw:    t.Format("2006-01-02T15:04:05.000000-07:00") + " [warning] " + msg,
			File:   "emqx.log.1", Offset: int64(i) * 220,
		}
	}
	for _, agents := range []int{1, 4} {
		b.Run(fmt.Sprintf("agents=%d/batch=%d", agents, batchSize), func(b *testing.B) {
			w, err := NewWriter(quietWriterOptions())
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Configure(vl.cfg()); err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			var seq atomic.Int64
			cpu0 := processCPU(b)
			b.ResetTimer()
			runConcurrently(b, agents, func() {
				n := seq.Add(1)
				lines := make([]agentproto.LogEntry, batchSize)
				copy(lines, template)
				for i := range lines {
					lines[i].Offset += n * batchSize * 220 // distinct lines, distinct ids
				}
				if _, err := w.Write(b.Context(), Batch{Project: "bench", Cluster: fmt.Sprintf("c%d", n%int64(agents)),
					BatchID: fmt.Sprint(n), Lines: lines}); err != nil {
					b.Error(err)
				}
			})
			b.StopTimer()
			// VictoriaLogs runs in its own process: this is the Writer's
			// (ecp's) own CPU cost, which the machine shares with the store.
			cpu := processCPU(b) - cpu0
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "lines/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*batchSize), "ecp-cpu-µs/line")
		})
	}
}

// processCPU is the user+system CPU time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runConcurrently runs b.N calls of f on n goroutines.
func runConcurrently(b *testing.B, n int, f func()) {
	var next atomic.Int64
	done := make(chan struct{})
	for range n {
		go func() {
			defer func() { done <- struct{}{} }()
			for next.Add(1) <= int64(b.N) {
				f()
			}
		}()
	}
	for range n {
		<-done
	}
}
