package fleet

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/longpoll"
)

// pollQuery is what a long-poll asks: the revision the agent holds
// (?after=) and how long to wait for a newer one (?timeout=).
type pollQuery struct {
	after int64
	wait  time.Duration
	// timed says ?timeout= was given: a report asks to be held with it.
	timed bool
}

// readPollQuery reads and checks a long-poll's query, the same for the
// desired-state poll and a held report (agentproto.HeaderReportHeld).
func readPollQuery(r *http.Request) (pollQuery, error) {
	q := pollQuery{wait: DefaultDesiredWait}
	var err error
	if v := queryValue(r.URL.RawQuery, agentproto.QueryAfter); v != "" {
		if q.after, err = strconv.ParseInt(v, 10, 64); err != nil || q.after < 0 {
			return q, httpapi.Invalid(agentproto.QueryAfter, "%s must be a revision: a non-negative integer", agentproto.QueryAfter)
		}
	}
	if v := queryValue(r.URL.RawQuery, agentproto.QueryTimeout); v != "" {
		if q.wait, err = time.ParseDuration(v); err != nil || q.wait < 0 {
			return q, httpapi.Invalid(agentproto.QueryTimeout, "%s must be a Go duration such as 30s", agentproto.QueryTimeout)
		}
		q.wait, q.timed = min(q.wait, agentproto.MaxDesiredWait), true
	}
	return q, nil
}

// maxQueryParams is url.ParseQuery's limit: a query with more parameters
// has none.
const maxQueryParams = 10000

// queryValue is r.URL.Query().Get(key) for the raw query raw, read in place:
// building url.Values for two parameters was a map and a slice per value on
// every report. The rules are url.ParseQuery's (TestQueryValueAsURLQuery):
// pairs split at "&", one holding ";" or failing to unescape is skipped,
// the first value given for key wins, and a query of more than
// maxQueryParams parameters has none.
func queryValue(raw, key string) string {
	if strings.Count(raw, "&") >= maxQueryParams {
		return ""
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		// QueryUnescape returns a string without escapes as it is.
		k, err := url.QueryUnescape(k)
		if err != nil || k != key {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// handleDesired is the desired-state long-poll. It answers at once when the
// desired revision is newer than ?after=, else waits on the cluster's
// change channel (fed by the one shared watch) until it is, and answers 204
// when ?timeout= passes first. A deleted entry or a revoked credential is a
// change too: the reply then says unregister.
func (f *Fleet) handleDesired(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	p, err := f.authenticate(r)
	if err != nil {
		return err
	}
	q, err := readPollQuery(r)
	if err != nil {
		return err
	}
	if err := f.admitWaiter(); err != nil {
		return err
	}
	return f.holdDesired(w, r, &heldPoll{f: f, p: p, q: q, start: start, route: agentproto.PathDesired})
}

// heldPoll is one long-poll holdDesired holds, for p's desired state
// newer than q.after: what its Check, Final and Answered need, in one
// allocation instead of a closure each on every report.
type heldPoll struct {
	f     *Fleet
	p     principal
	q     pollQuery
	start time.Time
	// report says it is a held report: the reply is the report's
	// (agentproto.ReportResponse with interval), also at the deadline;
	// a desired-state poll answers the desired state, or 204.
	report   bool
	interval int
	// route and method label its latency when the connection was taken
	// over: route is the template Register mounts the poll's route with.
	route, method string
}

// holdDesired holds r as the long-poll h, the one way both the
// desired-state poll and a held report wait: the reply once the desired
// state is newer than h.q.after, and at h.q.wait or when the replica stops
// the final reply (a held report's) or 204. The caller has taken a
// MaxWaiters place (admitWaiter); holdDesired gives it back when the poll
// is answered. Package longpoll holds the waiting poll (on HTTP/1.1
// without its connection's goroutine and buffers).
func (f *Fleet) holdDesired(w http.ResponseWriter, r *http.Request, h *heldPoll) error {
	f.metrics.waiters.Inc()
	h.method = r.Method
	poll := longpoll.Poll{Deadline: h.start.Add(h.q.wait), Stop: f.stopping, Check: h.check, Answered: h.answered}
	if h.report {
		poll.Final = h.final
	}
	return longpoll.Hold(w, r, poll)
}

func (h *heldPoll) reply(d agentproto.DesiredState) any {
	if h.report {
		return agentproto.ReportResponse{ReportIntervalSeconds: h.interval, Desired: d}
	}
	return d
}

func (h *heldPoll) check() (any, context.Context) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	e := h.f.entryLocked(h.p.clusterID)
	if d := desiredLocked(e, h.p.credHash); d.Revision > h.q.after {
		return h.reply(d), nil
	}
	h.f.announceLocked()
	return nil, e.changed
}

func (h *heldPoll) final() any {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.reply(desiredLocked(h.f.entryLocked(h.p.clusterID), h.p.credHash))
}

func (h *heldPoll) answered(status int, tookOver bool) {
	if tookOver {
		// httpapi.Handle did not see this answer.
		h.f.adapter.Observe(h.route, h.method, status, time.Since(h.start))
	}
	h.f.metrics.waiters.Dec()
	h.f.releaseWaiter()
}
