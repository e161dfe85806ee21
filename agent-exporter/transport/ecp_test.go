package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/ecpio/ecp/internal/h2wire"
	"github.com/ecpio/ecp/internal/testbed"
)

// ecpStub is an ecp stand-in: /hold answers when release closes, /echo
// echoes the body with the protocol it came over. It counts accepted
// connections.
type ecpStub struct {
	*httptest.Server
	conns    atomic.Int64
	requests atomic.Int64
	release  chan struct{}
	held     chan struct{}
	protos   sync.Map // proto → count
}

// newStub serves HTTP/1.1 only, or with h2 also HTTP/2 (h2c on plain, ALPN
// with TLS).
func newStub(t *testing.T, h2, useTLS bool) *ecpStub {
	t.Helper()
	s := &ecpStub{release: make(chan struct{}), held: make(chan struct{}, 8)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.protos.Store(r.Proto, true)
		switch r.URL.Path {
		case "/hold":
			s.held <- struct{}{}
			<-s.release
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(w, r.Proto+" "+string(b))
		}
	}))
	s.Listener = &testbed.CountingListener{Listener: s.Listener, N: &s.conns}
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetHTTP2(h2 && useTLS)
	s.Config.Protocols.SetUnencryptedHTTP2(h2 && !useTLS)
	if useTLS {
		s.EnableHTTP2 = h2
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.Close()
	})
	return s
}

func echo(t *testing.T, hc *http.Client, url, body string) string {
	t.Helper()
	resp, err := hc.Post(url+"/echo", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// hold sends the stub a poll it holds; the channel gets its outcome.
func hold(hc *http.Client, url string) <-chan error {
	done := make(chan error, 1)
	go func() {
		resp, err := hc.Get(url + "/hold")
		if err == nil {
			_ = resp.Body.Close()
		}
		done <- err
	}()
	return done
}

// TestECPOneConnection: against an ecp speaking HTTP/2, a held long-poll
// and the calls beside it, even started together, share one connection.
func TestECPOneConnection(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "h2c", true: "tls"}[useTLS], func(t *testing.T) {
			s := newStub(t, true, useTLS)
			e := NewECP(Options{InsecureSkipVerify: true, HTTP2: true})
			defer e.CloseIdleConnections()
			hc := e.Client(time.Minute)
			done := hold(hc, s.URL)
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					if got, want := echo(t, hc, s.URL, strings.Repeat("x", i)), "HTTP/2.0 "+strings.Repeat("x", i); got != want {
						t.Errorf("got %q, want %q", got, want)
					}
				})
			}
			wg.Wait()
			<-s.held
			close(s.release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := s.conns.Load(); got != 1 {
				t.Fatalf("%d connections accepted, want 1", got)
			}
		})
	}
}

// TestECPFallsBackToHTTP1: an ecp that speaks only HTTP/1.1 (an older
// replica) gets the same request again over HTTP/1.1, body included, and
// the agent keeps to HTTP/1.1 until HTTP1Retry has passed.
func TestECPFallsBackToHTTP1(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "tls"}[useTLS], func(t *testing.T) {
			s := newStub(t, false, useTLS)
			e := NewECP(Options{InsecureSkipVerify: true, HTTP2: true})
			defer e.CloseIdleConnections()
			now := time.Unix(1000, 0)
			e.now = func() time.Time { return now }
			hc := e.Client(time.Minute)
			if got := echo(t, hc, s.URL, "report"); got != "HTTP/1.1 report" {
				t.Fatalf("first call: %q, want it sent again over HTTP/1.1", got)
			}
			if got := echo(t, hc, s.URL, "again"); got != "HTTP/1.1 again" {
				t.Fatalf("second call: %q", got)
			}
			h2Tries := s.conns.Load() - 1 // the HTTP/1.1 connection is kept alive
			if h2Tries != 1 {
				t.Fatalf("%d HTTP/2 attempts, want 1 until HTTP1Retry passes", h2Tries)
			}
			now = now.Add(HTTP1Retry)
			if got := echo(t, hc, s.URL, "later"); got != "HTTP/1.1 later" {
				t.Fatalf("after HTTP1Retry: %q", got)
			}
			if got := s.conns.Load(); got != 3 {
				t.Fatalf("%d connections, want HTTP/2 tried once more after HTTP1Retry", got)
			}
		})
	}
}

// TestECPRefusalIsNotHTTP1: a connection closed without an answer (ecp at
// its connection limit) is an error for the caller to retry, not a reason
// to give up HTTP/2.
func TestECPRefusalIsNotHTTP1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	e := NewECP(Options{HTTP2: true})
	defer e.CloseIdleConnections()
	if _, err := e.Client(time.Minute).Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Fatal("a refused connection succeeded")
	}
	if e.http1() {
		t.Fatal("a refused connection made the agent fall back to HTTP/1.1")
	}
}

// TestECPHTTP2LimitsOnTheWire: the agent announces small HTTP/2 buffers
// (a 16 KiB frame, 256 KiB windows), not Go's defaults (1 MiB frames, a
// 1 GiB connection window), as ecp reads them from its first frames.
func TestECPHTTP2LimitsOnTheWire(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	e := NewECP(Options{HTTP2: true})
	defer e.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if resp, err := e.RoundTrip(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		t.Fatalf("client preface %q: %v", preface, err)
	}
	a, err := h2wire.Read(http2.NewFramer(c, c))
	if err != nil {
		t.Fatal(err)
	}
	for id, v := range map[http2.SettingID]uint32{http2.SettingMaxFrameSize: h2MaxFrame, http2.SettingInitialWindowSize: h2Recv} {
		if a.Settings[id] != v {
			t.Errorf("agent announces %s = %d, want %d", id, a.Settings[id], v)
		}
	}
	// Go's client adds its buffer to HTTP/2's initial window.
	if a.ConnWindow != 65535+h2Recv {
		t.Errorf("agent opens a connection window of %d bytes, want %d", a.ConnWindow, 65535+h2Recv)
	}
}

// TestECPHTTP1OneConnection: in HTTP/1.1 mode every call takes its turn on
// one connection: calls made while a poll is held wait for its answer
// (none reaches ecp before it) instead of dialling another connection.
func TestECPHTTP1OneConnection(t *testing.T) {
	s := newStub(t, true, false) // an ecp that would speak h2c too
	e := NewECP(Options{})
	defer e.CloseIdleConnections()
	if !e.OneConn() {
		t.Fatal("the default transport is not in HTTP/1.1 mode")
	}
	hc := e.Client(time.Minute)
	if got := echo(t, hc, s.URL, "report"); got != "HTTP/1.1 report" {
		t.Fatalf("report: %q, want it over HTTP/1.1", got)
	}
	done := hold(hc, s.URL)
	<-s.held
	var wg sync.WaitGroup
	var answered atomic.Int64
	asking := make(chan struct{}, 3)
	trace := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GetConn: func(string) { asking <- struct{}{} }})
	for i := range 3 {
		wg.Go(func() {
			body := strings.Repeat("x", i)
			req, err := http.NewRequestWithContext(trace, http.MethodPost, s.URL+"/echo", strings.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			if b, _ := io.ReadAll(resp.Body); string(b) != "HTTP/1.1 "+body {
				t.Errorf("got %q, want %q", b, "HTTP/1.1 "+body)
			}
			answered.Add(1)
		})
	}
	for range 3 {
		<-asking
	}
	// The calls wait for the held poll; ecp has not seen them.
	if n := s.requests.Load(); n != 2 {
		t.Fatalf("ecp got %d requests while the poll was held, want the report and the poll only", n)
	}
	close(s.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if answered.Load() != 3 || s.requests.Load() != 5 {
		t.Fatalf("%d calls answered, %d requests reached ecp; want 3 and 5", answered.Load(), s.requests.Load())
	}
	if got := s.conns.Load(); got != 1 {
		t.Fatalf("%d connections accepted, want 1", got)
	}
}

// answerAfterWriteFails is the connection an HTTP/1-only ecp leaves behind:
// its "HTTP/1.1 505" answer reaches the reader only after the client's
// write has already failed on the closed connection.
type answerAfterWriteFails struct {
	net.Conn
	answer <-chan struct{}
}

func (c answerAfterWriteFails) Read(b []byte) (int, error) {
	<-c.answer
	return copy(b, "HTTP/1.1 505 HTTP Version Not Supported\r\n\r\n"), nil
}

func (answerAfterWriteFails) Write([]byte) (int, error) { return 0, syscall.EPIPE }

// TestSniffConnWriteFailureWaitsForTheAnswer: when the request's write
// fails before the read loop has seen the HTTP/1 answer, the write still
// reports an HTTP/1-only ecp, so RoundTrip sends the request again instead
// of failing it.
func TestSniffConnWriteFailureWaitsForTheAnswer(t *testing.T) {
	e := NewECP(Options{HTTP2: true})
	answer := make(chan struct{})
	c := newSniffConn(answerAfterWriteFails{answer: answer}, e)
	go func() { _, _ = c.Read(make([]byte, 64)) }()
	time.AfterFunc(50*time.Millisecond, func() { close(answer) })
	if _, err := c.Write([]byte("HEADERS")); !errors.Is(err, errHTTP1Only) {
		t.Fatalf("write failed with %v, want errHTTP1Only", err)
	}
	if !e.http1() {
		t.Fatal("the agent did not fall back to HTTP/1.1")
	}
}
