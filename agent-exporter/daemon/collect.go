package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/version"
)

// collectLoop polls EMQX every interval, corrects drift of the connection
// limit and reports to ecp when a report is due.
func (a *App) collectLoop(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.sends.kick:
		}
		start := a.opts.Now()
		// The applied generation is read before begin. A desired state
		// applied between the two has its wake answered by this tick
		// (begin drops it) and, counted as unseen, is reported by the next
		// tick at the latest. Read after begin, such a state would count as
		// seen here while its wake, left standing, ran a second tick that
		// reports nothing.
		gen := a.rep.gen()
		a.sends.begin()
		a.tick(ctx, start, gen)
		// From the tick's start: a held report ends the tick just before
		// the next one is due.
		next := a.rep.nextTickAt(start)
		a.sends.end(next, next.Sub(start))
		t.Reset(max(0, next.Sub(a.opts.Now())))
	}
}

// tick collects, pushes and reports; start is when it began, gen the
// applied generation then (reporter.gen).
func (a *App) tick(ctx context.Context, start time.Time, gen uint64) {
	s, _ := a.sess.current()
	// Everything the tick asks of EMQX shares one deadline (tickBudget),
	// so a slow EMQX delays the report by at most the budget.
	budget := tickBudget(a.rep.interval())
	deadline := time.Now().Add(budget)
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var enfErr error
	var ectx context.Context
	if s != nil {
		s.reads.begin()
		defer s.reads.end()
		var ecancel context.CancelFunc
		ectx, ecancel = context.WithDeadline(s.ctx, deadline)
		defer ecancel()
	}
	// Enforce before collecting, so the snapshot (and /metrics) shows the
	// corrected limit; skip it while EMQX is known to be down, where it
	// could only fail.
	enforced := false
	if prev := a.col.Latest(); s != nil && (prev == nil || prev.Up) {
		_ = a.enf.Enforce(ectx, s.reads)
		enfErr = s.reads.firstErr()
		enforced = true
	}
	snap := a.col.Collect(cctx)
	if s == nil {
		return
	}
	if snap.Up && !enforced {
		// EMQX is back: enforce now rather than report a stale problem
		// for one more interval.
		_ = a.enf.Enforce(ectx, s.reads)
	}
	var timedOut *agentproto.Problem
	if errors.Is(cctx.Err(), context.DeadlineExceeded) {
		errs := []error{enfErr}
		for _, r := range snap.Results {
			errs = append(errs, r.Err)
		}
		timedOut = timeoutProblem(budget, append(errs, s.reads.firstErr())...)
		a.log.Warn("emqx too slow for the tick deadline", "problem", timedOut.Message)
	}
	if err := a.rw.Push(s.push, snap.CollectedAt); err != nil {
		a.log.Warn("collection not queued for remote write", "err", err)
	}
	a.report(s, snap, timedOut, gen, start)
}

// buildReport is called by reporter.queue with the intervals in force.
// timedOut, when set, is the problem of a tick cut by its deadline: it
// names the slow call, which says more than the failures it caused.
func (a *App) buildReport(iv intervals, snap *collector.Snapshot, timedOut *agentproto.Problem) agentproto.ReportRequest {
	st := a.enf.State()
	req := agentproto.ReportRequest{
		CollectedAt:     snap.CollectedAt.UTC(),
		AgentVersion:    version.Version,
		EMQX:            snap.Status(),
		IntervalSeconds: intervalSeconds(iv.current),
		IntervalPinned:  iv.pinned(),
	}
	if st.Problem == nil && (st.AppliedOK || st.Held != nil) {
		req.AppliedRevision = st.Revision
	}
	if timedOut != nil {
		req.EMQX.Problem = timedOut
	}
	if req.EMQX.Reachable && req.EMQX.Problem == nil && st.Problem != nil {
		req.EMQX.Problem = st.Problem
	}
	return req
}

// report queues a report when one is due and sends the queue oldest
// first. While ecp is unreachable the queue keeps at most ReportBuffer
// reports; the oldest are dropped and counted. On one HTTP/1.1 connection
// the last report is held as the long-poll (reportHold); start is when
// the tick began.
func (a *App) report(s *session, snap *collector.Snapshot, timedOut *agentproto.Problem, gen uint64, start time.Time) {
	if !a.rep.queue(gen, func(iv intervals) agentproto.ReportRequest { return a.buildReport(iv, snap, timedOut) }) {
		return
	}
	for {
		req, ok := a.rep.oldest(s, start)
		if !ok {
			return
		}
		var (
			resp agentproto.ReportResponse
			err  error
		)
		hold := a.reportHold(s, start)
		a.rep.send(s)
		if hold > 0 {
			// Never cancelled to make room: it ends before the next tick.
			var held ecpclient.HeldReport
			held, err = s.poll.ReportHeld(s.ctx, req, a.enf.State().Revision, hold)
			resp = held.ReportResponse
			if held.NextSend {
				a.sends.crowd()
			}
		} else {
			rctx, cancel := context.WithTimeout(s.ctx, a.opts.HTTPTimeout)
			resp, err = s.ecp.Report(rctx, req)
			cancel()
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			if errors.Is(err, ecpclient.ErrCredentialRevoked) {
				a.endSession(s, "credential revoked by ecp: "+err.Error())
				return
			}
			wait, buffered := a.rep.failed(err)
			a.log.Warn("report not delivered", "err", err, "retryIn", wait, "buffered", buffered)
			return
		}
		a.rep.delivered(s, secondsDuration(resp.ReportIntervalSeconds))
		a.applyDesired(s, resp.Desired)
	}
}

// reportHold is how long ecp may hold the report about to be sent, as the
// desired-state long-poll (agentproto.HeaderReportHeld): on one HTTP/1.1
// connection, for the only report queued, until the margin before the next
// tick (holdFor), at most DesiredWait; else 0, sent unheld. It first lets
// the tick's push go out, which would otherwise wait behind the hold; log
// batches already waiting for the connection go first as well (calls take
// the connection in the order they asked for it).
func (a *App) reportHold(s *session, start time.Time) time.Duration {
	if !s.toECP.OneConn() || a.rep.backlog(s) != 1 {
		return 0
	}
	next := a.rep.nextTickAt(start)
	margin := marginOf(next.Sub(start))
	hold := holdFor(a.opts.Now(), next, margin, a.opts.DesiredWait)
	if hold == 0 {
		return 0
	}
	if !a.pushTried(s, hold) {
		return 0
	}
	return holdFor(a.opts.Now(), next, margin, a.opts.DesiredWait)
}
