package daemon

import (
	"context"
	"errors"
	"testing"
)

// TestLifecycleStopBeforeRun: Stop before Run claims the run, so Run fails
// instead of serving a stopped agent, and Stop does not wait.
func TestLifecycleStopBeforeRun(t *testing.T) {
	l := newLifecycle()
	if !l.halt() {
		t.Fatal("Stop before Run did not claim the run")
	}
	if l.halt() {
		t.Fatal("a second Stop claimed the run again")
	}
	if err := l.begin(t.Context()); !errors.Is(err, errRunTwice) {
		t.Fatalf("Run after Stop: %v, want %v", err, errRunTwice)
	}
	if err := l.wait(t.Context()); err != nil {
		t.Fatalf("Stop waited for a Run that never began: %v", err)
	}
}

// TestLifecycleStopDuringRun: Stop signals a running Run and waits for it
// to finish, bounded by its context; Run runs once.
func TestLifecycleStopDuringRun(t *testing.T) {
	l := newLifecycle()
	ctx, cancelRun := context.WithCancel(t.Context())
	defer cancelRun()
	if err := l.begin(ctx); err != nil {
		t.Fatal(err)
	}
	if l.runContext() != ctx {
		t.Fatal("the run's context is not the one Run began with")
	}
	if err := l.begin(ctx); !errors.Is(err, errRunTwice) {
		t.Fatalf("second Run: %v, want %v", err, errRunTwice)
	}
	if closed(l.stopping()) {
		t.Fatal("stopping before Stop")
	}
	if l.halt() || !closed(l.stopping()) {
		t.Fatal("Stop during Run claimed the run, or did not signal it")
	}
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.wait(gone); !errors.Is(err, context.Canceled) {
		t.Fatalf("waiting for an unfinished Run: %v, want the context's error", err)
	}
	l.finish()
	if err := l.wait(t.Context()); err != nil {
		t.Fatalf("waiting for a finished Run: %v", err)
	}
}
