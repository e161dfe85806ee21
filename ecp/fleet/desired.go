package fleet

import (
	"net/http"
	"strconv"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// handleDesired is the desired-state long-poll. It answers at once when the
// desired revision is newer than ?after=, else waits on the cluster's
// change channel (fed by the one shared watch) until it is, and answers 204
// when ?timeout= passes first. A deleted entry or a revoked credential is a
// change too: the reply then says unregister.
func (f *Fleet) handleDesired(w http.ResponseWriter, r *http.Request) error {
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
	select {
	case f.waiters <- struct{}{}:
		defer func() { <-f.waiters }()
	default:
		f.metrics.throttled.Inc()
		return rateLimited(f.opts.RetryAfter, "too many desired-state long-polls")
	}
	f.metrics.waiters.Inc()
	defer f.metrics.waiters.Dec()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for first := true; ; first = false {
		f.mu.Lock()
		e := f.entryLocked(p.clusterID)
		d := desiredLocked(e, p.credHash)
		changed, stopping := e.changed, f.stopping
		if first && d.Revision <= after {
			f.announceLocked()
		}
		f.mu.Unlock()
		if d.Revision > after {
			return httpapi.JSON(w, http.StatusOK, d)
		}
		select {
		case <-changed:
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-stopping:
			w.WriteHeader(http.StatusNoContent)
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}
