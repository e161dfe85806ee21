package logs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/logstore"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// maxRejectedLogged bounds the per-line log records of one batch.
const maxRejectedLogged = 10

// handleIngest stores one agent batch and acknowledges it only once stored.
func (a *API) handleIngest(w http.ResponseWriter, r *http.Request) error {
	cluster, project, err := a.agents(r)
	if err != nil {
		return err
	}
	if a.cfg.Load() == nil {
		a.m.batches.WithLabelValues("not_configured").Inc()
		return notConfigured(a.opts.NotConfiguredRetryAfter)
	}
	// encoding/json/v2's decoder (go-json-experiment) takes a third of
	// the CPU v1 needs for a batch: decoding is most of ecp's work per line.
	var b agentproto.LogBatch
	if err := jsonv2.UnmarshalRead(http.MaxBytesReader(w, r.Body, a.opts.MaxBatchBytes), &b, jsonv2.RejectUnknownMembers(true), jsontext.AllowInvalidUTF8(true)); err != nil {
		a.m.batches.WithLabelValues("invalid").Inc()
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return &httpapi.Error{Status: http.StatusRequestEntityTooLarge, Code: httpapi.CodeTooLarge,
				Message: "log batch is over " + strconv.FormatInt(a.opts.MaxBatchBytes, 10) + " bytes; send smaller batches"}
		}
		return httpapi.Invalid("", "log batch is not valid JSON: %v", err)
	}
	switch {
	case b.BatchID == "" || len(b.BatchID) > 128:
		a.m.batches.WithLabelValues("invalid").Inc()
		return httpapi.Invalid("batchId", "a batch id of 1 to 128 characters is required, stable across retries")
	case len(b.Lines) > a.opts.MaxBatchLines:
		a.m.batches.WithLabelValues("invalid").Inc()
		return httpapi.Invalid("lines", "at most %d lines per batch", a.opts.MaxBatchLines)
	}
	// The write outlives the agent's request: an agent killed mid-request
	// must not cut the bulk request to the store in the middle, because
	// VictoriaLogs keeps what it had read and the agent's retry of the
	// batch would store that part again. Finished, the batch is in the
	// duplicate window and the retry is acknowledged without a write.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), a.opts.WriteTimeout)
	defer cancel()
	res, err := a.writer.Write(wctx, logstore.Batch{Project: project, Cluster: cluster, BatchID: b.BatchID, Lines: b.Lines})
	if err != nil {
		return a.writeFailed(cluster, len(b.Lines), err)
	}
	outcome := "stored"
	if res.Duplicate {
		outcome = "duplicate"
	}
	a.m.batches.WithLabelValues(outcome).Inc()
	if len(res.Rejected) > 0 {
		a.m.rejected.Add(float64(len(res.Rejected)))
		for i, de := range res.Rejected {
			if i == maxRejectedLogged {
				a.logger.Warn("more log lines rejected by the store", "cluster", cluster, "batch", b.BatchID, "count", len(res.Rejected)-i)
				break
			}
			a.logger.Warn("log store rejected a line", "cluster", cluster, "batch", b.BatchID, "file", de.File, "offset", de.Offset,
				"status", de.Status, "type", de.Type, "reason", de.Reason)
		}
	}
	a.m.lines.Add(float64(res.Accepted))
	return httpapi.JSON(w, http.StatusOK, agentproto.LogBatchResponse{Accepted: res.Accepted})
}

// writeFailed turns a Writer error into backpressure for the agent: it
// keeps the lines and retries after Retry-After.
func (a *API) writeFailed(cluster string, lines int, err error) error {
	var bp *logstore.BackpressureError
	switch {
	case errors.As(err, &bp):
		a.m.batches.WithLabelValues("backpressure").Inc()
		status := http.StatusServiceUnavailable
		code := CodeStoreUnavailable
		if bp.Overloaded {
			status, code = http.StatusTooManyRequests, httpapi.CodeRateLimited
		}
		return &httpapi.Error{Status: status, Code: code, RetryAfter: max(bp.RetryAfter, time.Second),
			Message: "the log store cannot take the batch now; keep it and retry: " + bp.Err.Error()}
	case errors.Is(err, logstore.ErrNotConfigured):
		a.m.batches.WithLabelValues("not_configured").Inc()
		return notConfigured(a.opts.NotConfiguredRetryAfter)
	default:
		a.m.batches.WithLabelValues("failed").Inc()
		a.logger.Error("log store refused a batch", "cluster", cluster, "lines", lines, "err", err)
		return &httpapi.Error{Status: http.StatusServiceUnavailable, Code: CodeStoreUnavailable, RetryAfter: logstore.DefaultRetryAfter,
			Message: "the log store failed: " + err.Error()}
	}
}

// systemAdmin refuses everyone but system admins.
func systemAdmin(ac *tenancy.Access) error {
	if !ac.System {
		return httpapi.Forbidden("only a system admin may read or change the log receiver")
	}
	return nil
}

// ReceiverURL is the log store's URL, "" when none is configured: the
// notification policy keeps webhooks away from it.
func (a *API) ReceiverURL() string { return a.current().URL }

func (a *API) current() logstore.ReceiverConfig {
	if c := a.cfg.Load(); c != nil {
		return *c
	}
	return logstore.ReceiverConfig{}
}

// The receiver's service methods serve the routes below and the console
// alike, for the caller's access.

// Receiver returns the setting without its password; an empty type means
// none is configured.
func (a *API) Receiver(ac *tenancy.Access) (logstore.ReceiverConfig, error) {
	if err := systemAdmin(ac); err != nil {
		return logstore.ReceiverConfig{}, err
	}
	return a.current(), nil
}

// checkReceiver keeps the stored password when the same store and user
// are echoed back without one, and validates.
func (a *API) checkReceiver(in logstore.ReceiverConfig) (logstore.ReceiverConfig, error) {
	cfg := in.KeepPassword(a.current())
	if err := cfg.Validate(); err != nil {
		var fe *logstore.FieldError
		if errors.As(err, &fe) {
			return cfg, httpapi.Invalid(fe.Field, "%s", fe.Message)
		}
		return cfg, httpapi.Invalid("", "%v", err)
	}
	return cfg, nil
}

func testFailed(err error) error {
	return &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: CodeTestFailed, Message: "connection test failed: " + err.Error()}
}

// SetReceiver tests the new setting, stores it and applies it.
func (a *API) SetReceiver(ctx context.Context, ac *tenancy.Access, in logstore.ReceiverConfig) (logstore.ReceiverConfig, error) {
	if err := systemAdmin(ac); err != nil {
		return logstore.ReceiverConfig{}, err
	}
	cfg, err := a.checkReceiver(in)
	if err != nil {
		return cfg, err
	}
	if err := logstore.Test(ctx, cfg, a.opts.Transport); err != nil {
		return cfg, testFailed(err)
	}
	val, err := a.sealReceiver(cfg)
	if err != nil {
		return cfg, err
	}
	pctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := a.cli.Put(pctx, ReceiverKey, val)
	if err != nil {
		return cfg, err
	}
	a.apply(cfg, resp.Header.Revision)
	a.logger.Info("log receiver changed", "type", cfg.Type, "url", cfg.URL)
	return cfg, nil
}

// TestReceiver tests the setting in (with the stored password when it is
// echoed without one) or, when in is nil, the stored setting, and says
// what answered.
func (a *API) TestReceiver(ctx context.Context, ac *tenancy.Access, in *logstore.ReceiverConfig) (string, error) {
	if err := systemAdmin(ac); err != nil {
		return "", err
	}
	cfg := a.current()
	if in != nil {
		var err error
		if cfg, err = a.checkReceiver(*in); err != nil {
			return "", err
		}
	}
	if cfg == (logstore.ReceiverConfig{}) {
		return "", testFailed(logstore.ErrNotConfigured)
	}
	if err := logstore.Test(ctx, cfg, a.opts.Transport); err != nil {
		return "", testFailed(err)
	}
	return "the log store at " + cfg.URL + " answers as " + cfg.Type, nil
}

func (a *API) handleGetReceiver(w http.ResponseWriter, r *http.Request) error {
	ac, err := a.authz.Caller(r)
	if err != nil {
		return err
	}
	cfg, err := a.Receiver(ac)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, cfg)
}

// decodeReceiver reads a setting from the body of a system admin's
// request: anyone else hears 403 whatever they sent.
func decodeReceiver(r *http.Request, ac *tenancy.Access) (logstore.ReceiverConfig, error) {
	if err := systemAdmin(ac); err != nil {
		return logstore.ReceiverConfig{}, err
	}
	var in logstore.ReceiverConfig
	err := httpapi.Decode(r, &in)
	return in, err
}

func (a *API) handlePutReceiver(w http.ResponseWriter, r *http.Request) error {
	ac, err := a.authz.Caller(r)
	if err != nil {
		return err
	}
	in, err := decodeReceiver(r, ac)
	if err != nil {
		return err
	}
	cfg, err := a.SetReceiver(r.Context(), ac, in)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, cfg)
}

// handleTestReceiver tests the setting in the body or, without a body,
// the stored setting.
func (a *API) handleTestReceiver(w http.ResponseWriter, r *http.Request) error {
	ac, err := a.authz.Caller(r)
	if err != nil {
		return err
	}
	var in *logstore.ReceiverConfig
	if err := systemAdmin(ac); err != nil {
		return err
	}
	if r.ContentLength != 0 {
		body, err := httpapi.ReadBody(r)
		if err != nil {
			return err
		}
		if len(body) > 0 {
			r.Body = io.NopCloser(bytes.NewReader(body))
			cfg, err := decodeReceiver(r, ac)
			if err != nil {
				return err
			}
			in = &cfg
		}
	}
	msg, err := a.TestReceiver(r.Context(), ac, in)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, map[string]string{"status": "ok", "message": msg})
}

// query parses the filters of GET /projects/{project}/logs for a caller
// who may view the project.
func (a *API) query(r *http.Request) (*logstore.Querier, logstore.Query, error) {
	ac, err := a.authz.Caller(r)
	if err != nil {
		return nil, logstore.Query{}, err
	}
	return a.resolve(r.Context(), ac, mux.Vars(r)["project"], filtersOf(r.URL.Query()))
}

// Filters are a log query's filters as the caller wrote them (the query
// string of GET /projects/{project}/logs); Lines validates them.
type Filters struct {
	Cluster, Level, Q, PageToken string
	// From, To: RFC 3339 times; Limit a whole number.
	From, To, Limit string
}

func filtersOf(v url.Values) Filters {
	return Filters{
		Cluster: v.Get("cluster"), Level: v.Get("level"), Q: v.Get("q"), PageToken: v.Get("pageToken"),
		From: v.Get("from"), To: v.Get("to"), Limit: v.Get("limit"),
	}
}

// Lines is one page of the project's log lines that pass f, newest first:
// 404 when the caller cannot see the project, 503 while no log receiver is
// configured. The route and the console both call it.
func (a *API) Lines(ctx context.Context, ac *tenancy.Access, project string, f Filters) (logstore.Page, error) {
	qr, q, err := a.resolve(ctx, ac, project, f)
	if err != nil {
		return logstore.Page{}, err
	}
	page, err := qr.Query(ctx, q)
	if err != nil {
		return logstore.Page{}, queryFailed(err)
	}
	return page, nil
}

// resolve checks the caller may view the project and turns f into a
// query of its lines.
func (a *API) resolve(ctx context.Context, ac *tenancy.Access, project string, f Filters) (*logstore.Querier, logstore.Query, error) {
	p, err := a.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return nil, logstore.Query{}, err
	}
	q := logstore.Query{Projects: []string{p.ID}, Cluster: f.Cluster, Level: f.Level, Text: f.Q, PageToken: f.PageToken}
	for _, tf := range []struct {
		name string
		t    *time.Time
		v    string
	}{{"from", &q.From, f.From}, {"to", &q.To, f.To}} {
		if s := tf.v; s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return nil, q, httpapi.Invalid(tf.name, "must be an RFC 3339 time such as 2025-01-31T12:00:00Z")
			}
			*tf.t = t
		}
	}
	if s := f.Limit; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > logstore.MaxQueryLimit {
			return nil, q, httpapi.Invalid("limit", "must be a number from 1 to %d", logstore.MaxQueryLimit)
		}
		q.Limit = n
	}
	qr := a.querier.Load()
	if qr == nil {
		return nil, q, &httpapi.Error{Status: http.StatusServiceUnavailable, Code: CodeNotConfigured,
			Message: "no log receiver is configured; a system admin sets one with PUT /api/v1/system/log-receiver"}
	}
	return qr, q, nil
}

func queryFailed(err error) error {
	var fe *logstore.FieldError
	if errors.As(err, &fe) {
		return httpapi.Invalid(fe.Field, "%s", fe.Message)
	}
	return &httpapi.Error{Status: http.StatusBadGateway, Code: CodeStoreUnavailable, Message: "the log store failed: " + err.Error()}
}

// handleQuery returns one page of the project's lines, newest first.
func (a *API) handleQuery(w http.ResponseWriter, r *http.Request) error {
	ac, err := a.authz.Caller(r)
	if err != nil {
		return err
	}
	page, err := a.Lines(r.Context(), ac, mux.Vars(r)["project"], filtersOf(r.URL.Query()))
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, page)
}

// handleCount returns how many of the project's lines match the filters.
func (a *API) handleCount(w http.ResponseWriter, r *http.Request) error {
	qr, q, err := a.query(r)
	if err != nil {
		return err
	}
	n, err := qr.Count(r.Context(), q)
	if err != nil {
		return queryFailed(err)
	}
	return httpapi.JSON(w, http.StatusOK, map[string]int64{"count": n})
}
