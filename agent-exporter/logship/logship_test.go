package logship

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParse(t *testing.T) {
	fallback := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name, line, level, msg string
		time                   time.Time
		fields                 map[string]string
	}{
		{"text report", "2024-03-20T11:08:39.568980+01:00 [warning] tag: AUTHZ, clientid: client1, msg: cannot_publish, peername: 127.0.0.1:47860",
			"warning", "cannot_publish", time.Date(2024, 3, 20, 10, 8, 39, 568980000, time.UTC),
			map[string]string{"tag": "AUTHZ", "clientid": "client1", "msg": "cannot_publish", "peername": "127.0.0.1:47860"}},
		{"comma inside a value", "2024-03-13T15:45:53.634909+02:00 [warning] msg: throttled, period: 1 minutes, 0 seconds, dropped: #{a => 4}",
			"warning", "throttled", time.Date(2024, 3, 13, 13, 45, 53, 634909000, time.UTC),
			map[string]string{"msg": "throttled", "period": "1 minutes, 0 seconds", "dropped": "#{a => 4}"}},
		{"free text", "2024-03-13T15:45:53.634909+00:00 [error] Supervisor crashed, restarting",
			"error", "Supervisor crashed, restarting", time.Date(2024, 3, 13, 15, 45, 53, 634909000, time.UTC), nil},
		{"epoch timestamp", "1715763862274127 [info] msg: terminate",
			"info", "terminate", time.UnixMicro(1715763862274127).UTC(), map[string]string{"msg": "terminate"}},
		{"json", `{"time":1715763862274127,"level":"warning","msg":"denied","clientid":"c1","line":123}`,
			"warning", "denied", time.UnixMicro(1715763862274127).UTC(), map[string]string{"clientid": "c1", "line": "123"}},
		{"json rfc3339", `{"time":"2024-03-20T11:08:39.568980+01:00","level":"error","msg":"x"}`,
			"error", "x", time.Date(2024, 3, 20, 10, 8, 39, 568980000, time.UTC), nil},
		{"garbage", "not a log line", "", "not a log line", fallback, nil},
		{"unknown level", "2024-03-20T11:08:39.568980+01:00 [loud] x", "", "2024-03-20T11:08:39.568980+01:00 [loud] x", fallback, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := Parse([]byte(tc.line), fallback)
			if e.Raw != tc.line || e.Level != tc.level || e.Message != tc.msg || !e.Time.Equal(tc.time) {
				t.Fatalf("Parse = %+v, want level %q msg %q time %s", e, tc.level, tc.msg, tc.time)
			}
			if fmt.Sprint(e.Fields) != fmt.Sprint(tc.fields) {
				t.Fatalf("fields = %v, want %v", e.Fields, tc.fields)
			}
		})
	}
}

// fakeECP stores batches, optionally failing, and deduplicates by id as
// ecp's window does.
type fakeECP struct {
	mu      sync.Mutex
	lines   map[string]int // raw line -> times stored
	ids     map[string]bool
	fail    int // fail the next n attempts
	loseAck bool
	calls   int
	dupIDs  int // batches received again after they were stored
}

func newFake() *fakeECP { return &fakeECP{lines: map[string]int{}, ids: map[string]bool{}} }

var errDown = errors.New("ecp down")

func (f *fakeECP) SendLogs(_ context.Context, body []byte) (agentproto.LogBatchResponse, error) {
	var b agentproto.LogBatch
	if err := json.Unmarshal(body, &b); err != nil {
		return agentproto.LogBatchResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail > 0 {
		f.fail--
		return agentproto.LogBatchResponse{}, errDown
	}
	if f.ids[b.BatchID] {
		f.dupIDs++
	} else {
		f.ids[b.BatchID] = true
		for _, l := range b.Lines {
			f.lines[l.Raw]++
		}
	}
	if f.loseAck {
		return agentproto.LogBatchResponse{}, errDown
	}
	return agentproto.LogBatchResponse{Accepted: len(b.Lines)}, nil
}

func (f *fakeECP) check(t *testing.T, want []string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range want {
		if f.lines[w] != 1 {
			t.Errorf("line %q stored %d times, want 1", w, f.lines[w])
		}
	}
	if len(f.lines) != len(want) {
		t.Errorf("stored %d distinct lines, want %d", len(f.lines), len(want))
	}
}

type env struct {
	t        *testing.T
	dir, st  string
	seq      int
	written  []string
	ecp      *fakeECP
	metrics  *Metrics
	reg      *prometheus.Registry
	maxLines int
	// partial is set while a file ends in an incomplete line (never
	// "caught up" in bytes).
	partial bool
}

func newEnv(t *testing.T) *env {
	reg := prometheus.NewRegistry()
	return &env{t: t, dir: t.TempDir(), st: t.TempDir(), ecp: newFake(), reg: reg, metrics: NewMetrics(reg), maxLines: 3}
}

// write appends n lines to name (truncating it first when trunc).
func (e *env) write(name string, n int, trunc bool) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if trunc {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(filepath.Join(e.dir, name), flags, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	for range n {
		e.seq++
		l := fmt.Sprintf("2024-03-20T11:08:39.%06d+00:00 [warning] msg: line_%d", e.seq, e.seq)
		e.written = append(e.written, l)
		if _, err := f.WriteString(l + "\n"); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) shipper() *Shipper {
	s, err := New(Options{Dir: e.dir, StateDir: e.st, Cluster: "c1", Sender: e.ecp, Logger: slog.New(slog.DiscardHandler),
		Metrics: e.metrics, MaxBatchLines: e.maxLines, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond,
		PollInterval: time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// drain runs the shipper until every line written so far is stored and
// nothing is behind, then stops it.
func (e *env) drain(s *Shipper) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !e.caughtUp() {
		if time.Now().After(deadline) {
			cancel()
			if err := <-done; err != nil {
				e.t.Error(err)
			}
			e.t.Fatalf("shipper did not catch up: %d of %d lines stored", e.stored(), len(e.written))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) stored() int {
	e.ecp.mu.Lock()
	defer e.ecp.mu.Unlock()
	return len(e.ecp.lines)
}

func (e *env) caughtUp() bool {
	return e.stored() >= len(e.written) && (e.partial || testutil.ToFloat64(e.metrics.behind) == 0)
}

func TestShipAcrossRotation(t *testing.T) {
	cases := []struct {
		name string
		run  func(e *env)
	}{
		{"wrap files in order, wrap-around overwrites .1", func(e *env) {
			s := e.shipper()
			e.write("emqx.log.1", 5, false)
			e.drain(s)
			e.write("emqx.log.2", 4, false)
			e.write("emqx.log.1", 2, true) // wrapped: .1 overwritten after .2
			e.drain(s)
		}},
		{"truncated in place and regrown", func(e *env) {
			s := e.shipper()
			e.write("emqx.log", 5, false)
			e.drain(s)
			e.write("emqx.log", 7, true)
			e.drain(s)
		}},
		{"renamed keeps its offset", func(e *env) {
			s := e.shipper()
			e.write("emqx.log", 5, false)
			e.drain(s)
			if err := os.Rename(filepath.Join(e.dir, "emqx.log"), filepath.Join(e.dir, "emqx.log.1")); err != nil {
				t.Fatal(err)
			}
			e.write("emqx.log.1", 2, false)
			e.write("emqx.log", 3, false)
			e.drain(s)
		}},
		{"restart between send and ack resends the same batches", func(e *env) {
			e.write("emqx.log.1", 20, false)
			e.ecp.loseAck = true
			s := e.shipper()
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error)
			go func() { done <- s.Run(ctx) }()
			for e.ecpCalls() < 8 {
				time.Sleep(time.Millisecond)
			}
			cancel() // "killed" with batches stored but never acknowledged
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			e.ecp.mu.Lock()
			e.ecp.loseAck = false
			e.ecp.mu.Unlock()
			e.write("emqx.log.1", 4, false)
			e.drain(e.shipper())
			if e.ecp.dupIDs == 0 {
				t.Error("after the restart no batch was sent again under its id")
			}
		}},
		{"failures are retried", func(e *env) {
			e.write("emqx.log.1", 5, false)
			e.ecp.fail = 3
			e.drain(e.shipper())
			if got := testutil.ToFloat64(e.metrics.retried); got != 3 {
				t.Errorf("retried = %v, want 3", got)
			}
		}},
		{"incomplete last line waits", func(e *env) {
			e.write("emqx.log.1", 2, false)
			f, _ := os.OpenFile(filepath.Join(e.dir, "emqx.log.1"), os.O_WRONLY|os.O_APPEND, 0)
			_, _ = f.WriteString("2024-03-20T11:08:40.000000+00:00 [info] msg: par")
			s := e.shipper()
			e.partial = true
			e.drain(s)
			e.partial = false
			_, _ = f.WriteString("tial\n")
			f.Close()
			e.written = append(e.written, "2024-03-20T11:08:40.000000+00:00 [info] msg: partial")
			e.drain(s)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			tc.run(e)
			e.ecp.check(t, e.written)
			if got := testutil.ToFloat64(e.metrics.behind); got != 0 {
				t.Errorf("bytes behind = %v, want 0", got)
			}
			st, err := os.Stat(filepath.Join(e.st, OffsetsFile))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("offsets file: %v, mode %v, want 0600", err, st.Mode())
			}
		})
	}
}

func (e *env) ecpCalls() int {
	e.ecp.mu.Lock()
	defer e.ecp.mu.Unlock()
	return e.ecp.calls
}

func TestRunStopsWithContext(t *testing.T) {
	e := newEnv(t)
	e.write("emqx.log.1", 10, false)
	s := e.shipper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	for testutil.ToFloat64(e.metrics.linesShipped) < 10 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.ecp.check(t, e.written)
}
