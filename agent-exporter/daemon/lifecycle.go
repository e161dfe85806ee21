package daemon

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// lifecycle is Run's and Stop's contract: Run runs once; Stop is
// idempotent, ends Run and waits for it, and before Run claims the run so
// that a later Run fails instead of serving a stopped agent. It also
// holds the run's context, parent of every session's.
type lifecycle struct {
	started  atomic.Bool
	stopOnce sync.Once
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when Run has returned, or by Stop before Run
	ctx      context.Context
}

func newLifecycle() *lifecycle {
	return &lifecycle{stop: make(chan struct{}), done: make(chan struct{})}
}

// errRunTwice: Run was called after an earlier Run or Stop.
var errRunTwice = errors.New("daemon: Run called twice")

// begin claims the run with ctx, the run's context; it fails when Run or
// Stop came first. The caller closes the run with finish.
func (l *lifecycle) begin(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return errRunTwice
	}
	l.ctx = ctx
	return nil
}

// runContext is the context begin was given: set before Run starts
// anything that reads it.
func (l *lifecycle) runContext() context.Context { return l.ctx }

// finish marks Run returned.
func (l *lifecycle) finish() { close(l.done) }

// stopping is closed once Stop was called.
func (l *lifecycle) stopping() <-chan struct{} { return l.stop }

// halt asks Run to end. It returns true when Run had not begun: the run
// is then claimed and done, and the caller releases what New acquired.
func (l *lifecycle) halt() bool {
	l.stopOnce.Do(func() { close(l.stop) })
	if l.started.CompareAndSwap(false, true) {
		close(l.done)
		return true
	}
	return false
}

// wait waits for Run to return, bounded by ctx.
func (l *lifecycle) wait(ctx context.Context) error {
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
