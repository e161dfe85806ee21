package daemon

import (
	"testing"
	"time"
)

// TestSendSchedulePollHold: a poll is held until the margin before the next
// tick, at most the limit; none is sent while a tick is due or running, nor
// when less than the margin would be left; a wake during a tick keeps the
// poll waiting for the tick it asked for.
func TestSendSchedulePollHold(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newSendSchedule()
	if _, ticked := w.pollHold(t0, 30*time.Second, true); ticked == nil {
		t.Fatal("a poll may go out before the first tick")
	}
	w.begin()
	w.end(t0.Add(15*time.Second), 15*time.Second)
	for _, c := range []struct {
		at    time.Duration
		limit time.Duration
		want  time.Duration // 0: wait for the tick
	}{
		{0, 30 * time.Second, 14 * time.Second},
		{0, 5 * time.Second, 5 * time.Second},
		{12 * time.Second, 30 * time.Second, 2 * time.Second},
		{13*time.Second + 500*time.Millisecond, 30 * time.Second, 0},
		{15 * time.Second, 30 * time.Second, 0},
	} {
		got, ticked := w.pollHold(t0.Add(c.at), c.limit, true)
		if got != c.want || (ticked == nil) != (c.want > 0) {
			t.Errorf("at %s limit %s: hold %s (wait for the tick %v), want %s", c.at, c.limit, got, ticked != nil, c.want)
		}
	}
	// A short interval gets a tenth of it as the margin.
	w.begin()
	w.end(t0.Add(300*time.Millisecond), 300*time.Millisecond)
	if got, _ := w.pollHold(t0, time.Minute, true); got != 270*time.Millisecond {
		t.Errorf("300ms between ticks: hold %s, want 270ms", got)
	}

	w.begin()
	_, ticked := w.pollHold(t0, time.Minute, true)
	w.wake()
	w.end(t0.Add(15*time.Second), 15*time.Second)
	select {
	case <-ticked:
		t.Fatal("the tick's end released the poll although a wake asked for another tick")
	default:
	}
	if _, again := w.pollHold(t0, time.Minute, true); again == nil {
		t.Fatal("a poll may go out while a woken tick is due")
	}
	<-w.kick
	w.begin()
	w.end(t0.Add(15*time.Second), 15*time.Second)
	<-ticked
	if got, _ := w.pollHold(t0, time.Minute, true); got != 14*time.Second {
		t.Fatalf("after the woken tick: hold %s, want 14s", got)
	}
}

// TestSendScheduleCrowded: once ecp said it is crowded, no poll goes out,
// on one HTTP/1.1 connection or on HTTP/2, until the end of the next tick
// to begin; then polls are held again.
func TestSendScheduleCrowded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, oneConn := range []bool{true, false} {
		w := newSendSchedule()
		w.begin()
		w.end(t0.Add(15*time.Second), 15*time.Second)
		w.crowd()
		_, ticked := w.pollHold(t0, 30*time.Second, oneConn)
		if ticked == nil {
			t.Fatalf("one connection %v: a poll may go out while ecp is crowded", oneConn)
		}
		w.begin()
		if _, during := w.pollHold(t0, 30*time.Second, oneConn); during == nil {
			t.Fatalf("one connection %v: a poll may go out during the tick after the crowding", oneConn)
		}
		w.end(t0.Add(15*time.Second), 15*time.Second)
		<-ticked
		want := 30 * time.Second
		if oneConn {
			want = 14 * time.Second
		}
		if got, after := w.pollHold(t0, 30*time.Second, oneConn); after != nil || got != want {
			t.Fatalf("one connection %v: after the tick hold %s (waits %v), want %s", oneConn, got, after != nil, want)
		}
	}
}
