package fleet

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// gate is the agent API's admission: it answers 503 until the state is
// loaded, sheds register, report and unregister calls beyond MaxInFlight
// and long-polls beyond MaxWaiters with 429, and tells held long-polls
// when the replica stops. It holds no lock: its bounds are channels.
type gate struct {
	retryAfter time.Duration
	throttled  prometheus.Counter

	readyOnce sync.Once
	ready     chan struct{}

	inflight chan struct{}
	waiters  chan struct{}

	// stopping is done when Run's context ends: held long-polls then
	// answer 204 at once, so a graceful shutdown is not held for a minute
	// and agents re-poll another replica.
	stopping context.Context
	stop     context.CancelFunc
}

func newGate(opts Options, throttled prometheus.Counter) *gate {
	g := &gate{retryAfter: opts.RetryAfter, throttled: throttled, ready: make(chan struct{}),
		inflight: make(chan struct{}, opts.MaxInFlight), waiters: make(chan struct{}, opts.MaxWaiters)}
	g.stopping, g.stop = context.WithCancel(context.Background())
	return g
}

// Ready is closed once the first load from etcd is done.
func (g *gate) Ready() <-chan struct{} { return g.ready }

func (g *gate) markReady() { g.readyOnce.Do(func() { close(g.ready) }) }

func (g *gate) waitReady(ctx context.Context) error {
	select {
	case <-g.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for fleet state to load: %w", ctx.Err())
	}
}

// loading is nil once the state is loaded and 503 before: an agent must
// not be told its credential is revoked only because this replica just
// started.
func (g *gate) loading() error {
	select {
	case <-g.ready:
		return nil
	default:
		return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
			Message: "ecp is loading its state; retry later", RetryAfter: g.retryAfter}
	}
}

// whenReady answers 503 until the state is loaded (loading).
func (g *gate) whenReady(h httpapi.HandlerFunc) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := g.loading(); err != nil {
			return err
		}
		return h(w, r)
	}
}

// limited sheds load beyond MaxInFlight with 429: a reconnect storm gets
// told to come back (agents add jitter) instead of queueing until timeouts.
func (g *gate) limited(h httpapi.HandlerFunc) httpapi.HandlerFunc {
	h = g.whenReady(h)
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := g.enter(); err != nil {
			return err
		}
		defer g.leave()
		return h(w, r)
	}
}

// enter takes an in-flight place, or says 429 when all MaxInFlight are
// taken; leave gives it back. A held report leaves once recorded: its hold
// counts against MaxWaiters instead.
func (g *gate) enter() error {
	select {
	case g.inflight <- struct{}{}:
		return nil
	default:
		g.throttled.Inc()
		return rateLimited(g.retryAfter, "too many agent requests in flight")
	}
}

func (g *gate) leave() { <-g.inflight }

// admitWaiter takes a long-poll place, or says 429 when all MaxWaiters
// are held; releaseWaiter gives it back.
func (g *gate) admitWaiter() error {
	if g.tryWaiter() {
		return nil
	}
	g.throttled.Inc()
	return rateLimited(g.retryAfter, "too many desired-state long-polls")
}

// tryWaiter takes a long-poll place if one is free: a held report that
// finds none is answered at once instead of refused.
func (g *gate) tryWaiter() bool {
	select {
	case g.waiters <- struct{}{}:
		return true
	default:
		return false
	}
}

func (g *gate) releaseWaiter() { <-g.waiters }

func rateLimited(after time.Duration, msg string) error {
	return &httpapi.Error{Status: http.StatusTooManyRequests, Code: agentproto.CodeRateLimited,
		Message: msg + "; retry after the Retry-After delay", RetryAfter: after}
}
