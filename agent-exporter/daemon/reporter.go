package daemon

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
)

// reporter is the collection loop's schedule and its reports to ecp, under
// one mutex: the interval in force (intervals), the reports waiting for
// ecp with their backoff (reports), and the session they belong to, so a
// flush of an ended session stops and its replies no longer pop the next
// session's queue. It counts what it sends, drops and keeps. It does not
// send: App.report takes the oldest report, sends it and tells the
// outcome.
type reporter struct {
	now func() time.Time
	log *slog.Logger

	sent, failures, dropped prometheus.Counter
	buffered                prometheus.Gauge

	mu    sync.Mutex
	owner *session // whose reports rep holds; nil between sessions
	iv    intervals
	rep   reports
	// sending: the oldest report is on its way to ecp. It stays queued
	// until ecp answers (a held report's answer comes just before the next
	// tick) but no longer waits, so buffered does not count it.
	sending bool
}

func newReporter(opts Options) *reporter {
	f := promauto.With(opts.Registerer)
	return &reporter{
		now: opts.Now,
		log: opts.Logger,
		iv:  intervals{flag: opts.CollectInterval, follow: opts.FollowECPInterval, current: opts.CollectInterval},
		rep: reports{limit: opts.ReportBuffer, backoff: backoff.Backoff{Base: opts.BackoffBase, Max: opts.BackoffMax}},
		sent: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_reports_sent_total", Help: "Reports ecp accepted.",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_report_failures_total", Help: "Report attempts that failed (ecp unreachable, refused, rate limited).",
		}),
		dropped: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_reports_dropped_total", Help: "Reports dropped unsent because the buffer was full while ecp was unreachable.",
		}),
		buffered: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_reports_buffered", Help: "Reports waiting to be sent to ecp.",
		}),
	}
}

// start begins the reports of s: an empty queue, its first report where
// ecp placed it, and the interval ecp gave at registration.
func (r *reporter) start(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.owner = s
	r.rep.start(r.now(), s.firstReport)
	if s.reg.ReportInterval > 0 {
		r.iv.ecp = s.reg.ReportInterval
		r.iv.pick(r.log)
	}
	r.sending = false
	r.buffered.Set(0)
}

// stop drops the reports of s, when they are the ones held.
func (r *reporter) stop(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner != s {
		return
	}
	r.owner = nil
	r.rep.queue = nil
	r.sending = false
	r.buffered.Set(0)
}

// interval is the collection interval in force.
func (r *reporter) interval() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.iv.current
}

// setFileInterval takes the configuration file's interval (0: unset).
func (r *reporter) setFileInterval(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.iv.file = d
	r.iv.pick(r.log)
}

// nextTickAt is when the tick after one that started at start is due: an
// interval later, or sooner when the first report ecp placed in the
// interval is due sooner: that tick then reports, and the ticks after it
// keep its place.
func (r *reporter) nextTickAt(start time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := start.Add(r.iv.current)
	if !r.rep.firstAt.IsZero() && r.rep.firstAt.Before(next) {
		next = r.rep.firstAt
	}
	return next
}

// backlog is how many reports of s wait to be sent.
func (r *reporter) backlog(s *session) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner != s {
		return 0
	}
	return len(r.rep.queue)
}

// gen is the count of desired states applied outside a tick, for a tick
// to say which it started after (reports.add).
func (r *reporter) gen() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep.appliedGen
}

// applied records a desired state applied outside a tick (reports.applied).
func (r *reporter) applied() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.applied()
}

// queue adds the report build makes, when one is due, and says whether it
// did. build runs under the lock with the intervals in force, which the
// report states. gen is the tick's (see gen).
func (r *reporter) queue(gen uint64, build func(iv intervals) agentproto.ReportRequest) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.rep.due(r.now()) {
		return false
	}
	if dropped := r.rep.add(build(r.iv), gen); dropped > 0 {
		r.dropped.Add(float64(dropped))
	}
	r.setBufferedLocked()
	return true
}

// send marks the oldest report of s as on its way to ecp, until delivered
// or failed.
func (r *reporter) send(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner == s && len(r.rep.queue) > 0 {
		r.sending = true
		r.setBufferedLocked()
	}
}

// waitingLocked is how many reports wait to be sent.
func (r *reporter) waitingLocked() int {
	if r.sending {
		return len(r.rep.queue) - 1
	}
	return len(r.rep.queue)
}

func (r *reporter) setBufferedLocked() { r.buffered.Set(float64(r.waitingLocked())) }

// oldest is the next report of s to send. When there is none, or s is no
// longer the session reported for, the flush ends and the next report is
// due an interval of ecp's after start, when the tick began (not when the
// flush ended: a held report ends just before the next tick).
func (r *reporter) oldest(s *session, start time.Time) (agentproto.ReportRequest, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.owner != s || len(r.rep.queue) == 0 {
		r.rep.next = start.Add(r.iv.reportEvery())
		return agentproto.ReportRequest{}, false
	}
	return r.rep.queue[0], true
}

// failed records a failed send (err) and returns how long until the next
// try and how many reports wait.
func (r *reporter) failed(err error) (time.Duration, int) {
	r.failures.Inc()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sending = false
	r.setBufferedLocked()
	return r.rep.failed(r.now(), err), len(r.rep.queue)
}

// delivered records that ecp took the oldest report of s and answered with
// its report interval (0: none given). Inside a tick: the collect loop
// re-arms with a new interval as soon as the tick ends.
func (r *reporter) delivered(s *session, ecpInterval time.Duration) {
	r.sent.Inc()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rep.delivered(r.now(), r.owner == s)
	r.sending = false
	r.setBufferedLocked()
	if ecpInterval > 0 {
		r.iv.ecp = ecpInterval
		r.iv.pick(r.log)
	}
}

// status is what `agent-exporter status` shows of the reports.
func (r *reporter) status() (lastAt time.Time, lastErr string, buffered int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep.lastAt, r.rep.lastErr, r.waitingLocked()
}
