package longpoll

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSlowReaderHoldsNoOtherAnswer: one goroutine answers every taken-over
// poll, so a client that does not read its answer must not keep the other
// clients' answers waiting, however long the server lets a write take.
func TestSlowReaderHoldsNoOtherAnswer(t *testing.T) {
	big := strings.Repeat("x", 8<<20) // more than the sockets buffer
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		final := func() any { return "small" }
		if r.URL.Query().Has("big") {
			final = func() any { return big }
		}
		_ = Hold(w, r, Poll{Deadline: time.Now().Add(wait), Final: final,
			Check: func() (any, context.Context) { return nil, nil }, Answered: func(int, bool) {}})
	}))
	srv.Config.WriteTimeout = time.Hour
	srv.Start()
	stalled, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stalled.Close() // ends the write of its answer
		waitHandedBack(t)
		srv.Close()
	})
	_ = stalled.(*net.TCPConn).SetReadBuffer(4 << 10)
	if _, err := io.WriteString(stalled, "GET /poll?wait=50ms&big=1 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}

	hc := client(false)
	defer hc.CloseIdleConnections()
	got := goGet(t.Context(), hc, srv.URL+"/poll?wait=300ms")
	select {
	case r := <-got:
		if r.err != nil || r.resp.StatusCode != http.StatusOK || r.body != "\"small\"\n" {
			t.Fatalf("answer: %+v, want 200 \"small\"", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a poll was not answered while another client left its answer unread")
	}
}

// TestEarlierPollWakesTheHolder: the holder sleeps until the earliest
// deadline it holds, and wakes only for a poll due before that: a poll
// of 50 ms held beside one of an hour is answered, and so is the next.
func TestEarlierPollWakesTheHolder(t *testing.T) {
	s := newServer(t, false)
	t.Cleanup(s.stopPolls)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hc := client(false)
	defer hc.CloseIdleConnections()
	long := goGet(ctx, hc, s.URL+"/poll?wait=1h")
	<-s.src.asked
	for _, wait := range []string{"50ms", "100ms"} {
		hc := client(false)
		defer hc.CloseIdleConnections()
		select {
		case r := <-goGet(ctx, hc, s.URL+"/poll?wait="+wait):
			if r.err != nil || r.resp.StatusCode != http.StatusNoContent {
				t.Fatalf("poll of %s: %+v, want 204", wait, r)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a poll of %s beside one of an hour was not answered", wait)
		}
	}
	select {
	case r := <-long:
		t.Fatalf("the poll of an hour was answered: %+v", r)
	default:
	}
}

// TestShortHoldAnsweredNearlyAsAsked: a poll may be answered early with
// one that falls due, but by no more than a hundredth of its hold: one of
// 200 ms is not answered with one of 190 ms beside it, nor before 198 ms.
func TestShortHoldAnsweredNearlyAsAsked(t *testing.T) {
	s := newServer(t, false)
	for range 3 {
		start := time.Now()
		var got [2]<-chan result
		for i, wait := range []string{"190ms", "200ms"} {
			hc := client(false)
			defer hc.CloseIdleConnections()
			got[i] = goGet(t.Context(), hc, s.URL+"/poll?wait="+wait)
		}
		for i, want := range []time.Duration{188 * time.Millisecond, 198 * time.Millisecond} {
			r := <-got[i]
			if r.err != nil || r.resp.StatusCode != http.StatusNoContent {
				t.Fatalf("poll: %+v, want 204", r)
			}
			if took := time.Since(start); took < want {
				t.Fatalf("a poll held for %s was answered after %s", want, took)
			}
		}
		<-s.answered
		<-s.answered
	}
}

// TestStopAnswersOnlyItsPolls: the holder watches each Stop once for all
// the polls that share it; a server that stops answers its own polls at
// once and leaves another server's held.
func TestStopAnswersOnlyItsPolls(t *testing.T) {
	a, b := newServer(t, false), newServer(t, false)
	t.Cleanup(b.stopPolls)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	polls := map[*server][]<-chan result{}
	for _, s := range []*server{a, b} {
		for range 2 {
			hc := client(false)
			defer hc.CloseIdleConnections()
			polls[s] = append(polls[s], goGet(ctx, hc, s.URL+"/poll?wait=1h"))
			<-s.src.asked
		}
	}
	a.stopPolls()
	for _, got := range polls[a] {
		select {
		case r := <-got:
			if r.err != nil || r.resp.StatusCode != http.StatusNoContent {
				t.Fatalf("poll of a stopped server: %+v, want 204", r)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a poll of a stopped server was not answered")
		}
	}
	time.Sleep(50 * time.Millisecond)
	for _, got := range polls[b] {
		select {
		case r := <-got:
			t.Fatalf("a poll of the server still running was answered when another stopped: %+v", r)
		default:
		}
	}
	b.stopPolls()
	for _, got := range polls[b] {
		if r := <-got; r.err != nil || r.resp.StatusCode != http.StatusNoContent {
			t.Fatalf("poll of the second server stopped: %+v, want 204", r)
		}
	}
}
