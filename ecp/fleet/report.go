package fleet

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// startedAtSlack absorbs the jitter of "now - uptime" between reports, so
// that only a real restart of the longest-running node is a change worth
// writing.
const startedAtSlack = time.Minute

const (
	maxProblemCode    = 64
	maxProblemMessage = 1024
)

func validateReport(req *agentproto.ReportRequest) error {
	if p := req.EMQX.Problem; p != nil {
		if p.Code == "" || len(p.Code) > maxProblemCode {
			return httpapi.Invalid("emqx.problem.code", "emqx.problem.code must be a code of 1 to %d bytes, such as %s", maxProblemCode, agentproto.ProblemEMQXUnreachable)
		}
		for _, c := range p.Code {
			if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
				return httpapi.Invalid("emqx.problem.code", "emqx.problem.code must be letters and digits, such as %s", agentproto.ProblemEMQXUnreachable)
			}
		}
		if len(p.Message) > maxProblemMessage {
			return httpapi.Invalid("emqx.problem.message", "emqx.problem.message must be at most %d bytes", maxProblemMessage)
		}
	}
	if n := req.IntervalSeconds; n != 0 && (n < int(agentproto.MinAgentInterval/time.Second) || n > int(agentproto.MaxAgentInterval/time.Second)) {
		return httpapi.Invalid("intervalSeconds", "intervalSeconds must be %d to %d (seconds), got %d",
			int(agentproto.MinAgentInterval/time.Second), int(agentproto.MaxAgentInterval/time.Second), n)
	}
	if err := validateIdentity("emqx.clusterName", "emqx.nodes", req.EMQX.ClusterName, nil); err != nil {
		return err
	}
	if len(req.EMQX.Nodes) > maxIdentityNodes {
		return httpapi.Invalid("emqx.nodes", "emqx.nodes must list at most %d nodes", maxIdentityNodes)
	}
	for _, n := range req.EMQX.Nodes {
		if err := checkLen("emqx.nodes.name", n.Name, maxIdentityField); err != nil {
			return err
		}
	}
	// The version is stored and shown: the agent does not get to size it.
	if err := checkLen("emqx.version", req.EMQX.Version, maxShortField); err != nil {
		return err
	}
	return checkLen("agentVersion", req.AgentVersion, maxShortField)
}

// handleReport records a report (recordReport) and answers it with the
// desired state: at once, or, when it asks to be held (?timeout=, see
// agentproto.HeaderReportHeld), once the desired state is newer than
// ?after= or at the timeout, as the desired-state long-poll would, so that
// the agent needs one request per interval. The hold never delays the
// recording, and a refused report is answered at once.
func (f *Fleet) handleReport(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	q, err := readPollQuery(r)
	if err != nil {
		return err
	}
	if err := f.enter(); err != nil {
		return err
	}
	p, out, err := f.recordReport(r)
	// The report is recorded: a hold counts against MaxWaiters, not the
	// reports in flight.
	f.leave()
	if err != nil {
		return err
	}
	if !q.timed || !f.tryWaiter() {
		// Unheld, or every long-poll place is taken: the reply at once
		// without HeaderReportHeld, and the agent's desired-state poll
		// meets the 429 a poll gets then.
		return httpapi.JSON(w, http.StatusOK, out)
	}
	h := w.Header()
	h.Set(agentproto.HeaderReportHeld, agentproto.ReportHeld)
	var timing [32]byte
	h.Set(agentproto.HeaderServerTiming, string(strconv.AppendFloat(append(timing[:0], "record;dur="...),
		time.Since(start).Seconds()*1000, 'f', 3, 64)))
	return f.holdDesired(w, r, &heldPoll{f: f, p: p, q: q, start: start, route: agentproto.PathReport,
		report: true, interval: out.ReportIntervalSeconds})
}

// recordReport records a report in memory and writes the cluster's status
// to etcd only when something an operator would see as a change happened
// (state, reason code, version, node count, start time, managed since,
// agent version). Counters and the report time stay in memory: they reach
// the other replicas through digests, never through a write per report.
// It returns the reply to send now.
func (f *Fleet) recordReport(r *http.Request) (principal, agentproto.ReportResponse, error) {
	var out agentproto.ReportResponse
	p, err := f.authenticate(r)
	if err != nil {
		return p, out, err
	}
	req := newReportRequest()
	// Nothing keeps req past this call (ReportObserver copies what it
	// keeps): the next report reuses it.
	defer reuseReportRequest(req)
	if err := decodeReport(r, req); err != nil {
		return p, out, err
	}
	if err := validateReport(req); err != nil {
		return p, out, err
	}
	// Before anything is recorded: a cluster another entry holds makes this
	// entry abnormal and its agent hold (identity.go).
	held, err := f.checkReportedIdentity(r.Context(), p, &req.EMQX)
	if errors.Is(err, errNotBound) {
		return p, out, revoked()
	}
	if err != nil {
		return p, out, err
	}
	now := f.now()
	f.metrics.reports.Inc()
	f.mu.Lock()
	e := f.entries[p.clusterID]
	if e == nil || !e.bound(p.credHash) {
		f.mu.Unlock()
		return p, out, revoked()
	}
	l := live{BindRev: e.bindRev, At: now, Connections: req.EMQX.Connections, LiveConnections: req.EMQX.LiveConnections,
		MaxConnections: req.EMQX.MaxConnections, Nodes: len(req.EMQX.Nodes), Version: req.EMQX.Version, AgentVersion: req.AgentVersion}
	for _, n := range req.EMQX.Nodes {
		if n.Status == "running" {
			l.NodesRunning++
		}
	}
	e.live = l
	f.heardLocalLocked(e)
	f.heardLocked(e, now)
	_, changed := nextStatus(e.status, req, held, f.opts.ReportInterval, now)
	f.mu.Unlock()

	if changed {
		err := f.updateStatus(r.Context(), p.clusterID, "report", []clientv3.Cmp{bindCmp(p.clusterID, p.bindRev)},
			func(e *entry) (statusRecord, error) {
				if e.bindRev != p.bindRev || !e.hasAgent {
					return statusRecord{}, errNotBound
				}
				next, changed := nextStatus(e.status, req, held, f.opts.ReportInterval, now)
				if !changed {
					return statusRecord{}, errNoChange
				}
				return next, nil
			})
		if errors.Is(err, errNotBound) {
			return p, out, revoked()
		}
		if err != nil {
			return p, out, fmt.Errorf("record report of cluster %s: %w", p.clusterID, err)
		}
	}
	f.mu.Lock()
	out = agentproto.ReportResponse{ReportIntervalSeconds: f.intervalSeconds(), Desired: desiredLocked(f.entries[p.clusterID], p.credHash)}
	observe := f.observe
	f.mu.Unlock()
	if observe != nil {
		observe(p.clusterID, req)
	}
	return p, out, nil
}

// nextStatus derives the status a report implies from the current one and
// says whether it differs in anything worth a write. held is the outcome of
// the identity check (not Checked: the report said nothing about identity,
// so the hold stays as it was). interval is ecp's report interval, which
// the alert rules' windows are built for.
func nextStatus(cur statusRecord, req *agentproto.ReportRequest, held heldBy, interval time.Duration, now time.Time) (statusRecord, bool) {
	next := cur
	if held.Checked {
		next.HeldBy = held.ClusterID
	}
	next.AgentIntervalSeconds = req.IntervalSeconds
	next.TokenHash, next.TokenLease, next.TokenExpiresAt = "", 0, time.Time{}
	if req.AgentVersion != "" {
		next.AgentVersion = req.AgentVersion
	}
	em := req.EMQX
	if em.Reachable {
		next.Version = em.Version
		next.Nodes = len(em.Nodes)
		if d := em.StartedAt.Sub(cur.StartedAt); !em.StartedAt.IsZero() && (d > startedAtSlack || d < -startedAtSlack) {
			next.StartedAt = em.StartedAt
		}
		if next.ManagedSince.IsZero() {
			next.ManagedSince = now
		}
	}
	var code, msg string
	switch {
	case em.Problem != nil:
		code, msg = em.Problem.Code, em.Problem.Message
	case !em.Reachable:
		code, msg = agentproto.ProblemEMQXUnreachable, "the agent could not reach the EMQX API"
	case next.HeldBy != "":
		code, msg = ReasonClusterManagedElsewhere, "the EMQX cluster is managed by another entry; this entry's agent does not enforce on it"
		if held.Message != "" {
			msg = held.Message
		}
	case req.IntervalPinned && time.Duration(req.IntervalSeconds)*time.Second > interval:
		// A rule-failure alert needs two samples within two of ecp's
		// intervals; a slower agent would never fire it, and saying so
		// beats a silent promise. An agent that follows ecp is only
		// catching up with a change of ecp's interval.
		code, msg = ReasonAgentIntervalTooLong, fmt.Sprintf("the agent collects every %ds, slower than ecp's report interval of %s "+
			"that the alert rules are built for, so failing rules may never alert; start the agent without --collect.interval "+
			"(and without collectInterval in its configuration file) to follow ecp, or pin at most %s",
			req.IntervalSeconds, interval, interval)
	}
	if code == "" {
		next.State, next.Reason = StateRunning, nil
	} else {
		next.State = StateAbnormal
		// Only the code decides: a message that varies between reports
		// (an error text with a port, a time) must not cost a write each.
		if cur.State != StateAbnormal || reasonCode(cur.Reason) != code {
			next.Reason = &Reason{Code: code, Message: msg, Since: now}
		}
	}
	changed := next.State != cur.State || reasonCode(next.Reason) != reasonCode(cur.Reason) ||
		next.Version != cur.Version || next.Nodes != cur.Nodes || !next.StartedAt.Equal(cur.StartedAt) ||
		!next.ManagedSince.Equal(cur.ManagedSince) || next.AgentVersion != cur.AgentVersion ||
		next.AgentIntervalSeconds != cur.AgentIntervalSeconds || next.HeldBy != cur.HeldBy ||
		cur.TokenHash != "" || !cur.TokenExpiresAt.IsZero()
	if changed {
		next.UpdatedAt = now
	}
	return next, changed
}
