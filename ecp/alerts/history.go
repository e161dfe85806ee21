// History: the list of ended alerts is searched through List (state=history
// with cluster, severity, rule and a time range) and cleared here by a
// project admin, by time or by count; every read and delete stays under
// the project's own history prefix, so no project reaches another's.

package alerts

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// Clearing history (DELETE /projects/{project}/alerts/history).
const (
	// MaxClearCount is the most records one clear by count removes, as
	// ECP allows: a bigger clean-up is several calls, each a bounded
	// amount of etcd work.
	MaxClearCount = 50000
	// MaxRuleFilter bounds the rule (alert name) filter of the list.
	MaxRuleFilter = 200
	// clearBatch is the records deleted per etcd transaction: two
	// operations each (the record and its id index), under etcd's
	// default limit of 128 operations per transaction.
	clearBatch = 64
)

// ClearReply is the reply of a history clear: how many records went.
type ClearReply struct {
	Deleted int `json:"deleted"`
}

func (s *Service) clearHistory(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	out, err := s.ClearHistory(r.Context(), ac, mux.Vars(r)["project"], v.Get("before"), v.Get("count"))
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, out)
}

// ClearHistory removes project's history records that ended before
// before (an RFC 3339 time), or the count oldest by end time (1 to
// MaxClearCount); exactly one of the two is given. 404 when the caller
// cannot see the project, 403 when they may only see it. Only this
// project's history is read and deleted.
func (s *Service) ClearHistory(ctx context.Context, ac *tenancy.Access, project, before, count string) (ClearReply, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.Admin, "")
	if err != nil {
		return ClearReply{}, err
	}
	var (
		cutoff time.Time
		n      int
	)
	switch {
	case (before == "") == (count == ""):
		return ClearReply{}, httpapi.Invalid("before", "give exactly one of before (an RFC 3339 time: history that ended before it goes) or count (the oldest records to remove, 1 to %d)", MaxClearCount)
	case before != "":
		if cutoff, err = time.Parse(time.RFC3339, before); err != nil {
			return ClearReply{}, httpapi.Invalid("before", "before must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", before)
		}
	default:
		if n, err = strconv.Atoi(count); err != nil || n < 1 || n > MaxClearCount {
			return ClearReply{}, httpapi.Invalid("count", "count must be a whole number from 1 to %d, got %q", MaxClearCount, count)
		}
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "alert-history/" + p.ID})
	all, err := kv.List[Alert](ctx, s.cli, historyPrefix+p.ID+"/")
	if err != nil {
		return ClearReply{}, err
	}
	slices.SortFunc(all, func(a, b Alert) int {
		if c := endOf(a).Compare(endOf(b)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var doomed []Alert
	if n > 0 {
		doomed = all[:min(n, len(all))]
	} else {
		i, _ := slices.BinarySearchFunc(all, cutoff, func(a Alert, t time.Time) int { return endOf(a).Compare(t) })
		doomed = all[:i]
	}
	deleted := 0
	for batch := range slices.Chunk(doomed, clearBatch) {
		ops := make([]clientv3.Op, 0, 2*len(batch))
		for _, a := range batch {
			ops = append(ops, clientv3.OpDelete(historyKey(p.ID, a.ID)), clientv3.OpDelete(idsPrefix+a.ID))
		}
		cctx, cancel := kv.WithTimeout(ctx)
		resp, err := s.cli.Txn(cctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return ClearReply{Deleted: deleted}, fmt.Errorf("clear alert history of %s: %w", p.ID, err)
		}
		for i := 0; i < len(resp.Responses); i += 2 {
			deleted += int(resp.Responses[i].GetResponseDeleteRange().Deleted)
		}
	}
	return ClearReply{Deleted: deleted}, nil
}

// endOf is when a history record ended; a record without an end (never
// stored so) sorts first.
func endOf(a Alert) time.Time {
	if a.EndsAt == nil {
		return time.Time{}
	}
	return *a.EndsAt
}
