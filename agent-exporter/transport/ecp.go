package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// HTTP1Retry is how long the agent keeps to HTTP/1.1 after finding an ecp
// that speaks only HTTP/1.1 (an older replica during a rolling upgrade, a
// proxy in front of ecp) before it tries HTTP/2 again.
const HTTP1Retry = 10 * time.Minute

// h2 health checks: a connection that carries everything must not sit dead
// behind a NAT that dropped it; a ping after SendPingTimeout of silence
// finds out (the long-poll usually answers every 30 s anyway).
const (
	h2SendPingTimeout = 45 * time.Second
	h2PingTimeout     = 15 * time.Second
)

// h2 buffers: ecp's answers are small JSON, so the connection's framer
// needs no more than HTTP/2's smallest frame (Go's default of 1 MiB keeps a
// read buffer as large as the largest frame received), and the windows
// need not let ecp (or whatever answers in its place) have the agent
// buffer Go's default 1 GiB per connection and 4 MiB per call.
const (
	h2MaxFrame = 16 << 10
	h2Recv     = 256 << 10
)

// errHTTP1Only marks a connection refused because ecp answered in HTTP/1.
var errHTTP1Only = errors.New("ecp speaks only HTTP/1.1")

// ECP is the agent's one transport towards ecp: report, desired-state
// long-poll, remote write and log batches all go through it, on one TCP
// connection, so ecp holds one descriptor per agent. It works in one of
// two modes (Options.HTTP2).
//
// HTTP/1.1 (the default): one kept-alive connection (MaxConnsPerHost 1),
// on which calls take turns; a call made while another holds the
// connection waits for it. The caller keeps the long-poll's hold shorter
// than the time to its next call (the daemon bounds each poll by its next
// tick) and must never cancel a poll to make room: in Go cancelling an
// HTTP/1.1 request closes its connection. ecp takes the held poll over
// (package ecp/longpoll), which costs it a socket and no goroutine per
// agent, less than a fifth of an HTTP/2 agent (docs/scaling.md).
//
// HTTP/2: HTTP/2 over TLS (ALPN) for https:// and with prior knowledge
// (h2c) for http://, one connection dialled at a time, so requests started
// together do not each open their own, and calls run beside a held poll.
// An ecp that speaks only HTTP/1.1 answers the h2c preface in HTTP/1 or
// does not offer h2 in the TLS handshake (ALPN): nothing of the request
// reached a handler, so ECP sends it again over HTTP/1.1 and keeps to
// HTTP/1.1 for HTTP1Retry (the held long-poll then needs a connection of
// its own, two per agent) before trying HTTP/2 again. Any other failure
// (refused, reset, timed out) is the caller's to retry, as before.
type ECP struct {
	h2, h1  *http.Transport // h2 nil in HTTP/1.1 mode
	oneConn bool            // HTTP/1.1 mode
	now     func() time.Time

	mu      sync.Mutex
	h1Until time.Time
}

// NewECP returns the transport; wrap it with Client.
func NewECP(opts Options) *ECP {
	e := &ECP{now: time.Now, oneConn: !opts.HTTP2}
	tlsConf := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: opts.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}

	e.h1 = http.DefaultTransport.(*http.Transport).Clone()
	e.h1.TLSClientConfig = tlsConf.Clone() // net/http sets each transport's ALPN list in it
	e.h1.MaxIdleConnsPerHost = 4
	e.h1.Protocols = new(http.Protocols)
	e.h1.Protocols.SetHTTP1(true)
	if e.oneConn {
		// Calls queue for the one connection instead of dialling more.
		e.h1.MaxConnsPerHost, e.h1.MaxIdleConnsPerHost = 1, 1
		return e
	}

	e.h2 = http.DefaultTransport.(*http.Transport).Clone()
	e.h2.TLSClientConfig = tlsConf
	e.h2.Protocols = new(http.Protocols)
	e.h2.Protocols.SetHTTP2(true)
	e.h2.Protocols.SetUnencryptedHTTP2(true)
	// For HTTP/2 this bounds dials, not streams: requests that start
	// before the connection is up wait for it instead of dialing more.
	e.h2.MaxConnsPerHost = 1
	e.h2.HTTP2 = &http.HTTP2Config{
		SendPingTimeout: h2SendPingTimeout, PingTimeout: h2PingTimeout,
		MaxReadFrameSize: h2MaxFrame, MaxReceiveBufferPerConnection: h2Recv, MaxReceiveBufferPerStream: h2Recv,
	}
	e.h2.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newSniffConn(c, e), nil
	}
	return e
}

// Client is an http.Client on e with timeout: the agent's calls differ in
// how long they may take, not in the connection they use.
func (e *ECP) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: e, Timeout: timeout}
}

// OneConn says whether calls take turns on one HTTP/1.1 connection, so
// that a held long-poll delays every other call until it is answered.
func (e *ECP) OneConn() bool { return e.oneConn }

// RoundTrip sends req over HTTP/2, or HTTP/1.1 in HTTP/1.1 mode or while
// ecp speaks only that.
func (e *ECP) RoundTrip(req *http.Request) (*http.Response, error) {
	if e.oneConn || e.http1() {
		return e.h1.RoundTrip(req)
	}
	resp, err := e.h2.RoundTrip(req)
	if err != nil && refusedH2(err) {
		e.fallBack()
	}
	if err == nil || !e.http1() {
		return resp, err
	}
	// ecp refused HTTP/2 before reading the request: send it again.
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, err
		}
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return e.h1.RoundTrip(retry)
}

// CloseIdleConnections closes both transports' idle connections.
func (e *ECP) CloseIdleConnections() {
	if e.h2 != nil {
		e.h2.CloseIdleConnections()
	}
	e.h1.CloseIdleConnections()
}

func (e *ECP) http1() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now().Before(e.h1Until)
}

func (e *ECP) fallBack() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.h1Until = e.now().Add(HTTP1Retry)
}

// refusedH2 says whether err is a TLS server refusing HTTP/2: it offers
// ALPN without h2 (Go's "no application protocol" alert) or no ALPN at all.
// crypto/tls keeps the received alert's type unexported, hence the text.
func refusedH2(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" && strings.Contains(opErr.Err.Error(), "no application protocol") {
		return true
	}
	return strings.Contains(err.Error(), "unexpected ALPN protocol")
}

// sniffConn watches the first bytes an h2c connection receives: an HTTP/2
// server starts with a SETTINGS frame, an HTTP/1 one answers the preface
// with a status line ("HTTP/1.1 505 ..." from Go, "400" from a proxy).
//
// An HTTP/1 server closes the connection after its answer, so the client's
// next write (the request's frames) can fail before its read loop has seen
// that answer. A failed write therefore waits for the first read's verdict
// (bounded by sniffWait, for a peer that never sends anything), so that
// RoundTrip learns of the HTTP/1 server whichever side notices first.
type sniffConn struct {
	net.Conn
	e       *ECP
	checked bool          // owned by the reading goroutine
	sniffed chan struct{} // closed once the first read has returned
	http1   bool          // set before sniffed closes
}

// sniffWait bounds how long a failed write waits for the first read: after
// a reset that read returns at once, so this only matters for a peer that
// neither sends nor resets.
const sniffWait = 2 * time.Second

func newSniffConn(c net.Conn, e *ECP) *sniffConn {
	return &sniffConn{Conn: c, e: e, sniffed: make(chan struct{})}
}

func (c *sniffConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if !c.checked && (n > 0 || err != nil) {
		c.checked = true
		c.http1 = bytes.HasPrefix(b[:n], []byte("HTTP/"))
		if c.http1 {
			c.e.fallBack()
		}
		close(c.sniffed)
		if c.http1 {
			return 0, errHTTP1Only
		}
	}
	return n, err
}

func (c *sniffConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && c.answeredHTTP1() {
		return n, errHTTP1Only
	}
	return n, err
}

// answeredHTTP1 waits up to sniffWait for the first read and says whether
// it was an HTTP/1 answer.
func (c *sniffConn) answeredHTTP1() bool {
	t := time.NewTimer(sniffWait)
	defer t.Stop()
	select {
	case <-c.sniffed:
		return c.http1
	case <-t.C:
		return false
	}
}
