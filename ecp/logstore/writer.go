package logstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/internal/backoff"
)

// Defaults of WriterOptions.
const (
	DefaultRequestTimeout  = 30 * time.Second
	DefaultMaxRetryTime    = 10 * time.Second
	DefaultMinBackoff      = 100 * time.Millisecond
	DefaultMaxBackoff      = 2 * time.Second
	DefaultMaxBulkDocs     = 5000
	DefaultMaxBulkBytes    = 8 << 20
	DefaultMaxInFlight     = 16
	DefaultQueueWait       = time.Second
	DefaultDedupWindow     = 15 * time.Minute
	DefaultDedupMaxBatches = 100_000
	// DefaultRetryAfter is the hint given to agents when the store gave none.
	DefaultRetryAfter = 5 * time.Second
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Transport replaces the HTTP transport (tests); nil builds one per
	// configuration.
	Transport http.RoundTripper
	// RequestTimeout bounds one bulk request.
	RequestTimeout time.Duration
	// MaxRetryTime bounds how long one Write keeps retrying transient
	// failures before it reports backpressure. Keep it below the agent's
	// request timeout.
	MaxRetryTime time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries.
	MinBackoff, MaxBackoff time.Duration
	// MaxBulkDocs and MaxBulkBytes split large batches into several bulk
	// requests (Elasticsearch advises requests of a few MB).
	MaxBulkDocs  int
	MaxBulkBytes int
	// MaxInFlight caps the bulk requests in flight across all Writes; a
	// Write that cannot get a slot within QueueWait reports backpressure
	// instead of piling up memory.
	MaxInFlight int
	QueueWait   time.Duration
	// DedupWindow and DedupMaxBatches size the window of stored batch ids.
	DedupWindow     time.Duration
	DedupMaxBatches int
	// Now is the clock (tests).
	Now func() time.Time
	// sleep waits between retries; tests replace it to advance a fake
	// clock instead of sleeping.
	sleep func(ctx context.Context, d time.Duration) error
}

// DefaultWriterOptions returns the defaults above.
func DefaultWriterOptions() WriterOptions {
	return WriterOptions{
		RequestTimeout: DefaultRequestTimeout, MaxRetryTime: DefaultMaxRetryTime,
		MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff,
		MaxBulkDocs: DefaultMaxBulkDocs, MaxBulkBytes: DefaultMaxBulkBytes,
		MaxInFlight: DefaultMaxInFlight, QueueWait: DefaultQueueWait,
		DedupWindow: DefaultDedupWindow, DedupMaxBatches: DefaultDedupMaxBatches,
	}
}

// Writer writes log batches to the configured receiver. It is safe for
// concurrent use; Configure swaps the receiver without losing the duplicate
// window or the metrics.
type Writer struct {
	opts    WriterOptions
	logger  *slog.Logger
	metrics *writerMetrics
	dedup   *dedupWindow
	slots   chan struct{}
	target  atomic.Pointer[writeTarget]
}

// writeTarget is one configuration of the Writer.
type writeTarget struct {
	*conn
	templateMu sync.Mutex
	templateOK bool
}

// NewWriter returns a Writer with no receiver; Write fails with
// ErrNotConfigured until Configure is called.
func NewWriter(opts WriterOptions) (*Writer, error) {
	def := DefaultWriterOptions()
	if opts.Logger == nil {
		return nil, errors.New("logstore: WriterOptions.Logger is required")
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = def.RequestTimeout
	}
	if opts.MaxRetryTime <= 0 {
		opts.MaxRetryTime = def.MaxRetryTime
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = def.MinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(def.MaxBackoff, opts.MinBackoff)
	}
	if opts.MaxBulkDocs <= 0 {
		opts.MaxBulkDocs = def.MaxBulkDocs
	}
	if opts.MaxBulkBytes <= 0 {
		opts.MaxBulkBytes = def.MaxBulkBytes
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = def.MaxInFlight
	}
	if opts.QueueWait <= 0 {
		opts.QueueWait = def.QueueWait
	}
	if opts.DedupWindow <= 0 {
		opts.DedupWindow = def.DedupWindow
	}
	if opts.DedupMaxBatches <= 0 {
		opts.DedupMaxBatches = def.DedupMaxBatches
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.sleep == nil {
		opts.sleep = backoff.Sleep
	}
	m, err := newWriterMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Writer{
		opts:    opts,
		logger:  opts.Logger,
		metrics: m,
		dedup:   newDedupWindow(opts.DedupWindow, opts.DedupMaxBatches),
		slots:   make(chan struct{}, opts.MaxInFlight),
	}, nil
}

// Configure validates cfg and makes it the receiver for every later Write.
// The zero ReceiverConfig removes the receiver.
func (w *Writer) Configure(cfg ReceiverConfig) error {
	if cfg == (ReceiverConfig{}) {
		if old := w.target.Swap(nil); old != nil {
			old.client.CloseIdleConnections()
		}
		return nil
	}
	c, err := newConn(cfg, w.opts.Transport, w.opts.RequestTimeout)
	if err != nil {
		return err
	}
	if old := w.target.Swap(&writeTarget{conn: c}); old != nil {
		old.client.CloseIdleConnections()
	}
	return nil
}

// Test runs the connection test against the configured receiver.
func (w *Writer) Test(ctx context.Context) error {
	t := w.target.Load()
	if t == nil {
		return ErrNotConfigured
	}
	return testConn(ctx, t.conn)
}

// Close releases idle connections.
func (w *Writer) Close() {
	if t := w.target.Load(); t != nil {
		t.client.CloseIdleConnections()
	}
}

// ErrBackpressure is matched (errors.Is) by a *BackpressureError.
var ErrBackpressure = errors.New("log store cannot take the batch now")

// BackpressureError says the batch was not (completely) stored for a reason
// that should pass: the agent keeps the lines and sends the batch again after
// RetryAfter. ecp answers it with 503 (429 when Overloaded) and Retry-After.
type BackpressureError struct {
	// RetryAfter is when trying again makes sense.
	RetryAfter time.Duration
	// Overloaded is true when ecp or the store shed load (too many requests
	// in flight, 429) rather than being unreachable or failing.
	Overloaded bool
	// Pending counts the lines of the batch not stored yet.
	Pending int
	Err     error
}

func (e *BackpressureError) Error() string {
	return fmt.Sprintf("log store cannot take the batch now (%d lines pending, retry after %s): %v", e.Pending, e.RetryAfter, e.Err)
}

// Unwrap returns the last failure.
func (e *BackpressureError) Unwrap() error { return e.Err }

// Is matches ErrBackpressure.
func (e *BackpressureError) Is(target error) bool { return target == ErrBackpressure }

// Result is what a Write stored.
type Result struct {
	// Accepted counts the lines of the batch that are stored (now, or by an
	// earlier attempt of the same batch).
	Accepted int
	// Rejected lists the lines the store refused for good; they are not
	// stored and retrying them will not help.
	Rejected []DocError
	// Duplicate is true when the whole batch had been stored before and
	// nothing was written.
	Duplicate bool
}

// DocError is one line the store refused.
type DocError struct {
	// Line is the index of the line in Batch.Lines.
	Line   int
	File   string
	Offset int64
	// Status is the store's per-document HTTP status.
	Status int
	// Type and Reason are the store's error type and reason, e.g.
	// "mapper_parsing_exception", "failed to parse field [level]".
	Type   string
	Reason string
}

func (e DocError) Error() string {
	return fmt.Sprintf("line %d (%s@%d) rejected with %d %s: %s", e.Line, e.File, e.Offset, e.Status, e.Type, e.Reason)
}

// pendingDoc is a document still to be stored and where it came from.
type pendingDoc struct {
	line int
	doc  document
}

// Write stores the batch. It returns nil only when every line is stored or
// listed in Result.Rejected; the caller acknowledges the batch to the agent
// only then. A *BackpressureError means "not now, keep the lines"; any other
// error means the store or the configuration is broken (401, 404, wrong
// type), which retrying alone will not fix, and the lines are not stored
// either.
func (w *Writer) Write(ctx context.Context, b Batch) (Result, error) {
	t := w.target.Load()
	if t == nil {
		return Result{}, ErrNotConfigured
	}
	if b.Project == "" || b.Cluster == "" {
		// Never store a line no project's scope can find or that could be
		// attributed to the wrong tenant.
		return Result{}, errors.New("logstore: a batch needs the project and cluster ecp stamped on it")
	}
	if len(b.Lines) == 0 {
		return Result{}, nil
	}
	var written map[string]struct{}
	if b.BatchID != "" {
		key := b.Cluster + "\x00" + b.BatchID
		state, prev := w.dedup.begin(key, w.opts.Now())
		switch state {
		case dedupDone:
			w.metrics.deduplicated.Inc()
			return Result{Accepted: len(b.Lines), Duplicate: true}, nil
		case dedupInFlight:
			w.metrics.backpressure.Inc()
			return Result{}, &BackpressureError{RetryAfter: time.Second, Overloaded: true, Pending: len(b.Lines),
				Err: errors.New("the same batch is still being written")}
		}
		written = make(map[string]struct{}, len(prev)+len(b.Lines))
		for id := range prev {
			written[id] = struct{}{}
		}
		done := false
		defer func() { w.dedup.end(key, done, written, w.opts.Now()) }()
		res, err := w.write(ctx, t, &b, written)
		done = err == nil
		return res, err
	}
	return w.write(ctx, t, &b, map[string]struct{}{})
}

func (w *Writer) write(ctx context.Context, t *writeTarget, b *Batch, written map[string]struct{}) (Result, error) {
	now := w.opts.Now()
	deadline := now.Add(w.opts.MaxRetryTime)
	var res Result
	pending := make([]pendingDoc, 0, len(b.Lines))
	for i := range b.Lines {
		d := newDocument(b, &b.Lines[i], now)
		if _, ok := written[d.ID]; ok {
			res.Accepted++
			continue
		}
		pending = append(pending, pendingDoc{line: i, doc: d})
	}
	if t.cfg.Type == TypeElasticsearch {
		bo := w.backoff()
		for {
			err := w.ensureTemplate(ctx, t)
			if err == nil {
				break
			}
			wait := bo.Next(w.retryAfter(err))
			if !isTransient(err) || w.opts.Now().Add(wait).After(deadline) {
				return res, w.failure(err, len(pending))
			}
			w.metrics.retries.Inc()
			if err := w.opts.sleep(ctx, wait); err != nil {
				return res, w.failure(err, len(pending))
			}
		}
	}
	bo := w.backoff()
	for {
		var retry []pendingDoc
		var lastErr error
		for chunk := range chunks(pending, t.cfg.indexPrefix(), w.opts.MaxBulkDocs, w.opts.MaxBulkBytes) {
			out, err := w.sendChunk(ctx, t, chunk, deadline)
			if err != nil {
				if !isTransient(err) {
					return res, err
				}
				lastErr = err
				retry = append(retry, chunk.docs...)
				continue
			}
			stored := 0
			for i, o := range out {
				pd := chunk.docs[i]
				switch {
				case o.ok:
					written[pd.doc.ID] = struct{}{}
					stored++
				case o.transient:
					lastErr = o.err
					retry = append(retry, pd)
				default:
					res.Rejected = append(res.Rejected, DocError{
						Line: pd.line, File: pd.doc.File, Offset: pd.doc.Offset,
						Status: o.err.Status, Type: o.err.Type, Reason: o.err.Reason,
					})
				}
			}
			res.Accepted += stored
			w.metrics.lines.Add(float64(stored))
		}
		if len(retry) == 0 {
			if len(res.Rejected) > 0 {
				w.metrics.rejected.Add(float64(len(res.Rejected)))
				w.logger.Warn("log store rejected lines", "cluster", b.Cluster, "rejected", len(res.Rejected), "first", res.Rejected[0].Error())
			}
			return res, nil
		}
		wait := bo.Next(w.retryAfter(lastErr))
		if ctx.Err() != nil {
			return res, w.failure(ctx.Err(), len(retry))
		}
		if w.opts.Now().Add(wait).After(deadline) {
			return res, w.failure(lastErr, len(retry))
		}
		w.metrics.retries.Inc()
		w.logger.Debug("retrying log batch", "cluster", b.Cluster, "pending", len(retry), "wait", wait, "err", lastErr)
		if err := w.opts.sleep(ctx, wait); err != nil {
			return res, w.failure(err, len(retry))
		}
		pending = retry
	}
}

// failure turns the last error of a Write into what the caller acts on.
func (w *Writer) failure(err error, pending int) error {
	if !isTransient(err) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return err
	}
	w.metrics.backpressure.Inc()
	bp := &BackpressureError{RetryAfter: DefaultRetryAfter, Pending: pending, Err: err}
	if se, ok := errors.AsType[*statusError](err); ok {
		bp.Overloaded = se.Status == http.StatusTooManyRequests
		if se.RetryAfter > 0 {
			bp.RetryAfter = se.RetryAfter
		}
	}
	if ie, ok := errors.AsType[*itemError](err); ok {
		bp.Overloaded = ie.Status == http.StatusTooManyRequests
	}
	if errors.Is(err, errNoSlot) {
		bp.Overloaded = true
		bp.RetryAfter = time.Second
	}
	return bp
}

// backoff paces the retries of one write: exponential with jitter.
func (w *Writer) backoff() backoff.Backoff {
	return backoff.Backoff{Base: w.opts.MinBackoff, Max: w.opts.MaxBackoff}
}

// retryAfter is the store's Retry-After in err, the least wait before the
// next retry; at most MaxBackoff, since a write gives up after
// MaxRetryTime anyway.
func (w *Writer) retryAfter(err error) time.Duration {
	if se, ok := errors.AsType[*statusError](err); ok {
		return min(se.RetryAfter, w.opts.MaxBackoff)
	}
	return 0
}

var errNoSlot = errors.New("too many bulk requests in flight")

// isTransient reports whether err may pass by itself.
func isTransient(err error) bool {
	if se, ok := errors.AsType[*statusError](err); ok {
		return se.transient()
	}
	if ie, ok := errors.AsType[*itemError](err); ok {
		return ie.Status == http.StatusTooManyRequests || ie.Status >= 500
	}
	return errors.Is(err, ErrUnreachable) || errors.Is(err, errNoSlot) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, errShortReply)
}

// bulkChunk is one bulk request body and the documents in it, in order.
type bulkChunk struct {
	body []byte
	docs []pendingDoc
}

// chunks splits docs into bulk requests of at most maxDocs documents and
// about maxBytes bytes (a single larger document still goes alone).
func chunks(docs []pendingDoc, prefix string, maxDocs, maxBytes int) func(yield func(bulkChunk) bool) {
	return func(yield func(bulkChunk) bool) {
		var buf []byte
		start := 0
		for i := range docs {
			before := len(buf)
			var err error
			buf, err = appendBulk(buf, prefix, &docs[i].doc)
			if err != nil {
				// A document of strings cannot fail to marshal; keep the
				// invariant visible anyway.
				buf = buf[:before]
				continue
			}
			if i > start && (i-start >= maxDocs || len(buf) > maxBytes) {
				if !yield(bulkChunk{body: buf[:before:before], docs: docs[start:i]}) {
					return
				}
				buf = append([]byte(nil), buf[before:]...)
				start = i
			}
		}
		if start < len(docs) {
			yield(bulkChunk{body: buf, docs: docs[start:]})
		}
	}
}

// itemOutcome is the store's verdict on one document of a bulk request.
type itemOutcome struct {
	ok        bool
	transient bool
	err       *itemError
}

// itemError is a per-document error of a bulk reply.
type itemError struct {
	Status int
	Type   string
	Reason string
}

func (e *itemError) Error() string {
	return fmt.Sprintf("document rejected with %d %s: %s", e.Status, e.Type, e.Reason)
}

var errShortReply = errors.New("log store acknowledged fewer documents than it was sent")

// sendChunk sends one bulk request and returns one outcome per document.
func (w *Writer) sendChunk(ctx context.Context, t *writeTarget, c bulkChunk, deadline time.Time) ([]itemOutcome, error) {
	wait := min(w.opts.QueueWait, deadline.Sub(w.opts.Now()))
	if err := w.acquire(ctx, wait); err != nil {
		return nil, err
	}
	defer func() { <-w.slots }()

	path, q := "/_bulk", url.Values{"filter_path": {"errors,items.*.status,items.*.error"}}
	if t.cfg.Type == TypeVictoriaLogs {
		path, q = "/insert/elasticsearch/_bulk", url.Values{
			"_msg_field":     {fieldMessage},
			"_time_field":    {fieldTime},
			"_stream_fields": {fieldProject + "," + fieldCluster + "," + fieldNode},
		}
	}
	start := time.Now()
	resp, err := t.do(ctx, http.MethodPost, path, q, "application/x-ndjson", c.body)
	w.metrics.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		w.metrics.requests.WithLabelValues(outcomeTransient).Inc()
		return nil, fmt.Errorf("bulk request: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		se := readStatusError(resp)
		if se.transient() {
			w.metrics.requests.WithLabelValues(outcomeTransient).Inc()
		} else {
			w.metrics.requests.WithLabelValues(outcomeError).Inc()
		}
		return nil, fmt.Errorf("bulk request: %w", se)
	}
	out, err := parseBulkReply(resp.Body, len(c.docs))
	if err != nil {
		w.metrics.requests.WithLabelValues(outcomeTransient).Inc()
		return nil, fmt.Errorf("bulk reply: %w", err)
	}
	outcome := outcomeSuccess
	for _, o := range out {
		if !o.ok {
			outcome = outcomePartial
			break
		}
	}
	w.metrics.requests.WithLabelValues(outcome).Inc()
	return out, nil
}

func (w *Writer) acquire(ctx context.Context, wait time.Duration) error {
	select {
	case w.slots <- struct{}{}:
		return nil
	default:
	}
	if wait <= 0 {
		return errNoSlot
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case w.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errNoSlot
	}
}

// bulkReply is the part of Elasticsearch's bulk reply ecp reads; each item
// is keyed by its action ("index", or "create" from VictoriaLogs).
type bulkReply struct {
	Errors bool                         `json:"errors"`
	Items  []map[string]bulkReplyResult `json:"items"`
}

type bulkReplyResult struct {
	Status int `json:"status"`
	Error  *struct {
		Type     string `json:"type"`
		Reason   string `json:"reason"`
		CausedBy *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"caused_by"`
	} `json:"error"`
}

func parseBulkReply(r io.Reader, n int) ([]itemOutcome, error) {
	var reply bulkReply
	if err := json.NewDecoder(r).Decode(&reply); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if len(reply.Items) != n {
		return nil, fmt.Errorf("%w: sent %d, acknowledged %d", errShortReply, n, len(reply.Items))
	}
	out := make([]itemOutcome, n)
	for i, item := range reply.Items {
		var res bulkReplyResult
		for _, v := range item {
			res = v
		}
		if res.Status/100 == 2 {
			out[i].ok = true
			continue
		}
		ie := &itemError{Status: res.Status}
		if res.Error != nil {
			ie.Type, ie.Reason = res.Error.Type, res.Error.Reason
			if res.Error.CausedBy != nil && res.Error.CausedBy.Reason != "" {
				ie.Reason += " (caused by " + res.Error.CausedBy.Type + ": " + res.Error.CausedBy.Reason + ")"
			}
		}
		out[i].err = ie
		out[i].transient = res.Status == http.StatusTooManyRequests || res.Status >= 500
	}
	return out, nil
}

// ensureTemplate installs the index template once per configuration, so the
// daily indices get keyword fields for the filters and nanosecond times.
func (w *Writer) ensureTemplate(ctx context.Context, t *writeTarget) error {
	t.templateMu.Lock()
	defer t.templateMu.Unlock()
	if t.templateOK {
		return nil
	}
	prefix := t.cfg.indexPrefix()
	body, err := json.Marshal(indexTemplate(prefix))
	if err != nil {
		return fmt.Errorf("encoding index template: %w", err)
	}
	resp, err := t.do(ctx, http.MethodPut, "/_index_template/"+prefix, nil, "application/json", body)
	if err != nil {
		return fmt.Errorf("installing index template %q: %w", prefix, err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		se := readStatusError(resp)
		hint := ""
		if se.Status == http.StatusForbidden {
			hint = " (the user needs the manage_index_templates cluster privilege)"
		}
		return fmt.Errorf("installing index template %q%s: %w", prefix, hint, se)
	}
	t.templateOK = true
	w.logger.Info("installed log index template", "template", prefix)
	return nil
}

// indexTemplate is the composable index template of the daily indices.
func indexTemplate(prefix string) map[string]any {
	keyword := map[string]any{"type": "keyword"}
	return map[string]any{
		"index_patterns": []string{prefix + "-*"},
		"priority":       200,
		"_meta":          map[string]any{"managed_by": "ecp"},
		"template": map[string]any{
			"mappings": map[string]any{
				// Unknown top-level fields are kept in _source but not
				// mapped: the schema is ecp's, not the agents'.
				"dynamic": false,
				"properties": map[string]any{
					fieldTime:    map[string]any{"type": "date_nanos"},
					fieldMessage: map[string]any{"type": "text"},
					fieldLevel:   keyword,
					fieldProject: keyword,
					fieldCluster: keyword,
					fieldNode:    keyword,
					fieldRaw:     map[string]any{"type": "text"},
					fieldFile:    keyword,
					fieldOffset:  map[string]any{"type": "long"},
					fieldFields:  map[string]any{"type": "object", "enabled": false},
					fieldID:      keyword,
				},
			},
		},
	}
}

// Outcomes of ecp_logstore_bulk_requests_total.
const (
	outcomeSuccess   = "success"
	outcomePartial   = "partial"
	outcomeTransient = "transient_error"
	outcomeError     = "error"
)

type writerMetrics struct {
	lines        prometheus.Counter
	requests     *prometheus.CounterVec
	rejected     prometheus.Counter
	retries      prometheus.Counter
	deduplicated prometheus.Counter
	backpressure prometheus.Counter
	duration     prometheus.Histogram
}

func newWriterMetrics(reg prometheus.Registerer) (*writerMetrics, error) {
	m := &writerMetrics{
		lines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecp_logstore_lines_written_total",
			Help: "Log lines the log store accepted.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_logstore_bulk_requests_total",
			Help: "Bulk requests sent to the log store, by outcome (success, partial, transient_error, error).",
		}, []string{"outcome"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecp_logstore_documents_rejected_total",
			Help: "Log lines the log store refused for good (not retried).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecp_logstore_retries_total",
			Help: "Retries of bulk requests or documents after transient failures.",
		}),
		deduplicated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecp_logstore_batches_deduplicated_total",
			Help: "Agent batches acknowledged without writing because they had been stored already.",
		}),
		backpressure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ecp_logstore_backpressure_total",
			Help: "Writes answered with backpressure (the agent keeps the lines and retries).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ecp_logstore_bulk_request_duration_seconds",
			Help:    "Duration of bulk requests to the log store.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	for _, o := range []string{outcomeSuccess, outcomePartial, outcomeTransient, outcomeError} {
		m.requests.WithLabelValues(o)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.lines, m.requests, m.rejected, m.retries, m.deduplicated, m.backpressure, m.duration} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering log store metrics: %w", err)
			}
		}
	}
	return m, nil
}

// levelNames are EMQX's log levels, lowest first.
var levelNames = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

func isLevel(s string) bool {
	for _, l := range levelNames {
		if strings.EqualFold(s, l) {
			return true
		}
	}
	return false
}
