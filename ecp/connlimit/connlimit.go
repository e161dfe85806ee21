// Package connlimit bounds the connections ecp's HTTP listener holds open,
// so that ecp refuses connections, and says why, well before the process
// runs out of file descriptors. Out of descriptors, accept fails with
// EMFILE, and so does everything else that opens a file: the embedded
// etcd's WAL purge then ends the process (10,000 agents each holding a
// report connection beside their long-poll reached a 20,000-descriptor
// limit that way).
//
// The limit leaves headroom below the process's open-file limit for
// etcd's files and connections, the log and rule files, and ecp's own
// outgoing connections (Prometheus, Alertmanager, the log store, remote
// write). A connection beyond it is answered 503 with Retry-After and
// closed (on a TLS listener, where no plain answer can be read, and to an
// HTTP/2 client without TLS, which would take an HTTP/1 answer for a
// server without HTTP/2, it is only closed); agents back off with jitter
// and retry. An HTTP/2 connection carries an agent's every call as
// streams, so the limit counts agents, not requests. Refusals are counted
// in ecp_http_connections_refused_total, logged at most every LogEvery,
// and reported by Listener.Short for /-/ready.
//
// # Crowding
//
// Refusing is not enough when every client holds its connection all the
// time, as agents do (their long-poll is held until just before their next
// report): the connections held stay held and the clients refused are
// never served. So, well before the limit, the listener says it is
// crowded (Crowded): from HighWater of Max open connections until the
// count falls to LowWater (hysteresis, so that polls are not held and
// released by turns around one mark). While crowded ecp holds no request
// open (package longpoll answers it at once and closes the connection, and
// tells the agent to hold none before its next report), so agents take a
// connection only for a moment per interval and take turns with the rest.
// ecp_http_connections_crowded says when.
package connlimit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// crowdedLogEvery is the least time between two log lines saying ecp
// turned crowded.
const crowdedLogEvery = time.Minute

// LogEvery is the least time between two log lines about refusals, and how
// long after the last refusal Short still reports one.
const LogEvery = 10 * time.Second

// RetryAfterSeconds is the Retry-After of a refused connection's 503.
const RetryAfterSeconds = 5

// maxAnswering bounds the refused connections being answered at once; an
// answer holds a descriptor for up to answerTimeout plus drainTimeout.
// Beyond it a refused connection is closed without an answer (the client
// sees a reset and backs off all the same).
const maxAnswering = 32

// HighWater and LowWater, in tenths of Options.Max, are the open
// connections at which the listener starts and stops being crowded.
const (
	HighWater = 9
	LowWater  = 8
)

// answerTimeout bounds reading the request head and writing the 503;
// drainTimeout bounds reading what the client sends after it (not a silent socket).
const (
	answerTimeout = time.Second
	drainTimeout  = 200 * time.Millisecond
)

// Headroom is how many of nofile descriptors the limit leaves for
// everything but incoming connections: a fifth, and at least 256 (or half
// of a very small limit).
func Headroom(nofile uint64) uint64 {
	return max(nofile/5, min(256, nofile/2))
}

// Options configure a Listener.
type Options struct {
	// Max is the most connections held open; 0 means no limit.
	Max int
	// Plain says the listener serves HTTP without TLS, so a refused
	// connection can be answered 503.
	Plain bool
	// Source says where Max came from, for the log and /-/ready
	// ("--web.max-connections", "open-file limit 20000").
	Source string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Listener is a net.Listener holding at most Options.Max connections.
type Listener struct {
	net.Listener
	opts   Options
	logger *slog.Logger
	answer []byte

	open      atomic.Int64
	answering chan struct{}
	// high and low are the marks of Crowded; crowded says which side of
	// them the open count was last seen on.
	high, low int64
	crowded   atomic.Bool

	refused   prometheus.Counter
	openGauge prometheus.GaugeFunc

	mu           sync.Mutex
	lastRefusal  time.Time
	lastLog      time.Time
	refusedSince int
	lastCrowded  time.Time
}

// Wrap bounds ln's open connections; its metrics go on reg.
func Wrap(ln net.Listener, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Listener, error) {
	if opts.Max < 0 {
		return nil, fmt.Errorf("connection limit %d must not be negative", opts.Max)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	l := &Listener{Listener: ln, opts: opts, logger: logger, answering: make(chan struct{}, maxAnswering),
		high: int64(opts.Max) * HighWater / 10, low: int64(opts.Max) * LowWater / 10}
	body, err := json.Marshal(agentproto.ErrorBody{Error: agentproto.ErrorDetail{Code: httpapi.CodeUnavailable,
		Message: fmt.Sprintf("ecp holds its most connections (%d, %s); retry after the Retry-After delay", opts.Max, opts.Source)}})
	if err != nil {
		return nil, fmt.Errorf("encode the refusal: %w", err)
	}
	body = append(body, '\n')
	l.answer = fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		RetryAfterSeconds, len(body), body)
	l.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecp_http_connections_refused_total", Help: "Connections refused because ecp held its most connections (--web.max-connections).",
	})
	l.openGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ecp_http_connections_open", Help: "Connections ecp's HTTP listener holds open.",
	}, func() float64 { return float64(l.open.Load()) })
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ecp_http_connections_limit", Help: "Most connections ecp's HTTP listener holds open (0: no limit).",
	})
	limit.Set(float64(opts.Max))
	crowded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ecp_http_connections_crowded", Help: "1 while ecp holds so many connections that it holds no long-poll open (from nine tenths of ecp_http_connections_limit until eight tenths).",
	}, func() float64 {
		if l.crowded.Load() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{l.refused, l.openGauge, limit, crowded} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register connection limit metrics: %w", err)
		}
	}
	return l, nil
}

// Accept returns the next connection within the limit; connections beyond
// it are refused, never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.opts.Max == 0 || l.open.Add(1) <= int64(l.opts.Max) {
			if l.opts.Max == 0 {
				l.open.Add(1)
			}
			return &conn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refuse(c)
	}
}

// refuse answers c 503 (when the listener is plain HTTP and few answers
// are under way) and closes it.
func (l *Listener) refuse(c net.Conn) {
	l.refused.Inc()
	now := l.opts.Now()
	l.mu.Lock()
	l.lastRefusal = now
	l.refusedSince++
	if now.Sub(l.lastLog) >= LogEvery {
		l.logger.Warn("refusing connections: ecp holds its most connections; raise the open-file limit (ulimit -n) or --web.max-connections, or add a replica",
			"limit", l.opts.Max, "limitFrom", l.opts.Source, "open", l.open.Load(), "refused", l.refusedSince)
		l.lastLog, l.refusedSince = now, 0
	}
	l.mu.Unlock()
	if !l.opts.Plain {
		_ = c.Close()
		return
	}
	select {
	case l.answering <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.answering }()
		l.answer503(c)
	}()
}

// answer503 reads the request's head, writes the 503, then reads what the
// client sent until it closes or drainTimeout passes. An answer written
// before the request arrives is one the client may take for an unsolicited
// response and drop (Go's transport does); closing with the request unread
// would reset the connection and lose the answer.
func (l *Listener) answer503(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(answerTimeout))
	head, ok := readHead(c)
	if !ok || bytes.HasPrefix(head, h2cPreface) {
		// An HTTP/2 client (the agent, h2c) would read an HTTP/1 answer
		// as a server that speaks only HTTP/1.1; closed, it backs off.
		return
	}
	if _, err := c.Write(l.answer); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(drainTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
}

// h2cPreface starts an HTTP/2 connection without TLS; it holds a blank
// line, so readHead takes it for a request head.
var h2cPreface = []byte("PRI * HTTP/2.0\r\n\r\n")

// readHead reads until the end of an HTTP request head (a blank line), at
// most 16 KiB; false when the client closed or went quiet first.
func readHead(c net.Conn) ([]byte, bool) {
	buf := make([]byte, 0, 1024)
	chunk := make([]byte, 1024)
	for len(buf) < 16<<10 {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if bytes.Contains(buf, []byte("\r\n\r\n")) {
			return buf, true
		}
		if err != nil {
			return buf, false
		}
	}
	return buf, true
}

// Short says what ecp is short of while it refuses connections ("" when it
// refused none within LogEvery).
func (l *Listener) Short() string {
	l.mu.Lock()
	last := l.lastRefusal
	l.mu.Unlock()
	if last.IsZero() || l.opts.Now().Sub(last) >= LogEvery {
		return ""
	}
	return fmt.Sprintf("ecp holds its most connections (%d of %d, %s) and refuses new ones; raise the open-file limit (ulimit -n) or --web.max-connections, or add a replica",
		l.open.Load(), l.opts.Max, l.opts.Source)
}

// Crowded says whether ecp holds so many connections that it should hold
// no request open: true from HighWater tenths of Max open connections
// until the count falls to LowWater tenths; never without a limit. It is
// asked for each request that could be held, which is when it looks.
func (l *Listener) Crowded() bool {
	if l.opts.Max == 0 {
		return false
	}
	n := l.open.Load()
	switch {
	case n >= l.high:
		if l.crowded.CompareAndSwap(false, true) {
			l.logCrowded(n)
		}
		return true
	case n <= l.low:
		l.crowded.Store(false)
		return false
	}
	return l.crowded.Load()
}

// logCrowded says, at most every crowdedLogEvery (a fleet past the mark
// goes in and out of crowding about once per report interval), that ecp
// turned crowded with n connections open.
func (l *Listener) logCrowded(n int64) {
	now := l.opts.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lastCrowded.IsZero() && now.Sub(l.lastCrowded) < crowdedLogEvery {
		return
	}
	l.lastCrowded = now
	l.logger.Warn("crowded: ecp holds no long-poll open until it holds fewer connections, so agents take turns on connections; raise the open-file limit (ulimit -n) or --web.max-connections, or add a replica",
		"open", n, "limit", l.opts.Max, "limitFrom", l.opts.Source, "holdAgainAt", l.low)
}

// conn gives its place back when closed.
type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
