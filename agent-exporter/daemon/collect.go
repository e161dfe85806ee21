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
		a.sends.begin()
		a.tick(ctx)
		d := a.rep.nextTickIn()
		a.sends.end(a.opts.Now(), d)
		t.Reset(d)
	}
}

func (a *App) tick(ctx context.Context) {
	s, _ := a.sess.current()
	gen := a.rep.gen()
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
	a.report(s, snap, timedOut, gen)
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
// reports; the oldest are dropped and counted.
func (a *App) report(s *session, snap *collector.Snapshot, timedOut *agentproto.Problem, gen uint64) {
	if !a.rep.queue(gen, func(iv intervals) agentproto.ReportRequest { return a.buildReport(iv, snap, timedOut) }) {
		return
	}
	for {
		req, ok := a.rep.oldest(s)
		if !ok {
			return
		}
		rctx, cancel := context.WithTimeout(s.ctx, a.opts.HTTPTimeout)
		resp, err := s.ecp.Report(rctx, req)
		cancel()
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
