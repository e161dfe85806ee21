// Package longpoll holds HTTP long-polls cheaply: a request that waits for
// something to change is answered with a JSON reply as soon as it changes,
// or 204 No Content when its deadline passes (or the server stops).
//
// # Why it exists
//
// ecp holds one desired-state poll per agent, so what one held poll costs is
// what ecp's memory grows by per agent. On HTTP/1.1, net/http keeps for a
// request in a handler the connection's goroutine with the stack the router
// left it, a second goroutine reading ahead, two bufio buffers and the
// request: about 40 KiB. So an HTTP/1.1 poll that must wait is taken over
// (http.Hijacker): Hold keeps only the socket and the poll's place in
// the one holder that waits for every taken-over poll (holder.go), answers
// on the socket itself what net/http would have written, then hands the
// connection back to the http.Server for the client's next request.
//
// # HTTP/2
//
// An HTTP/2 stream cannot be taken over: the connection carries the
// client's other streams. There a poll parks in its handler. The agent
// holds one HTTP/2 connection for its report, long-poll, remote write and
// logs, so parking costs a handler goroutine and a stream per agent but
// saves the second connection (descriptor, goroutine, buffers) an HTTP/1.1
// agent keeps beside its held poll. BenchmarkHeldPollMemory measured, at
// 2,000 agents each holding a poll with one report answered (the server's
// heap and stacks in use and resident set per agent, Go 1.26, linux/amd64):
//
//	HTTP/1.1, poll taken over + the report's kept-alive connection   24.4 KB heap+stack, 25.6 KB RSS, 2 descriptors
//	HTTP/1.1, poll left in its handler + the report's connection     45.0 KB heap+stack, 41.0 KB RSS, 2 descriptors
//	HTTP/2 (h2c), poll parked in its handler, one connection         41.9 KB heap+stack, 35.9 KB RSS, 1 descriptor
//	HTTP/2 over TLS, the same                                         49.0 KB heap+stack, 48.2 KB RSS, 1 descriptor
//	HTTP/1.1, poll taken over, the report before it on its connection  2.3 KB heap+stack,  3.6 KB RSS, 1 descriptor
//
// (16.4 KB of the HTTP/2 agent's 41.9 KB are the stacks of its three
// goroutines: the connection's serve loop and frame reader and the parked
// handler; docs/scaling.md has the whole breakdown.)
//
// (The taken-over rows are from after the holder, holder.go, which took a
// goroutine per poll away: 6.4 KB and 7.6 KB before it; the other rows are
// as measured before.)
//
// So one HTTP/1.1 connection whose poll is taken over, with the agent's
// other calls sent on it between polls, costs a tenth of an HTTP/2 agent's
// connection and the same one descriptor. That is how agent-exporter talks
// to ecp by default: it asks each poll to be held (?timeout=) only until
// just before its next report, and sends its report, remote write and log
// batches on the connection before polling again; with --ecp.http2 it
// holds one HTTP/2 connection instead, and agents before either, or behind
// a proxy, hold two HTTP/1.1 connections.
//
// # Crowding
//
// A held poll holds its connection. When the server holds so many that it
// would soon refuse new ones (package connlimit), holding them would serve
// the agents that came first and leave the rest refused. A server says so
// through its requests' context (WithCrowded, from http.Server's
// BaseContext); Hold then holds nothing: it answers at once (the reply if
// there is one, else 204), closes the connection after the answer (on
// HTTP/2, a GOAWAY), and sets agentproto.HeaderHold so that the agent
// sends no request to hold before its next scheduled send. Every held
// request ecp serves goes through Hold, so the rule holds for all of them.
//
// # API
//
// Hold is the whole API: the caller bounds how many polls it holds (and
// answers 429 beyond), gives a Check that says whether the reply is ready
// and otherwise which channel closes when it may be, and learns through
// Answered when the poll is answered, to release its slot and, for a poll
// taken over, record its latency (httpapi.Handle does not see its end).
package longpoll

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// writeTimeout bounds writing a taken-over poll's answer when the server
// sets no WriteTimeout.
const writeTimeout = 10 * time.Second

// Poll is one long-poll to hold.
type Poll struct {
	// Deadline is when the poll is answered 204 if no reply came first.
	Deadline time.Time
	// Stop, when done, answers the poll 204 at once (a server shutting
	// down sends its clients elsewhere rather than holding them). Nil
	// never stops.
	Stop context.Context
	// Final, when set, is the reply (200) at the deadline or on Stop
	// instead of 204: for a call that always gets a body, such as a held
	// agent report.
	Final func() any
	// Check returns the reply (encoded as JSON with status 200) once there
	// is one; until then nil and a context done when it is worth asking
	// again (nil: never). A context, not a channel, because a taken-over
	// poll waits for it with context.AfterFunc, which needs no goroutine
	// (holder.go). It is called from the handler or the holder, never from
	// two at once.
	Check func() (reply any, changed context.Context)
	// Answered is called once, when the poll is answered and before the
	// client can read the answer, with the status (0 when the client left
	// first) and whether the connection was taken over.
	Answered func(status int, tookOver bool)
}

// crowdedKey carries a server's crowding test in its requests' context.
type crowdedKey struct{}

// WithCrowded returns ctx carrying crowded, which says whether the server
// holds so many connections that it should hold no poll. A server gives it
// to its requests with http.Server.BaseContext.
func WithCrowded(ctx context.Context, crowded func() bool) context.Context {
	return context.WithValue(ctx, crowdedKey{}, crowded)
}

// crowded asks the test r's server gave (WithCrowded); false without one.
func crowded(r *http.Request) bool {
	f, ok := r.Context().Value(crowdedKey{}).(func() bool)
	return ok && f()
}

// Hold answers r per p. On HTTP/1.1, a poll that must wait is taken over
// and Hold returns at once; otherwise it waits in the handler. On a
// crowded server it does not wait (WithCrowded).
func Hold(w http.ResponseWriter, r *http.Request, p Poll) error {
	atOnce := crowded(r)
	if atOnce {
		w.Header().Set(agentproto.HeaderHold, agentproto.HoldNextSend)
		w.Header().Set("Connection", "close")
	}
	reply, changed := p.Check()
	if reply != nil {
		p.Answered(http.StatusOK, false)
		return httpapi.JSON(w, http.StatusOK, reply)
	}
	if atOnce {
		return p.final(w)
	}
	if h, ok := takeOver(w, r, p, changed); ok {
		heldPolls.add(h)
		return nil
	}
	timer := time.NewTimer(time.Until(p.Deadline))
	defer timer.Stop()
	for {
		select {
		case <-done(changed):
		case <-timer.C:
			return p.final(w)
		case <-done(p.Stop):
			return p.final(w)
		case <-r.Context().Done():
			p.Answered(0, false)
			return nil
		}
		if reply, changed = p.Check(); reply != nil {
			p.Answered(http.StatusOK, false)
			return httpapi.JSON(w, http.StatusOK, reply)
		}
	}
}

// final answers a poll whose deadline passed or whose server stops: 204,
// or Final's reply.
func (p Poll) final(w http.ResponseWriter) error {
	if p.Final == nil {
		p.Answered(http.StatusNoContent, false)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	p.Answered(http.StatusOK, false)
	return httpapi.JSON(w, http.StatusOK, p.Final())
}

// done is ctx's Done channel; for a nil ctx nil, which never closes.
func done(ctx context.Context) <-chan struct{} {
	if ctx == nil {
		return nil
	}
	return ctx.Done()
}

// held is a poll whose connection Hold took over: all it keeps of the
// request while the holder keeps it (holder.go).
type held struct {
	p    Poll
	conn net.Conn
	srv  *http.Server
	// head is the header set before the poll was taken over (by
	// middleware and the handler), rendered as the answer's header lines:
	// kept as a map it was some 450 bytes per held poll.
	head    []byte
	changed context.Context
	// index is the poll's place in the holder's deadline heap, -1 when
	// it is not there; woken says a context it watched was done. Both are
	// the holder's, under its lock.
	index int
	woken bool
	// answerFrom is the earliest the holder answers the poll at its
	// deadline (holder.go, maxEarly).
	answerFrom time.Time
	// unwatch ends the watch on changed (the holder watches p.Stop).
	unwatch func() bool
}

// takeOver hijacks the connection of a poll that must wait, when that can
// be done without losing anything: an HTTP/1.1 keep-alive request whose
// body (none, or a held report's) the handler read to its end, on a server
// it can hand the connection back to (bytes the server read past the
// request are replayed). Otherwise, as for HTTP/2, the poll waits in the
// handler.
func takeOver(w http.ResponseWriter, r *http.Request, p Poll, changed context.Context) (*held, bool) {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close || !bodyRead(r) {
		return nil, false
	}
	// Headers middleware set before the handler (the web configuration's
	// http_server_config.headers) belong on the answer too.
	head := renderHead(w.Header())
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, false
	}
	if hb, ok := conn.(*handedBackConn); ok {
		// Handed back by an earlier poll: wrap the connection once only.
		conn = hb.Conn
	}
	if rw.Reader.Buffered() > 0 {
		// The client sent more than this request; keep what was read.
		conn = &readAheadConn{Conn: conn, r: io.MultiReader(bytes.NewReader(peekAll(rw.Reader)), conn)}
	}
	return &held{p: p, conn: conn, srv: srv, head: head, changed: changed, index: -1}, true
}

// answerFields are the header fields an answer sets itself.
var answerFields = map[string]bool{"Content-Length": true, "Content-Type": true, "Date": true}

// renderHead renders h as header lines, but for answerFields.
func renderHead(h http.Header) []byte {
	b := getBuffer()
	defer putBuffer(b)
	_ = h.WriteSubset(b, answerFields)
	return bytes.Clone(b.Bytes())
}

// bodyRead says whether r's body was read to its end, so that what the
// server reads next on the connection is the client's next request.
func bodyRead(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	var b [1]byte
	n, err := r.Body.Read(b[:])
	return n == 0 && err == io.EOF
}

func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// respond answers a poll the holder let go (woken or due), or returns
// false when it must wait on: its Check found nothing yet, and h.changed
// is the new context to wait for.
func (h *held) respond(timedOut bool) bool {
	resp := getResponse()
	defer putResponse(resp)
	stopped := h.p.Stop != nil && h.p.Stop.Err() != nil
	if !timedOut && !stopped {
		reply, changed := h.p.Check()
		if reply == nil {
			h.changed = changed
			return false
		}
		// The one writer of JSON replies, as in the handler.
		_ = httpapi.JSON(resp, http.StatusOK, reply)
	}
	if resp.status == http.StatusNoContent && h.p.Final != nil {
		_ = httpapi.JSON(resp, http.StatusOK, h.p.Final())
	}
	h.p.Answered(resp.status, true)
	h.answer(resp)
	return true
}

// answerBuffers holds the buffers answers are written from, and responses
// the replies they render: one per answer would be garbage at every
// agent's every interval.
var (
	answerBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	responses     = sync.Pool{New: func() any { return &response{header: http.Header{}, body: new(bytes.Buffer)} }}
)

// answerBufferMax is the largest buffer kept for the next answer; a
// desired state is well under it.
const answerBufferMax = 64 << 10

func getBuffer() *bytes.Buffer { return answerBuffers.Get().(*bytes.Buffer) }

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= answerBufferMax {
		b.Reset()
		answerBuffers.Put(b)
	}
}

// getResponse returns an empty 204 to render a reply into.
func getResponse() *response {
	r := responses.Get().(*response)
	r.status = http.StatusNoContent
	return r
}

func putResponse(r *response) {
	if r.body.Cap() <= answerBufferMax {
		clear(r.header)
		r.body.Reset()
		responses.Put(r)
	}
}

// answer writes the reply net/http would have written for resp, then
// hands the connection back to the server. The holder's one goroutine
// answers every poll, so it must not wait on a client that reads slowly:
// it writes for at most inlineWrite, and a goroutine of the answer's own
// finishes what is left (and a TLS connection's whole answer, which a
// timed-out write would break).
func (h *held) answer(resp *response) {
	b := getBuffer()
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(resp.status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(resp.status))
	b.WriteString("\r\n")
	b.Write(h.head)
	resp.header.Set("Date", httpDate(time.Now()))
	if resp.status == http.StatusNoContent {
		resp.header.Del("Content-Type")
	} else {
		resp.header.Set("Content-Length", strconv.Itoa(resp.body.Len()))
	}
	_ = resp.header.Write(b)
	b.WriteString("\r\n")
	b.Write(resp.body.Bytes())
	if !plainTCP(h.conn) {
		go h.finish(b)
		return
	}
	_ = h.conn.SetWriteDeadline(time.Now().Add(inlineWrite))
	n, err := h.conn.Write(b.Bytes())
	if errors.Is(err, os.ErrDeadlineExceeded) {
		b.Next(n)
		go h.finish(b)
		return
	}
	putBuffer(b)
	h.handBack(err)
}

// inlineWrite bounds the holder's own write of an answer: an answer is
// a few hundred bytes, which an empty socket buffer takes at once.
const inlineWrite = 100 * time.Microsecond

// finish writes what is left of an answer, within the server's write
// timeout, and hands the connection back.
func (h *held) finish(rest *bytes.Buffer) {
	defer putBuffer(rest)
	d := writeTimeout
	if h.srv.WriteTimeout > 0 {
		d = h.srv.WriteTimeout
	}
	_ = h.conn.SetWriteDeadline(time.Now().Add(d))
	_, err := h.conn.Write(rest.Bytes())
	h.handBack(err)
}

// handBack gives the connection back to the server for the client's next
// request, or closes it when the answer could not be written.
func (h *held) handBack(writeErr error) {
	if writeErr != nil {
		_ = h.conn.Close()
		return
	}
	_ = h.conn.SetWriteDeadline(time.Time{})
	serveConn(h.srv, &handedBackConn{Conn: h.conn})
}

// plainTCP says whether c writes straight to a TCP socket, where a write
// cut short by its deadline can be finished later.
func plainTCP(c net.Conn) bool {
	if ra, ok := c.(*readAheadConn); ok {
		c = ra.Conn
	}
	_, ok := c.(*net.TCPConn)
	return ok
}

// lastDate is the Date header of the last answer written, for the next
// ones of the same second: formatting it (time.Time.Format) took a third
// of what answering a poll cost.
var lastDate atomic.Pointer[dateHeader]

type dateHeader struct {
	unix  int64
	value string
}

// httpDate is now as the Date header spells it.
func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.unix == sec {
		return d.value
	}
	d := &dateHeader{unix: sec, value: now.UTC().Format(http.TimeFormat)}
	lastDate.Store(d)
	return d.value
}

// response collects a reply written through httpapi for a taken-over poll.
type response struct {
	header http.Header
	status int
	body   *bytes.Buffer
}

func (r *response) Header() http.Header         { return r.header }
func (r *response) WriteHeader(status int)      { r.status = status }
func (r *response) Write(b []byte) (int, error) { return r.body.Write(b) }

// serveConn gives conn back to srv, which serves it as a newly accepted
// connection; a server that is shutting down closes it instead.
func serveConn(srv *http.Server, conn net.Conn) {
	l := &oneConnListener{conn: conn}
	_ = srv.Serve(l)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		_ = l.conn.Close()
	}
}

// oneConnListener accepts one connection, then reports itself closed so
// that Serve returns while the connection is served on.
type oneConnListener struct {
	mu   sync.Mutex
	conn net.Conn
	addr net.Addr
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return nil, net.ErrClosed
	}
	c := l.conn
	l.addr, l.conn = c.LocalAddr(), nil
	return c, nil
}

func (l *oneConnListener) Close() error { return nil }

func (l *oneConnListener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		return l.conn.LocalAddr()
	}
	return l.addr
}

// handedBackConn is a connection given back to the http.Server, which
// serves it on a new goroutine whose stack starts small (a few KiB, the
// runtime's average over mostly parked polls). An agent's next request is
// its report, whose handler and JSON decoding need tens of KiB: grown bit
// by bit, deep in the decoder, each doubling copies and adjusts every frame
// above it, which cost ecp 9 % of its CPU at 2,000 agents (one fresh
// goroutine per poll answered). So the stack is grown once, on the
// connection's first Read, while the goroutine is still shallow (net/http
// reads the next request before anything else), and the report then runs
// without growth.
type handedBackConn struct {
	net.Conn
	// grown is only read and written by the connection's reader, which
	// net/http runs on one goroutine at a time.
	grown bool
}

func (c *handedBackConn) Read(b []byte) (int, error) {
	if !c.grown {
		c.grown = true
		growStack(len(b))
	}
	return c.Conn.Read(b)
}

// growStackFrame is the frame growStack takes: with what is below it, the
// goroutine's stack grows at once to 16 KiB, enough for a report, and the
// largest size the runtime still takes from its per-P stack cache (32 KiB
// stacks come from the heap, under its lock).
const growStackFrame = 8 << 10

// growStack needs a frame of growStackFrame bytes, so calling it grows the
// caller's stack at once to hold that much more: one copy instead of one
// per doubling. (It returns a byte of the frame so that the compiler keeps
// the frame.) Each copy costs about the unwinding of the frames it moves,
// so growing the poll's own goroutine before it answers saved nothing: it
// grew once either way, from a frame or two below.
//
//go:noinline
func growStack(i int) byte {
	var frame [growStackFrame]byte
	frame[i%growStackFrame] = byte(i)
	return frame[(i/2)%growStackFrame]
}

// readAheadConn replays bytes the server had read past the request.
type readAheadConn struct {
	net.Conn
	r io.Reader
}

func (c *readAheadConn) Read(b []byte) (int, error) { return c.r.Read(b) }
