package longpoll

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecpio/ecp/internal/testbed"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(costClientEnv); spec != "" {
		os.Exit(costClient(spec))
	}
	goleak.VerifyTestMain(m)
}

// source is what polls wait for: set makes the reply ready and wakes them.
type source struct {
	mu      sync.Mutex
	reply   any
	changed context.Context
	fire    context.CancelFunc
	// asked receives once per check that found nothing (the poll waits).
	asked chan struct{}
}

func newSource() *source {
	s := &source{asked: make(chan struct{}, 16)}
	s.changed, s.fire = context.WithCancel(context.Background())
	return s
}

func (s *source) check() (any, context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reply != nil {
		return s.reply, nil
	}
	s.asked <- struct{}{}
	return nil, s.changed
}

func (s *source) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = nil
}

func (s *source) set(v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = v
	s.fire()
	s.changed, s.fire = context.WithCancel(context.Background())
}

// answer is one Answered call.
type answer struct {
	status   int
	tookOver bool
}

// server serves Hold on /poll (?wait= its deadline) and a plain 200 on
// /other, with a header set before the handler as middleware does.
type server struct {
	*httptest.Server
	src *source
	// stop ends every poll (stopPolls), as a server shutting down does.
	stop      context.Context
	stopPolls context.CancelFunc
	answered  chan answer
	conns     atomic.Int64
}

// newServer starts the server; setup, if any, changes it before it starts.
func newServer(t *testing.T, h2c bool, setup ...func(*httptest.Server)) *server {
	t.Helper()
	s := &server{src: newSource(), answered: make(chan answer, 16)}
	s.stop, s.stopPolls = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/poll", func(w http.ResponseWriter, r *http.Request) {
		wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = Hold(w, r, Poll{Deadline: time.Now().Add(wait), Stop: s.stop, Check: s.src.check,
			Answered: func(status int, tookOver bool) { s.answered <- answer{status, tookOver} }})
	})
	mux.HandleFunc("/other", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "other\n") })
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Frame-Options", "deny")
		mux.ServeHTTP(w, r)
	}))
	// Counted where they are accepted: a connection handed back after a
	// take-over is new to ConnState, not to the listener.
	s.Listener = &testbed.CountingListener{Listener: s.Listener, N: &s.conns}
	if h2c {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetHTTP1(true)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	for _, f := range setup {
		f(s.Server)
	}
	s.Start()
	t.Cleanup(func() {
		waitHandedBack(t)
		s.Close()
	})
	return s
}

// waitHandedBack waits (bounded) until no taken-over poll is left: none
// held, answering or handing its connection back to a server (serveConn). httptest.Server counts each
// connection it is handed in a WaitGroup that Close waits on; a hand-back
// racing that Wait is a data race under -race (a poll answered by the
// test's last step, then Close at cleanup). ecp's own server refuses a
// hand-back once it shuts down, so only tests need this.
func waitHandedBack(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		n := runtime.Stack(buf, true)
		if !bytes.Contains(buf[:n], []byte("longpoll.(*holder).run(")) && !bytes.Contains(buf[:n], []byte("longpoll.(*held).finish(")) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Log("a taken-over poll was still handing its connection back after 10 s")
}

func client(h2c bool) *http.Client {
	t := &http.Transport{MaxIdleConnsPerHost: 1}
	if h2c {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
		// One dial at a time, as the agent's transport does: otherwise
		// net/http dials again for a request that starts while the first
		// HTTP/2 connection is still being set up, and the count below
		// measures that client race instead of the server.
		t.MaxConnsPerHost = 1
	}
	return &http.Client{Transport: t}
}

type result struct {
	resp   *http.Response
	body   string
	reused bool
	err    error
}

func get(ctx context.Context, hc *http.Client, url string) result {
	var reused bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return result{err: err}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{resp: resp, body: string(b), reused: reused, err: err}
}

func goGet(ctx context.Context, hc *http.Client, url string) <-chan result {
	done := make(chan result, 1)
	go func() { done <- get(ctx, hc, url) }()
	return done
}

type desired struct {
	Revision int64  `json:"revision"`
	Note     string `json:"note"`
}

func TestHold(t *testing.T) {
	for _, tc := range []struct {
		name     string
		h2c      bool
		tookOver bool
	}{
		{"http1 takes the connection over", false, true},
		{"h2c parks in the handler", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.h2c)
			hc := client(tc.h2c)
			defer hc.CloseIdleConnections()

			t.Run("change is answered as net/http would", func(t *testing.T) {
				done := goGet(t.Context(), hc, s.URL+"/poll?wait=1m")
				<-s.src.asked
				s.src.set(desired{Revision: 7, Note: "<a&b>"})
				r := <-done
				if r.err != nil {
					t.Fatal(r.err)
				}
				if a := <-s.answered; a != (answer{http.StatusOK, tc.tookOver}) {
					t.Fatalf("answered %+v, want 200 taken over %v", a, tc.tookOver)
				}
				want := `{"revision":7,"note":"<a&b>"}` + "\n"
				if r.resp.StatusCode != http.StatusOK || r.body != want || r.resp.Header.Get("Content-Type") != "application/json" ||
					r.resp.ContentLength != int64(len(want)) || r.resp.Header.Get("Date") == "" || r.resp.Header.Get("X-Frame-Options") != "deny" {
					t.Fatalf("got %d %v %q, want 200 %q with JSON type, length, date and the middleware's header", r.resp.StatusCode, r.resp.Header, r.body, want)
				}
				// Answered at once now, as a poll that finds its reply ready.
				r = get(t.Context(), hc, s.URL+"/poll?wait=1m")
				if r.err != nil || r.body != want || !r.reused {
					t.Fatalf("next poll: %v %q reused %v; want the reply on the same connection", r.err, r.body, r.reused)
				}
				if a := <-s.answered; a != (answer{http.StatusOK, false}) {
					t.Fatalf("answered %+v, want 200 in the handler", a)
				}
			})
			s.src.reset()
			t.Run("deadline answers an empty 204", func(t *testing.T) {
				r := get(t.Context(), hc, s.URL+"/poll?wait=20ms")
				if r.err != nil {
					t.Fatal(r.err)
				}
				if r.resp.StatusCode != http.StatusNoContent || r.body != "" || r.resp.ContentLength > 0 ||
					r.resp.Header.Get("Content-Type") != "" || r.resp.Header.Get("Date") == "" || !r.reused {
					t.Fatalf("got %d %v %q reused %v, want an empty 204 with a date on the kept connection", r.resp.StatusCode, r.resp.Header, r.body, r.reused)
				}
				if a := <-s.answered; a != (answer{http.StatusNoContent, tc.tookOver}) {
					t.Fatalf("answered %+v, want 204 taken over %v", a, tc.tookOver)
				}
			})
			t.Run("stop answers 204 at once", func(t *testing.T) {
				done := goGet(t.Context(), hc, s.URL+"/poll?wait=1m")
				<-s.src.asked
				s.stopPolls()
				if r := <-done; r.err != nil || r.resp.StatusCode != http.StatusNoContent {
					t.Fatalf("got %+v, want 204", r)
				}
				if a := <-s.answered; a.status != http.StatusNoContent {
					t.Fatalf("answered %+v, want 204", a)
				}
			})
			if got := s.conns.Load(); got != 1 {
				t.Errorf("%d connections accepted, want every poll on one", got)
			}
		})
	}
}

// TestHoldH2CMultiplexes: while a poll waits on an HTTP/2 connection, the
// client's other requests travel on the same connection.
func TestHoldH2CMultiplexes(t *testing.T) {
	s := newServer(t, true)
	hc := client(true)
	defer hc.CloseIdleConnections()
	done := goGet(t.Context(), hc, s.URL+"/poll?wait=1m")
	<-s.src.asked
	for range 3 {
		if r := get(t.Context(), hc, s.URL+"/other"); r.err != nil || r.body != "other\n" || r.resp.ProtoMajor != 2 {
			t.Fatalf("request beside the poll: %+v", r)
		}
	}
	s.src.set(desired{Revision: 1})
	if r := <-done; r.err != nil || r.resp.StatusCode != http.StatusOK {
		t.Fatalf("poll: %+v", r)
	}
	<-s.answered
	if got := s.conns.Load(); got != 1 {
		t.Fatalf("%d connections accepted, want one for the poll and the requests beside it", got)
	}
}

// TestHoldReplaysReadAhead: a client that pipelines its next request behind
// the poll gets both answered, in order, on its one connection.
func TestHoldReplaysReadAhead(t *testing.T) {
	s := newServer(t, false)
	c, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /poll?wait=20ms HTTP/1.1\r\nHost: x\r\n\r\nGET /other HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, want := range []struct {
		status int
		body   string
	}{{http.StatusNoContent, ""}, {http.StatusOK, "other\n"}} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want.status || string(b) != want.body {
			t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, want.status, want.body)
		}
	}
	if a := <-s.answered; a != (answer{http.StatusNoContent, true}) {
		t.Fatalf("answered %+v, want 204 taken over", a)
	}
}

// TestHoldKeepsRequestsItCannotHandBack: a request that asks to close the
// connection, or is not HTTP/1.1, waits in its handler.
func TestHoldKeepsRequestsItCannotHandBack(t *testing.T) {
	s := newServer(t, false)
	for _, head := range []string{
		"GET /poll?wait=20ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET /poll?wait=20ms HTTP/1.0\r\nHost: x\r\n\r\n",
	} {
		c, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, head)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		_ = c.Close()
		if err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%q: %v %v", head, resp, err)
		}
		if a := <-s.answered; a != (answer{http.StatusNoContent, false}) {
			t.Fatalf("%q answered %+v, want 204 in the handler", head, a)
		}
	}
}

// TestHoldOverTLS: over TLS with HTTP/2 negotiated the poll parks, with
// HTTP/1.1 it is taken over; both answer.
func TestHoldOverTLS(t *testing.T) {
	src := newSource()
	answered := make(chan answer, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = Hold(w, r, Poll{Deadline: time.Now().Add(20 * time.Millisecond), Check: src.check,
			Answered: func(status int, tookOver bool) { answered <- answer{status, tookOver} }})
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	for _, h2 := range []bool{true, false} {
		tr := srv.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // test server
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(!h2)
		tr.Protocols.SetHTTP2(h2)
		hc := &http.Client{Transport: tr}
		r := get(t.Context(), hc, srv.URL)
		hc.CloseIdleConnections()
		if r.err != nil || r.resp.StatusCode != http.StatusNoContent || (r.resp.ProtoMajor == 2) != h2 {
			t.Fatalf("h2 %v: %+v", h2, r)
		}
		if a := <-answered; a != (answer{http.StatusNoContent, !h2}) {
			t.Fatalf("h2 %v answered %+v", h2, a)
		}
	}
	<-src.asked
}

// TestHoldFinalReply: a poll with Final (a held agent report) is answered
// 200 with Final's reply, never 204, whether its deadline passes or its
// server stops, in the handler (here) as on a taken-over connection.
func TestHoldFinalReply(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		stop     bool
	}{{"deadline", 0, false}, {"stop", time.Hour, true}} {
		t.Run(tc.name, func(t *testing.T) {
			stop, stopPolls := context.WithCancel(context.Background())
			defer stopPolls()
			if tc.stop {
				stopPolls()
			}
			src := newSource()
			var answered int
			w := httptest.NewRecorder()
			r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/report", nil)
			err := Hold(w, r, Poll{Deadline: time.Now().Add(tc.deadline), Stop: stop, Check: src.check,
				Final:    func() any { return map[string]int{"revision": 7} },
				Answered: func(status int, _ bool) { answered = status }})
			if err != nil || w.Code != http.StatusOK || answered != http.StatusOK || w.Body.String() != "{\"revision\":7}\n" {
				t.Fatalf("answered %d (observed %d) %q, err %v; want 200 with Final's reply", w.Code, answered, w.Body.String(), err)
			}
		})
	}
}

// TestHandBackWrapsOnce: a connection is handed back after every poll
// taken over on it; it must carry one wrapper (which grows the serving
// goroutine's stack on its first read), not one more per poll for as
// long as the agent stays connected.
func TestHandBackWrapsOnce(t *testing.T) {
	var (
		mu      sync.Mutex
		newConn []net.Conn
	)
	answered := make(chan struct{}, 4)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = Hold(w, r, Poll{Deadline: time.Now().Add(20 * time.Millisecond),
			Check:    func() (any, context.Context) { return nil, nil },
			Answered: func(int, bool) { answered <- struct{}{} }})
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			newConn = append(newConn, c)
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(func() {
		waitHandedBack(t)
		srv.Close()
	})
	hc := client(false)
	defer hc.CloseIdleConnections()
	for i := range 3 {
		if r := get(t.Context(), hc, srv.URL+"/poll"); r.err != nil || r.resp.StatusCode != http.StatusNoContent || (i > 0 && !r.reused) {
			t.Fatalf("poll %d: %+v, want 204 on the kept connection", i, r)
		}
		<-answered
	}
	waitHandedBack(t)
	mu.Lock()
	defer mu.Unlock()
	if len(newConn) != 4 {
		t.Fatalf("server saw %d new connections, want the accepted one and 3 handed back", len(newConn))
	}
	for i, c := range newConn[1:] {
		hb, ok := c.(*handedBackConn)
		if !ok {
			t.Fatalf("hand-back %d served %T, want *handedBackConn", i+1, c)
		}
		if inner, nested := hb.Conn.(*handedBackConn); nested {
			t.Fatalf("hand-back %d wraps another hand-back (%T in %T): one layer more per poll", i+1, inner, hb)
		}
	}
}

// TestAnswerDate: a taken-over poll's Date header is the second it is
// answered in, formatted once per second.
func TestAnswerDate(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 6, 40, 1, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{t0, "Sat, 05 Dec 2026 05:40:01 GMT"},
		{t0.Add(999 * time.Millisecond), "Sat, 05 Dec 2026 05:40:01 GMT"},
		{t0.Add(time.Second), "Sat, 05 Dec 2026 05:40:02 GMT"},
		{t0, "Sat, 05 Dec 2026 05:40:01 GMT"},
	} {
		if got := httpDate(tc.at); got != tc.want {
			t.Errorf("httpDate(%v) = %q, want %q", tc.at, got, tc.want)
		}
	}
}
