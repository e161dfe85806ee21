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

	mu      sync.Mutex
	on      bool
	lic     *emqx.License
	licErr  error
	set     *emqx.LicenseSetting
	setErr  error
	haveLic bool
	haveSet bool
}

func newTickReads(c *emqx.Client) *tickReads { return &tickReads{Client: c} }

// begin starts a tick: the next licence and setting reads are shared
// until end.
func (t *tickReads) begin() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on, t.haveLic, t.haveSet = true, false, false
	t.lic, t.licErr, t.set, t.setErr = nil, nil, nil, nil
}

// end forgets what the tick read.
func (t *tickReads) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.on, t.haveLic, t.haveSet = false, false, false
	t.lic, t.licErr, t.set, t.setErr = nil, nil, nil, nil
}

// License reads the licence once per tick (a failure too: the second
// caller would only fail the same way).
func (t *tickReads) License(ctx context.Context) (emqx.License, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on && t.haveLic {
		if t.lic == nil {
			return emqx.License{}, t.licErr
		}
		return *t.lic, nil
	}
	l, err := t.Client.License(ctx)
	if t.on {
		t.haveLic, t.licErr = true, err
		if err == nil {
			t.lic = &l
		}
	}
	return l, err
}

// LicenseSetting reads the licence setting once per tick.
func (t *tickReads) LicenseSetting(ctx context.Context) (emqx.LicenseSetting, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on && t.haveSet {
		if t.set == nil {
			return emqx.LicenseSetting{}, t.setErr
		}
		return *t.set, nil
	}
	st, err := t.Client.LicenseSetting(ctx)
	if t.on {
		t.haveSet, t.setErr = true, err
		if err == nil {
			t.set = &st
		}
	}
	return st, err
}

// SetDynamicMaxConnections writes the limit; within a tick EMQX's answer
// becomes the setting the rest of the tick reads.
func (t *tickReads) SetDynamicMaxConnections(ctx context.Context, n int) (emqx.LicenseSetting, error) {
	st, err := t.Client.SetDynamicMaxConnections(ctx, n)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.on {
		// Whatever happened, the setting is no longer what was read.
		t.haveSet, t.set, t.setErr = err == nil, nil, nil
		if err == nil {
			t.set = &st
		}
	}
	return st, err
}
