package fleet

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// handleDesired is the desired-state long-poll. It answers at once when the
// desired revision is newer than ?after=, else waits on the cluster's
// change channel (fed by the one shared watch) until it is, and answers 204
// when ?timeout= passes first. A deleted entry or a revoked credential is a
// change too: the reply then says unregister.
//
// A fleet holds a poll for every agent, so what one held poll costs is what
// ecp's memory grows by per agent. net/http keeps, per request in a handler,
// the connection's goroutine with the stack the router left it, a second
// goroutine reading ahead, two bufio buffers and the request: about 40 KiB.
// So a poll that must wait takes its connection over (http.Hijacker), keeps
// only the socket and one small goroutine, answers on the socket itself and
// then gives the connection back to the http.Server for its next request.
func (f *Fleet) handleDesired(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	p, err := f.authenticate(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var after int64
	if v := q.Get(agentproto.QueryAfter); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return httpapi.Invalid(agentproto.QueryAfter, "%s must be a revision: a non-negative integer", agentproto.QueryAfter)
		}
	}
	wait := DefaultDesiredWait
	if v := q.Get(agentproto.QueryTimeout); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			return httpapi.Invalid(agentproto.QueryTimeout, "%s must be a Go duration such as 30s", agentproto.QueryTimeout)
		}
		wait = min(wait, agentproto.MaxDesiredWait)
	}
	select {
	case f.waiters <- struct{}{}:
	default:
		f.metrics.throttled.Inc()
		return rateLimited(f.opts.RetryAfter, "too many desired-state long-polls")
	}
	held := false
	defer func() {
		if !held {
			<-f.waiters
		}
	}()
	f.metrics.waiters.Inc()
	defer func() {
		if !held {
			f.metrics.waiters.Dec()
		}
	}()

	f.mu.Lock()
	e := f.entryLocked(p.clusterID)
	d := desiredLocked(e, p.credHash)
	changed := e.changed
	if d.Revision <= after {
		f.announceLocked()
	}
	f.mu.Unlock()
	if d.Revision > after {
		return httpapi.JSON(w, http.StatusOK, d)
	}
	deadline := start.Add(wait)
	if hp, ok := f.takeOver(w, r, p, after, deadline, changed, start); ok {
		held = true
		go hp.hold()
		return nil
	}

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-changed:
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-f.stopping:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-r.Context().Done():
			return nil
		}
		f.mu.Lock()
		e := f.entryLocked(p.clusterID)
		d := desiredLocked(e, p.credHash)
		changed = e.changed
		f.mu.Unlock()
		if d.Revision > after {
			return httpapi.JSON(w, http.StatusOK, d)
		}
	}
}

// heldPoll is a long-poll whose connection the fleet took over: all it
// keeps of the request.
type heldPoll struct {
	f        *Fleet
	conn     net.Conn
	srv      *http.Server
	p        principal
	after    int64
	deadline time.Time
	changed  <-chan struct{}
	start    time.Time
	route    string
}

// takeOver hijacks the connection of a poll that must wait, when that can
// be done without losing anything: an HTTP/1.1 keep-alive request with no
// body, on a server it can hand the connection back to (bytes the server
// read past the request are replayed). Otherwise, as for HTTP/2, the poll
// waits in the handler.
func (f *Fleet) takeOver(w http.ResponseWriter, r *http.Request, p principal, after int64, deadline time.Time, changed <-chan struct{}, start time.Time) (*heldPoll, bool) {
	srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
	if !ok || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close || r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return nil, false
	}
	route := httpapi.RouteTemplate(r)
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, false
	}
	if rw.Reader.Buffered() > 0 {
		// The client sent more than this request; keep what was read.
		conn = &readAheadConn{Conn: conn, r: io.MultiReader(bytes.NewReader(peekAll(rw.Reader)), conn)}
	}
	return &heldPoll{f: f, conn: conn, srv: srv, p: p, after: after, deadline: deadline, changed: changed, start: start, route: route}, true
}

func peekAll(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// hold waits as handleDesired would, answers on the socket and hands the
// connection back for the agent's next request.
func (h *heldPoll) hold() {
	f := h.f
	timer := time.NewTimer(time.Until(h.deadline))
	defer timer.Stop()
	status := http.StatusNoContent
	var body []byte
wait:
	for {
		select {
		case <-h.changed:
		case <-timer.C:
			break wait
		case <-f.stopping:
			break wait
		}
		f.mu.Lock()
		e := f.entryLocked(h.p.clusterID)
		d := desiredLocked(e, h.p.credHash)
		h.changed = e.changed
		f.mu.Unlock()
		if d.Revision > h.after {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false) // as httpapi.JSON
			if err := enc.Encode(d); err != nil {
				f.logger.Error("encode desired state", "err", err)
				status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"Internal","message":"internal error; the server log has the details"}}`+"\n")
			} else {
				status, body = http.StatusOK, b.Bytes()
			}
			break
		}
	}
	// Counted as answered before the agent can see the answer.
	f.adapter.Observe(h.route, http.MethodGet, status, time.Since(h.start))
	f.metrics.waiters.Dec()
	<-f.waiters
	if err := h.answer(status, body); err != nil {
		_ = h.conn.Close()
		return
	}
	serveConn(h.srv, h.conn)
}

// answer writes the reply net/http would have written.
func (h *heldPoll) answer(status int, body []byte) error {
	buf := make([]byte, 0, 192+len(body))
	buf = append(buf, "HTTP/1.1 "...)
	buf = strconv.AppendInt(buf, int64(status), 10)
	buf = append(buf, ' ')
	buf = append(buf, http.StatusText(status)...)
	buf = append(buf, "\r\nDate: "...)
	buf = time.Now().UTC().AppendFormat(buf, http.TimeFormat)
	if status != http.StatusNoContent {
		buf = append(buf, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		buf = strconv.AppendInt(buf, int64(len(body)), 10)
	}
	buf = append(buf, "\r\n\r\n"...)
	buf = append(buf, body...)
	if h.srv.WriteTimeout > 0 {
		_ = h.conn.SetWriteDeadline(time.Now().Add(h.srv.WriteTimeout))
	} else {
		_ = h.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	_, err := h.conn.Write(buf)
	_ = h.conn.SetWriteDeadline(time.Time{})
	return err
}

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

// readAheadConn replays bytes the server had read past the request.
type readAheadConn struct {
	net.Conn
	r io.Reader
}

func (c *readAheadConn) Read(b []byte) (int, error) { return c.r.Read(b) }
