package fleet

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/longpoll"
)

// handleDesired is the desired-state long-poll. It answers at once when the
// desired revision is newer than ?after=, else waits on the cluster's
// change channel (fed by the one shared watch) until it is, and answers 204
// when ?timeout= passes first. A deleted entry or a revoked credential is a
// change too: the reply then says unregister. Package longpoll holds the
// waiting poll (on HTTP/1.1 without its connection's goroutine and buffers).
func (f *Fleet) handleDesired(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	p, err := f.authenticate(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var after int64
	if v := q.Get(agentproto.QueryAfter); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return httpapi.Invalid(agentproto.QueryAfter, "%s must be a revision: a non-negative integer", agentproto.QueryAfter)
		}
	}
	wait := DefaultDesiredWait
	if v := q.Get(agentproto.QueryTimeout); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			return httpapi.Invalid(agentproto.QueryTimeout, "%s must be a Go duration such as 30s", agentproto.QueryTimeout)
		}
		wait = min(wait, agentproto.MaxDesiredWait)
	}
	if err := f.admitWaiter(); err != nil {
		return err
	}
	f.metrics.waiters.Inc()
	route := httpapi.RouteTemplate(r)
	return longpoll.Hold(w, r, longpoll.Poll{
		Deadline: start.Add(wait),
		Stop:     f.stopping,
		Check: func() (any, <-chan struct{}) {
			f.mu.Lock()
			defer f.mu.Unlock()
			e := f.entryLocked(p.clusterID)
			if d := desiredLocked(e, p.credHash); d.Revision > after {
				return d, nil
			}
			f.announceLocked()
			return nil, e.changed
		},
		Answered: func(status int, tookOver bool) {
			if tookOver {
				// httpapi.Handle did not see this answer.
				f.adapter.Observe(route, http.MethodGet, status, time.Since(start))
			}
			f.metrics.waiters.Dec()
			f.releaseWaiter()
		},
	})
}
