// Package backoff is the one jittered exponential backoff of both
// binaries: agents reconnecting to ecp, the agent's remote write and log
// shipping, ecp's remote-write forwarding and log-store writes, and a
// replica campaigning again for a leadership all wait the same way, so a
// fleet that failed together spreads out instead of retrying in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is jittered exponential backoff: attempt n waits a random time
// in [d/2, d] with d = min(Max, Base·2ⁿ). The zero attempt count is the
// first attempt; Reset starts over after a success. Not safe for
// concurrent use: each retry loop keeps its own.
type Backoff struct {
	Base, Max time.Duration
	// Rand returns a float in [0,1); nil uses math/rand/v2.
	Rand    func() float64
	attempt int
}

// Next returns the wait before the next attempt, at least floor (a
// server's Retry-After), and counts the attempt.
func (b *Backoff) Next(floor time.Duration) time.Duration {
	d := b.Base << min(b.attempt, 30)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	wait := d/2 + time.Duration(r()*float64(d/2))
	if wait < floor {
		// Jitter on top of the floor too, so a 429 storm does not come
		// back at the same second.
		wait = floor + time.Duration(r()*float64(b.Base))
	}
	return wait
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits d or until ctx ends, whichever comes first; it returns
// ctx.Err() when ctx ended first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
