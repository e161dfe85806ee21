package auth

import (
	"testing"
	"time"
)

func TestThrottleDoublesAndResets(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := newThrottle(func() time.Time { return now })
	for range FreeLoginFailures {
		th.failed("u")
		if w := th.wait("u"); w != 0 {
			t.Fatalf("throttled after fewer than %d failures: %s", FreeLoginFailures, w)
		}
	}
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		th.failed("u")
		if w := th.wait("u"); w != want {
			t.Fatalf("wait = %s, want %s", w, want)
		}
	}
	if th.wait("other") != 0 {
		t.Fatal("another user is throttled")
	}
	for range 40 {
		th.failed("u")
	}
	if w := th.wait("u"); w != MaxLoginDelay {
		t.Fatalf("wait = %s, want the cap %s", w, MaxLoginDelay)
	}
	now = now.Add(MaxLoginDelay)
	if w := th.wait("u"); w != 0 {
		t.Fatalf("still throttled after the delay: %s", w)
	}
	th.succeeded("u")
	th.failed("u")
	if w := th.wait("u"); w != 0 {
		t.Fatalf("success did not reset the count: %s", w)
	}
}

func TestThrottleIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	th := newThrottle(func() time.Time { now = now.Add(time.Millisecond); return now })
	for i := range maxThrottled + 10 {
		th.failed(string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := len(th.users); n > maxThrottled {
		t.Fatalf("%d throttled users kept, cap %d", n, maxThrottled)
	}
}
