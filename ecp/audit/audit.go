// Package audit records every state-changing API call (who, what, on which
// tenant, when, with what outcome) in etcd, and serves the log to admins at
// GET /api/v1/audit.
//
// Records are written by one middleware around the API router, from the
// request line, the route template and what handlers annotate, never from
// request bodies, so passwords and tokens cannot reach the log.
//
// The log is bounded, since anyone may cause a record (a failed login is
// one): every field is cut to MaxFieldBytes (and the record marked
// truncated), so a record takes at most MaxRecordBytes; records expire after
// the retention, and beyond MaxRecords the oldest are removed first.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
)

// Prefix is the etcd prefix of audit records; keys sort by time.
const Prefix = "/ecp/audit/"

// Record is one audited call.
type Record struct {
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Actor is the username that made the call, or "" when anonymous.
	Actor string `json:"actor"`
	// Via says how the actor authenticated: "session", "api-token" or "".
	Via    string `json:"via,omitempty"`
	Method string `json:"method"`
	// Route is the route template; Path the concrete path.
	Route  string `json:"route"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	// Org, Project and Target name what the call acted on, as the handler
	// annotated it; admins of that org or project may read the record.
	Org     string `json:"org,omitempty"`
	Project string `json:"project,omitempty"`
	Target  string `json:"target,omitempty"`
	Remote  string `json:"remote,omitempty"`
	// Truncated says that a field was longer than MaxFieldBytes and was
	// cut (its value then ends with "…").
	Truncated bool `json:"truncated,omitempty"`
}

// MaxFieldBytes bounds what each field of a record takes in its stored
// JSON: a typed username or a path is caller input of any length.
const MaxFieldBytes = 128

// MaxRecordBytes bounds a stored record: its nine string fields at
// MaxFieldBytes each, plus id, time, status and the JSON around them.
const MaxRecordBytes = 2 << 10

// Note is what a handler adds to the record of the call it serves.
type Note struct {
	Actor   string
	Org     string
	Project string
	Target  string
	// Read asks for a record of a GET, which is otherwise not audited.
	Read bool
}

type noteKey struct{}

type noteBox struct {
	mu sync.Mutex
	n  Note
}

// Annotate adds n's non-empty fields to the record of the call served with
// ctx. Outside an audited call it does nothing.
func Annotate(ctx context.Context, n Note) {
	box, ok := ctx.Value(noteKey{}).(*noteBox)
	if !ok {
		return
	}
	box.mu.Lock()
	defer box.mu.Unlock()
	if n.Actor != "" {
		box.n.Actor = n.Actor
	}
	if n.Org != "" {
		box.n.Org = n.Org
	}
	if n.Project != "" {
		box.n.Project = n.Project
	}
	if n.Target != "" {
		box.n.Target = n.Target
	}
	if n.Read {
		box.n.Read = true
	}
}

// Actor reports who makes a request and how they authenticated.
type Actor func(r *http.Request) (username, via string)

// DefaultRetention is how long records are kept.
const DefaultRetention = 90 * 24 * time.Hour

// DefaultMaxRecords is how many records are kept at most: with records of
// at most MaxRecordBytes (about 300 bytes is usual) the log takes at most
// 200 MiB of etcd, typically 30 MiB.
const DefaultMaxRecords = 100_000

// trimInterval is how often a replica counts the records against the
// budget, besides after every hundredth of the budget it wrote itself.
const trimInterval = time.Minute

// trimBatch bounds the keys read and deleted by one call of a trim.
const trimBatch = 1000

// Options bound the log.
type Options struct {
	// Retention is how long records are kept (forever when zero).
	Retention time.Duration
	// MaxRecords is how many records are kept at most, the oldest removed
	// first (no limit when zero).
	MaxRecords int
}

// Log writes and reads audit records.
type Log struct {
	cli        *clientv3.Client
	logger     *slog.Logger
	now        func() time.Time
	retention  time.Duration
	maxRecords int64
	// trimEvery local writes wake the trim loop through trimNow, so a burst
	// is trimmed before the next tick.
	trimEvery int64
	written   atomic.Int64
	trimNow   chan struct{}

	// Records of one hour share one lease of retention+1h, so etcd drops
	// them by itself once they are old enough, without a lease per record
	// or a cleanup scan.
	leaseMu     sync.Mutex
	leaseBucket int64
	leaseID     clientv3.LeaseID
	// writes counts records by outcome, so a failing audit trail is
	// visible on /metrics rather than only in logs.
	writes *prometheus.CounterVec
	// records, trimmed and truncated show the budget at work.
	records   prometheus.Gauge
	trimmed   prometheus.Counter
	truncated prometheus.Counter
}

// New returns a Log on cli bounded by opts; its metrics are registered on
// reg. Run keeps it within opts.MaxRecords.
func New(cli *clientv3.Client, logger *slog.Logger, reg prometheus.Registerer, opts Options) *Log {
	f := promauto.With(reg)
	l := &Log{
		cli:        cli,
		logger:     logger,
		now:        time.Now,
		retention:  opts.Retention,
		maxRecords: int64(opts.MaxRecords),
		trimEvery:  max(int64(opts.MaxRecords)/100, 1),
		trimNow:    make(chan struct{}, 1),
		writes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_audit_records_written_total",
			Help: "Audit records written to etcd, by result (ok or error).",
		}, []string{"result"}),
		records: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_audit_records",
			Help: "Audit records in etcd when this replica last counted them against --audit.max-records.",
		}),
		trimmed: f.NewCounter(prometheus.CounterOpts{
			Name: "ecp_audit_records_trimmed_total",
			Help: "Oldest audit records this replica removed to keep the log within --audit.max-records.",
		}),
		truncated: f.NewCounter(prometheus.CounterOpts{
			Name: "ecp_audit_records_truncated_total",
			Help: "Audit records written with a field cut to its maximum length.",
		}),
	}
	l.writes.WithLabelValues("ok")
	l.writes.WithLabelValues("error")
	return l
}

// Middleware records every call whose method changes state (anything but
// GET, HEAD and OPTIONS) after it was served, whatever its outcome: refused
// and failed attempts are exactly what an auditor looks for.
func (l *Log) Middleware(actor Actor) mux.MiddlewareFunc {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			box := &noteBox{}
			sw := httpapi.NewStatusWriter(w)
			r = r.WithContext(context.WithValue(r.Context(), noteKey{}, box))
			next.ServeHTTP(sw, r)
			// A refusal of a body the client only offered (Expect:
			// 100-continue, as curl does for large uploads) leaves before
			// the record is written: held back behind the etcd write, the
			// client went on to send the body and met a reset connection
			// instead of the 415 or 413. Every other reply still follows
			// its record, so a caller who reads the audit log next sees it.
			if sw.Status() >= http.StatusBadRequest && r.Header.Get("Expect") != "" && !sw.Hijacked() {
				sw.Flush()
			}
			box.mu.Lock()
			n := box.n
			box.mu.Unlock()
			switch r.Method {
			case http.MethodGet, http.MethodHead, http.MethodOptions:
				// Reads are audited only when the handler asks (the
				// dashboard jump hands out a login).
				if !n.Read {
					return
				}
			}
			username, via := actor(r)
			if username == "" {
				username = n.Actor
			}
			status := sw.Status()
			if status == 0 {
				status = http.StatusOK
			}
			rec := Record{
				Actor: username, Via: via, Method: r.Method,
				Route: httpapi.RouteTemplate(r), Path: r.URL.Path, Status: status,
				Org: n.Org, Project: n.Project, Target: n.Target, Remote: remoteHost(r.RemoteAddr),
			}
			// The reply is already sent; the record must still be written
			// even if the client hung up, hence a context detached from it.
			if err := l.Write(context.WithoutCancel(r.Context()), rec); err != nil {
				l.logger.Error("write audit record", "route", rec.Route, "actor", rec.Actor, "err", err)
			}
		})
	}
}

// Write stores rec, stamping its time and id and cutting every field to
// MaxFieldBytes.
func (l *Log) Write(ctx context.Context, rec Record) error {
	rec.Time = l.now().UTC()
	// Zero-padded nanoseconds sort lexically by time; the random suffix
	// keeps records of two replicas in the same nanosecond apart.
	rec.ID = fmt.Sprintf("%020d-%s", rec.Time.UnixNano(), kv.NewID()[:8])
	for _, f := range []*string{&rec.Actor, &rec.Via, &rec.Method, &rec.Route, &rec.Path, &rec.Org, &rec.Project, &rec.Target, &rec.Remote} {
		var cut bool
		if *f, cut = capField(*f, MaxFieldBytes); cut {
			rec.Truncated = true
		}
	}
	if rec.Truncated {
		l.truncated.Inc()
	}
	val, err := kv.Encode(Prefix+rec.ID, rec)
	if err == nil {
		ctx, cancel := kv.WithTimeout(ctx)
		defer cancel()
		err = l.put(ctx, Prefix+rec.ID, val, rec.Time)
	}
	if err != nil {
		l.writes.WithLabelValues("error").Inc()
		return fmt.Errorf("write audit record: %w", err)
	}
	l.writes.WithLabelValues("ok").Inc()
	if l.maxRecords > 0 && l.written.Add(1)%l.trimEvery == 0 {
		select {
		case l.trimNow <- struct{}{}:
		default: // A trim is due already.
		}
	}
	return nil
}

// ellipsis ends a cut field.
const ellipsis = "…"

// capField cuts s, on a character boundary, so that its JSON encoding
// takes at most limit bytes, ellipsis included; it reports whether it cut.
// Each character is counted at what encoding/json makes of it at worst, so
// control characters and invalid bytes cannot make a capped field longer.
func capField(s string, limit int) (string, bool) {
	if len(s)*6 <= limit {
		return s, false // Short enough even if every byte were escaped.
	}
	cost, cut := 0, 0
	for i, r := range s {
		if cost <= limit-len(ellipsis) {
			cut = i // The longest prefix that leaves room for the ellipsis.
		}
		switch {
		case r < 0x20, r == '<', r == '>', r == '&', r == '\u2028', r == '\u2029', r == utf8.RuneError:
			cost += 6 // \u00XX, or \ufffd for an invalid byte
		case r == '"', r == '\\':
			cost += 2
		default:
			cost += utf8.RuneLen(r)
		}
		if cost > limit {
			return s[:cut] + ellipsis, true
		}
	}
	return s, false
}

// Run keeps the log within MaxRecords until ctx ends: it counts the records
// every minute, and sooner after this replica wrote a hundredth of the
// budget, and removes the oldest beyond it. Counting is etcd's (one count
// query), never a scan per request.
func (l *Log) Run(ctx context.Context) error {
	if l.maxRecords <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(trimInterval)
	defer t.Stop()
	for {
		if err := l.Trim(ctx); err != nil && ctx.Err() == nil {
			l.logger.Warn("trim audit log", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-l.trimNow:
		}
	}
}

// Trim removes the oldest records beyond MaxRecords. Replicas trimming at
// once read the same oldest keys and delete the same ranges.
func (l *Log) Trim(ctx context.Context) error {
	if l.maxRecords <= 0 {
		return nil
	}
	end := clientv3.GetPrefixRangeEnd(Prefix)
	cctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := l.cli.Get(cctx, Prefix, clientv3.WithRange(end), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("count audit records: %w", err)
	}
	count, rev := resp.Count, resp.Header.Revision
	from := Prefix
	for excess := count - l.maxRecords; excess > 0; {
		// Keys read at the count's revision: the oldest excess ones then,
		// whatever another replica deleted meanwhile.
		keys, err := l.cli.Get(cctx, from, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithKeysOnly(),
			clientv3.WithLimit(min(excess, trimBatch)))
		if err != nil {
			return fmt.Errorf("read oldest audit records: %w", err)
		}
		if len(keys.Kvs) == 0 {
			break
		}
		last := string(keys.Kvs[len(keys.Kvs)-1].Key) + "\x00"
		del, err := l.cli.Delete(cctx, from, clientv3.WithRange(last))
		if err != nil {
			return fmt.Errorf("delete oldest audit records: %w", err)
		}
		l.trimmed.Add(float64(del.Deleted))
		count -= del.Deleted
		excess -= int64(len(keys.Kvs))
		from = last
	}
	l.records.Set(float64(count))
	return nil
}

func (l *Log) put(ctx context.Context, key, val string, at time.Time) error {
	if l.retention <= 0 {
		_, err := l.cli.Put(ctx, key, val)
		return err
	}
	for attempt := 0; ; attempt++ {
		lease, err := l.lease(ctx, at)
		if err != nil {
			return err
		}
		_, err = l.cli.Put(ctx, key, val, clientv3.WithLease(lease))
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			// Revoked or expired behind our back: take a new one.
			l.leaseMu.Lock()
			l.leaseID = 0
			l.leaseMu.Unlock()
			continue
		}
		return err
	}
}

func (l *Log) lease(ctx context.Context, at time.Time) (clientv3.LeaseID, error) {
	bucket := at.Unix() / 3600
	l.leaseMu.Lock()
	defer l.leaseMu.Unlock()
	if l.leaseID != 0 && l.leaseBucket == bucket {
		return l.leaseID, nil
	}
	resp, err := l.cli.Grant(ctx, int64((l.retention+time.Hour)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant audit lease: %w", err)
	}
	l.leaseID, l.leaseBucket = resp.ID, bucket
	return resp.ID, nil
}

// Filter selects records.
type Filter struct {
	// Limit is the most records returned, newest first.
	Limit int
	// Visible, when set, keeps only the records it returns true for.
	Visible func(Record) bool
}

// List returns the newest records that pass f, newest first. It reads in
// pages so a long log with few visible records still answers.
func (l *Log) List(ctx context.Context, f Filter) ([]Record, error) {
	const page = 500
	var out []Record
	end := clientv3.GetPrefixRangeEnd(Prefix)
	for len(out) < f.Limit {
		cctx, cancel := kv.WithTimeout(ctx)
		resp, err := l.cli.Get(cctx, Prefix, clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(page))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list audit records: %w", err)
		}
		for _, item := range resp.Kvs {
			var rec Record
			if err := jsonUnmarshal(item.Value, &rec); err != nil {
				return nil, fmt.Errorf("decode audit record %s: %w", item.Key, err)
			}
			if f.Visible == nil || f.Visible(rec) {
				out = append(out, rec)
				if len(out) == f.Limit {
					break
				}
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key)
	}
	return out, nil
}

// ParseLimit reads ?limit= (default 100, 1..1000).
func ParseLimit(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, httpapi.Invalid("limit", "limit must be an integer from 1 to 1000, got %q", s)
	}
	return n, nil
}

func remoteHost(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i > 0 {
		return strings.Trim(addr[:i], "[]")
	}
	return addr
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Scope decides, for the caller of r, which records they may read. It
// returns an *httpapi.Error (401, 403) when they may read none.
type Scope func(r *http.Request) (func(Record) bool, error)

// Register mounts GET /audit on r (the /api/v1 router).
func (l *Log) Register(r *mux.Router, a *httpapi.Adapter, scope Scope) {
	r.Handle("/audit", a.Handle(func(w http.ResponseWriter, req *http.Request) error {
		visible, err := scope(req)
		if err != nil {
			return err
		}
		limit, err := ParseLimit(req)
		if err != nil {
			return err
		}
		recs, err := l.List(req.Context(), Filter{Limit: limit, Visible: visible})
		if err != nil {
			return err
		}
		return httpapi.List(w, recs)
	})).Methods(http.MethodGet)
}
