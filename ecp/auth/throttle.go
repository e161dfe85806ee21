package auth

import (
	"sync"
	"time"
)

// Login throttling: after FreeLoginFailures wrong passwords in a row for
// one username from one client address, further attempts are refused (429)
// for a delay that doubles with each failure, up to MaxLoginDelay. A
// success resets it.
// The state is per replica and in memory: it slows a password guesser by
// orders of magnitude without a write to etcd per attempt.
const (
	FreeLoginFailures = 5
	MaxLoginDelay     = 15 * time.Minute
	// maxThrottled bounds the memory that guessing at many usernames can
	// take; past it the oldest entries are dropped.
	maxThrottled = 10000
)

type throttle struct {
	mu    sync.Mutex
	now   func() time.Time
	users map[string]*failures
}

type failures struct {
	count int
	until time.Time
	last  time.Time
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, users: map[string]*failures{}}
}

// wait is how long username must wait before the next attempt (0: go).
func (t *throttle) wait(username string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.users[username]
	if f == nil {
		return 0
	}
	return max(0, f.until.Sub(t.now()))
}

func (t *throttle) failed(username string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f := t.users[username]
	if f == nil {
		if len(t.users) >= maxThrottled {
			t.evictOldest()
		}
		f = &failures{}
		t.users[username] = f
	}
	f.count++
	f.last = now
	if extra := f.count - FreeLoginFailures; extra > 0 {
		delay := MaxLoginDelay
		if extra < 20 {
			delay = min(MaxLoginDelay, time.Second<<(extra-1))
		}
		f.until = now.Add(delay)
	}
}

func (t *throttle) succeeded(username string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.users, username)
}

func (t *throttle) evictOldest() {
	var oldest string
	var at time.Time
	for u, f := range t.users {
		if oldest == "" || f.last.Before(at) {
			oldest, at = u, f.last
		}
	}
	delete(t.users, oldest)
}
