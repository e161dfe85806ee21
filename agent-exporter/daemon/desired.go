package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
)

// applyDesired acts on a desired state from a report reply or the
// long-poll: unregister, or a new connection limit applied at once.
func (a *App) applyDesired(s *session, d agentproto.DesiredState) {
	if d.Unregister {
		uctx, cancel := context.WithTimeout(s.ctx, a.opts.HTTPTimeout)
		if err := s.ecp.Unregister(uctx); err != nil {
			a.log.Warn("unregister asked by ecp; telling ecp failed", "err", err)
		}
		cancel()
		a.endSession(s, "ecp asked the agent to unregister")
		return
	}
	a.dash.answer(s, d.DashboardSessions)
	if d.Revision != 0 {
		// Log collection follows ecp's desired state once ecp sent one.
		a.logs.apply(s, d.LogCollection)
	}
	if d.Revision == 0 || !a.enf.SetDesired(d) {
		return
	}
	a.log.Info("desired state changed", "revision", d.Revision, "maxConnections", d.MaxConnections)
	_ = a.enf.Enforce(s.ctx, s.emqx)
	// Tell ecp at once that the revision is applied, unless ecp placed
	// the first report later in the interval (a burst of registrations):
	// then the first report tells it.
	a.rep.applied()
	a.wake()
}

// desiredLoop long-polls ecp so a change decided there (max connections,
// unregister) reaches EMQX within a second or two, not at the next report.
// On one HTTP/1.1 connection each poll is held only until just before the
// next tick, and the next is sent after the tick's sends (sendSchedule).
func (a *App) desiredLoop(ctx context.Context) {
	bo := backoff.Backoff{Base: a.opts.BackoffBase, Max: a.opts.BackoffMax}
	for {
		s, changed := a.sess.current()
		if s == nil {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				continue
			}
		}
		oneConn := s.toECP.OneConn()
		// On one connection the last tick's push goes first: a held poll
		// would keep it waiting for the connection until just before the
		// next tick.
		if oneConn && !a.pushTried(s, a.opts.DesiredWait) {
			continue
		}
		wait, ticked := a.sends.pollHold(a.opts.Now(), a.opts.DesiredWait, oneConn)
		if ticked != nil {
			select {
			case <-ctx.Done():
				return
			case <-s.ctx.Done():
			case <-ticked:
			}
			continue
		}
		rev := a.enf.State().Revision
		polled, err := s.poll.Desired(s.ctx, rev, wait)
		d, newer := polled.Desired, polled.Changed
		switch {
		case ctx.Err() != nil:
			return
		case s.ctx.Err() != nil:
			continue
		case errors.Is(err, ecpclient.ErrCredentialRevoked):
			a.endSession(s, "credential revoked by ecp: "+err.Error())
			continue
		case err != nil:
			wait := bo.Next(ecpclient.RetryAfter(err))
			a.log.Warn("desired-state poll failed", "err", err, "retryIn", wait)
			if backoff.Sleep(s.ctx, wait) != nil && ctx.Err() != nil {
				return
			}
			continue
		}
		bo.Reset()
		if polled.NextSend {
			// Crowded: apply what came, then wait for the next tick's sends.
			a.sends.crowd()
			if newer && (d.Revision > rev || d.Unregister) {
				a.applyDesired(s, d)
			}
			continue
		}
		if !newer {
			continue
		}
		if d.Revision <= rev && !d.Unregister {
			// A server answering at once with nothing new must not turn
			// the long-poll into a busy loop.
			if backoff.Sleep(s.ctx, a.opts.BackoffBase) != nil && ctx.Err() != nil {
				return
			}
			continue
		}
		a.applyDesired(s, d)
	}
}

// pushTried waits until the collections queued for remote write have been
// pushed once, at most limit; false when s ended first.
func (a *App) pushTried(s *session, limit time.Duration) bool {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-a.rw.Tried():
	case <-t.C:
	case <-s.ctx.Done():
		return false
	}
	return true
}
