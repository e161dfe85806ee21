package daemon

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agent-exporter/state"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestSessionsSignalEveryChange: installing and ending a session each
// close the channel its waiters hold; ending a session no longer in force
// changes nothing (a revocation seen late by a loop of the old session
// must not end the new one); the end is forgotten on disk before it shows.
func TestSessionsSignalEveryChange(t *testing.T) {
	c := newSessions(prometheus.NewRegistry())
	s1, s2 := &session{}, &session{}
	old := state.Ended{At: time.Unix(1_764_000_000, 0), Reason: "before the restart"}
	c.restoreEnded(old)
	if s, e := c.status(); s != nil || e == nil || e.Reason != old.Reason {
		t.Fatalf("after restoring an end: session %v, ended %+v", s, e)
	}
	_, waiting := c.current()
	c.install(s1)
	if s, ch := c.current(); s != s1 || !closed(waiting) || closed(ch) {
		t.Fatalf("install: session %p (want %p), old channel closed %v, new closed %v", s, s1, closed(waiting), closed(ch))
	}
	if _, e := c.status(); e != nil || testutil.ToFloat64(c.registered) != 1 {
		t.Fatalf("installed: ended %+v, registered %v", e, testutil.ToFloat64(c.registered))
	}
	c.restoreEnded(old)
	if _, e := c.status(); e != nil {
		t.Fatalf("a saved end shown while registered: %+v", e)
	}

	_, waiting = c.current()
	forgot := 0
	forget := func(state.Ended) { forgot++ }
	if c.end(s2, state.Ended{Reason: "stale"}, forget) || forgot != 0 || closed(waiting) {
		t.Fatalf("ending a session not in force: forgot %d, signalled %v", forgot, closed(waiting))
	}
	e := state.Ended{At: time.Unix(1_764_000_060, 0), Reason: "revoked"}
	var seen state.Ended
	if !c.end(s1, e, func(got state.Ended) { seen = got }) || seen != e {
		t.Fatalf("ending the session in force: forgot %+v, want %+v", seen, e)
	}
	if s, got := c.status(); s != nil || got == nil || *got != e || !closed(waiting) || testutil.ToFloat64(c.registered) != 0 {
		t.Fatalf("after end: session %v, ended %+v, signalled %v, registered %v", s, got, closed(waiting), testutil.ToFloat64(c.registered))
	}
	if c.end(s1, e, forget) || forgot != 0 {
		t.Fatal("a session ended twice")
	}
}
