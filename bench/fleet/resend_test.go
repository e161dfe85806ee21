package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// TestRefusedPushIsSentAgain: as agent-exporter, a push ecp refuses with
// 429 is kept and sent again, oldest first, at the agent's next turn; past
// agentPushQueue kept pushes the oldest is dropped and counted. So the
// summary can say whether every refused sample reached the backend.
func TestRefusedPushIsSentAgain(t *testing.T) {
	var mu sync.Mutex
	refuse := true
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if refuse {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		got = append(got, string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	const series = 10
	a := &agent{base: srv.URL, cred: "c"}
	cfg := config{series: series}
	res := &results{}
	var pushed atomic.Int64
	var sent []string
	for i := range agentPushQueue + 2 {
		p := []byte{byte('a' + i)}
		sent = append(sent, string(p))
		if !a.pushAll(t.Context(), srv.Client(), p, cfg, res, &pushed) {
			t.Fatal("pushAll ended")
		}
	}
	if len(a.unsent) != agentPushQueue || a.unsentDropped != 2*series || pushed.Load() != 0 {
		t.Fatalf("kept %d pushes, dropped %d samples, accepted %d; want %d kept, %d dropped, none accepted",
			len(a.unsent), a.unsentDropped, pushed.Load(), agentPushQueue, 2*series)
	}
	mu.Lock()
	refuse = false
	mu.Unlock()
	if !a.pushAll(t.Context(), srv.Client(), []byte("z"), cfg, res, &pushed) {
		t.Fatal("pushAll ended")
	}
	want := slices.Concat(sent[2:], []string{"z"})
	if !slices.Equal(got, want) || len(a.unsent) != 0 || pushed.Load() != int64(len(want)*series) {
		t.Fatalf("ecp got %q (accepted %d samples, %d kept), want %q", got, pushed.Load(), len(a.unsent), want)
	}
	// A turn stops at its first refusal: one refused push per turn.
	if got := res.rwRefused.Load(); got != (agentPushQueue+2)*series {
		t.Fatalf("refused samples %d, want %d", got, (agentPushQueue+2)*series)
	}
}
