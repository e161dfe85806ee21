package longpoll

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/connlimit"
)

// rawConn is one client connection the test writes requests on by hand,
// to see exactly when the server closes it.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// do sends a GET of path and reads the answer; closing asks the server to
// close the connection after it.
func (c *rawConn) do(t *testing.T, path string, closing bool) (*http.Response, string) {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: ecp\r\n"
	if closing {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// closedByServer says whether the server closed the connection.
func (c *rawConn) closedByServer() bool {
	_, err := c.br.ReadByte()
	return err == io.EOF
}

// TestScaleCrowdedServerHoldsNoPoll: at nine tenths of its connection
// limit ecp holds no poll (20,000 agents against 16,000 connections left
// 4,000 agents refused and never served while the others held theirs): a
// poll is answered at once, 204 or the reply that is ready, with
// X-Ecp-Hold: next-send and the headers middleware set, and the connection
// is closed after the answer, so the agent's place goes to another. Once
// the connections fall to eight tenths, polls are held again (taken over),
// their connections kept for the agent's next call.
func TestScaleCrowdedServerHoldsNoPoll(t *testing.T) {
	var ln *connlimit.Listener
	s := newServer(t, false, func(ts *httptest.Server) {
		var err error
		if ln, err = connlimit.Wrap(ts.Listener, connlimit.Options{Max: 10, Plain: true, Source: "test"}, slog.New(slog.DiscardHandler), prometheus.NewRegistry()); err != nil {
			t.Fatal(err)
		}
		ts.Listener = ln
		ts.Config.BaseContext = func(net.Listener) context.Context { return WithCrowded(context.Background(), ln.Crowded) }
	})
	addr := s.Listener.Addr().String()
	idle := make([]*rawConn, 8)
	for i := range idle {
		idle[i] = dialRaw(t, addr)
		if resp, _ := idle[i].do(t, "/other", false); resp.StatusCode != http.StatusOK {
			t.Fatalf("/other: %d", resp.StatusCode)
		}
	}

	// 8 idle and the poll's: 9 of 10, crowded.
	for _, ready := range []bool{false, true} {
		if ready {
			s.src.set(desired{Revision: 7})
		}
		c := dialRaw(t, addr)
		resp, body := c.do(t, "/poll?wait=1s", false)
		want := map[bool]int{false: http.StatusNoContent, true: http.StatusOK}[ready]
		if resp.StatusCode != want || resp.Header.Get(agentproto.HeaderHold) != agentproto.HoldNextSend || !resp.Close ||
			resp.Header.Get("X-Frame-Options") != "deny" {
			t.Fatalf("crowded poll (reply ready %v): %d %s %v, want %d at once with %s: %s, Connection: close and the middleware's headers",
				ready, resp.StatusCode, body, resp.Header, want, agentproto.HeaderHold, agentproto.HoldNextSend)
		}
		if ready && body != `{"revision":7,"note":""}`+"\n" {
			t.Fatalf("crowded poll with a reply ready: body %q", body)
		}
		if a := <-s.answered; a.status != want || a.tookOver {
			t.Fatalf("Answered(%d, took over %v), want (%d, false)", a.status, a.tookOver, want)
		}
		if !c.closedByServer() {
			t.Fatal("the crowded poll's connection stayed open")
		}
	}
	s.src.reset()

	// One idle connection goes: 7 and the poll's, 8 of 10, the low-water
	// mark. The poll is held, and its connection kept.
	if resp, _ := idle[0].do(t, "/other", true); resp.StatusCode != http.StatusOK || !idle[0].closedByServer() {
		t.Fatal("an idle connection asked to close stayed open")
	}
	c := dialRaw(t, addr)
	resp, _ := c.do(t, "/poll?wait=20ms", false)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get(agentproto.HeaderHold) != "" || resp.Close {
		t.Fatalf("poll below the low-water mark: %d %v, want 204 after its wait, kept open, no %s", resp.StatusCode, resp.Header, agentproto.HeaderHold)
	}
	if a := <-s.answered; a.status != http.StatusNoContent || !a.tookOver {
		t.Fatalf("Answered(%d, took over %v), want (204, true): the poll was held", a.status, a.tookOver)
	}
	if resp, body := c.do(t, "/other", false); resp.StatusCode != http.StatusOK || body != "other\n" {
		t.Fatalf("the held poll's connection after it: %d %q", resp.StatusCode, body)
	}
}

// TestCrowdedHeldReportGetsItsReply: a held report (a poll with Final) on
// a crowded server is answered at once with its reply, 200 and the
// report's body, never the 204 of a bare poll, which would leave the
// agent's report without its answer.
func TestCrowdedHeldReportGetsItsReply(t *testing.T) {
	src := newSource()
	var answered int
	w := httptest.NewRecorder()
	ctx := WithCrowded(t.Context(), func() bool { return true })
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/report", nil)
	err := Hold(w, r, Poll{Deadline: time.Now().Add(time.Hour), Check: src.check,
		Final:    func() any { return map[string]int{"revision": 7} },
		Answered: func(status int, _ bool) { answered = status }})
	if err != nil || w.Code != http.StatusOK || answered != http.StatusOK || w.Body.String() != "{\"revision\":7}\n" {
		t.Fatalf("answered %d (observed %d) %q, err %v; want 200 with Final's reply at once", w.Code, answered, w.Body.String(), err)
	}
	if h := w.Header().Get(agentproto.HeaderHold); h != agentproto.HoldNextSend {
		t.Errorf("%s: %q, want %q", agentproto.HeaderHold, h, agentproto.HoldNextSend)
	}
}
