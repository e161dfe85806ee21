package daemon

import (
	"context"
	"sync"

	"github.com/ecpio/ecp/agent-exporter/emqx"
)

// tickReads is the EMQX client as one tick sees it: the enforcer (which
// reads the licence and its setting to correct drift) and the collector
// (which exports them) share one read of each per tick, so EMQX is read
// once per tick. Between ticks (begin, end) every call goes to EMQX: an
// enforcement woken by the long-poll must see EMQX as it is now.
type tickReads struct {
	*emqx.Client

	mu  sync.Mutex
	on  bool
	lic shared[emqx.License]
	set shared[emqx.LicenseSetting]
	// failed is the first error of the tick's calls, for the tick to name
	// the call its deadline cut (the enforcer keeps only the message).
	failed error
}

// shared is one read shared within a tick, a failure too: a second caller
// would only fail the same way.
type shared[T any] struct {
	have bool
	v    T
	err  error
}

// read returns the tick's read, reading through fn the first time; outside
// a tick (on false) it always reads.
func (s *shared[T]) read(on bool, fn func() (T, error)) (T, error) {
	if on && s.have {
		return s.v, s.err
	}
	v, err := fn()
	if on {
		*s = shared[T]{have: true, v: v, err: err}
	}
	return v, err
}

func newTickReads(c *emqx.Client) *tickReads { return &tickReads{Client: c} }

// begin starts a tick: the next licence and setting reads are shared
// until end.
func (t *tickReads) begin() { t.reset(true) }

// end forgets what the tick read.
func (t *tickReads) end() { t.reset(false) }

func (t *tickReads) reset(on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on = on
	t.lic, t.set = shared[emqx.License]{}, shared[emqx.LicenseSetting]{}
	t.failed = nil
}

// firstErr is the first error of the tick's calls so far.
func (t *tickReads) firstErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// note keeps err when it is the tick's first; called with mu held.
func (t *tickReads) note(err error) {
	if t.on && t.failed == nil {
		t.failed = err
	}
}

// License reads the licence once per tick.
func (t *tickReads) License(ctx context.Context) (emqx.License, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lic.read(t.on, func() (emqx.License, error) {
		l, err := t.Client.License(ctx)
		t.note(err)
		return l, err
	})
}

// LicenseSetting reads the licence setting once per tick.
func (t *tickReads) LicenseSetting(ctx context.Context) (emqx.LicenseSetting, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.set.read(t.on, func() (emqx.LicenseSetting, error) {
		st, err := t.Client.LicenseSetting(ctx)
		t.note(err)
		return st, err
	})
}

// SetDynamicMaxConnections writes the limit; within a tick EMQX's answer
// becomes the setting the rest of the tick reads (after a failure the
// setting is read again).
func (t *tickReads) SetDynamicMaxConnections(ctx context.Context, n int) (emqx.LicenseSetting, error) {
	st, err := t.Client.SetDynamicMaxConnections(ctx, n)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on {
		t.set = shared[emqx.LicenseSetting]{have: err == nil, v: st}
	}
	t.note(err)
	return st, err
}
