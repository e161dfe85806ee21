package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/backoff"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		name     string
		rand     float64
		floor    time.Duration
		attempts int
		lo, hi   time.Duration
	}{
		{"first attempt, low jitter", 0, 0, 1, 500 * time.Millisecond, 500 * time.Millisecond},
		{"first attempt, high jitter", 0.999, 0, 1, 500 * time.Millisecond, time.Second},
		{"grows exponentially", 0, 0, 4, 4 * time.Second, 4 * time.Second},
		{"capped at max", 0.999, 0, 40, 30 * time.Second, time.Minute},
		{"Retry-After is a floor", 0, 20 * time.Second, 1, 20 * time.Second, 21 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := backoff.Backoff{Base: time.Second, Max: time.Minute, Rand: func() float64 { return tc.rand }}
			var got time.Duration
			for range tc.attempts {
				got = b.Next(tc.floor)
			}
			if got < tc.lo || got > tc.hi {
				t.Fatalf("wait = %v, want in [%v, %v]", got, tc.lo, tc.hi)
			}
		})
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := backoff.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context = %v, want context.Canceled", err)
	}
	if err := backoff.Sleep(t.Context(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v, want nil", err)
	}
}
