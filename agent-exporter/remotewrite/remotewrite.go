// Package remotewrite pushes every collection to ecp as Prometheus remote
// write 1.0 (agentproto.PathWrite), with the agent's credential. The series
// come from the snapshot /metrics serves, so a scrape and a push never
// disagree and EMQX is polled once per interval whatever the number of
// consumers.
//
// A fleet of clusters with thousands of rules and connectors each would
// push more series than anyone looks at, so a push holds at most
// Options.MaxSeries series (package selection): every cluster-level series, every
// object ecp's alert rules would fire on (a rule whose failure counters
// grew, an enabled connector, action or source that is not connected),
// every object that was abnormal within the recovery hold (so the alert
// sees it resolve), then the busiest other rules and the remaining objects
// while they fit. The cap never hides an abnormal object: when those alone
// exceed it, they are all pushed. /metrics keeps every series.
//
// Each collection becomes one request waiting in a bounded queue. While ecp
// is unreachable, answers 5xx or throttles with 429, the oldest request is
// retried with jittered exponential backoff (at least the Retry-After ecp
// asked for) and new collections queue behind it; when the queue is full
// the oldest collection is dropped and counted, so a long outage costs
// memory for QueueSize collections and no more. A request ecp refuses for
// good (another 4xx) is dropped and counted; a 401 drops the whole queue
// (the credential is gone; the report loop ends the session). When ecp says
// it has no remote-write backend (agentproto.HeaderRemoteWrite), pushing
// pauses for DisabledPause and the collections are counted as not sent.
package remotewrite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
	"github.com/ecpio/ecp/internal/secret"
)

// Defaults of Options.
const (
	// DefaultQueueSize keeps 8 collections: two minutes at the default
	// 15 s interval.
	DefaultQueueSize     = 8
	DefaultTimeout       = 10 * time.Second
	DefaultBackoffBase   = time.Second
	DefaultBackoffMax    = 2 * time.Minute
	DefaultDisabledPause = 5 * time.Minute
)

// Reasons of agent_exporter_remote_write_samples_dropped_total.
const (
	ReasonQueueFull     = "queue_full"
	ReasonRejected      = "rejected"
	ReasonNotConfigured = "not_configured"
	ReasonUnregistered  = "unregistered"
)

// Options configure a Sender. Zero values mean the defaults.
type Options struct {
	// Gatherer yields the series to push (the agent's EMQX exporter).
	Gatherer prometheus.Gatherer
	// QueueSize is how many collections wait while ecp is unreachable.
	QueueSize int
	// Timeout bounds one push.
	Timeout time.Duration
	// BackoffBase and BackoffMax shape the retry backoff.
	BackoffBase, BackoffMax time.Duration
	// DisabledPause is how long pushing pauses once ecp said it has no
	// remote-write backend.
	DisabledPause time.Duration
	// MaxSeries caps the series of one push (0: no cap). Cluster-level
	// series and abnormal objects are pushed whatever the cap; see
	// package selection. /metrics always serves everything.
	MaxSeries int
	// RecoveryHold is how long a recovered object is still pushed; zero
	// means DefaultRecoveryHold.
	RecoveryHold time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Target is where and as whom to push: the ecp of the registration in force.
type Target struct {
	ECPURL     string
	Credential secret.String
	Client     *http.Client
}

// request is one collection waiting to be pushed.
type request struct {
	seq     uint64
	target  *Target
	body    []byte
	samples int
}

// Sender queues collections and pushes them to ecp.
type Sender struct {
	opts   Options
	logger *slog.Logger

	mu          sync.Mutex
	queue       []request
	seq         uint64
	pausedUntil time.Time
	backoff     backoff.Backoff
	kick        chan struct{}
	// tried is the newest seq whose push was attempted (sent, refused or
	// failed once); waiters are the Tried calls waiting for a seq.
	tried   uint64
	waiters []triedWaiter

	selMu sync.Mutex // one selection at a time
	sel   *Selector

	sent     prometheus.Counter
	dropped  *prometheus.CounterVec
	failures prometheus.Counter
	queued   prometheus.Gauge
	pushed   prometheus.Gauge
	capped   prometheus.Gauge
}

// New returns a Sender registering its metrics on reg; nothing is sent
// until Run.
func New(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("remotewrite: Options.Gatherer is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.BackoffMax < opts.BackoffBase {
		opts.BackoffMax = max(DefaultBackoffMax, opts.BackoffBase)
	}
	if opts.DisabledPause <= 0 {
		opts.DisabledPause = DefaultDisabledPause
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := promauto.With(reg)
	s := &Sender{
		sel:  NewSelector(opts.MaxSeries, opts.RecoveryHold),
		opts: opts, logger: logger, kick: make(chan struct{}, 1),
		backoff: backoff.Backoff{Base: opts.BackoffBase, Max: opts.BackoffMax},
		sent: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_remote_write_samples_sent_total", Help: "Samples pushed to ecp by remote write and accepted by it.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "agent_exporter_remote_write_samples_dropped_total", Help: "Samples collected and not delivered: queue full while ecp was unreachable, refused by ecp, ecp without a remote-write backend, or the registration ended.",
		}, []string{"reason"}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_remote_write_failures_total", Help: "Pushes that failed and will be retried (ecp unreachable, 5xx, 429).",
		}),
		queued: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_remote_write_queue_length", Help: "Collections waiting to be pushed to ecp.",
		}),
		pushed: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_remote_write_series", Help: "Series in the push of the last collection.",
		}),
		capped: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_remote_write_series_capped", Help: "Series of the last collection left out of its push by --remote-write.max-series (healthy, quiet objects; /metrics serves them all).",
		}),
	}
	for _, r := range []string{ReasonQueueFull, ReasonRejected, ReasonNotConfigured, ReasonUnregistered} {
		s.dropped.WithLabelValues(r)
	}
	return s, nil
}

// Push gathers the series now served (one collection), stamps them with
// at, keeps those the series cap allows and queues them for target.
func (s *Sender) Push(target *Target, at time.Time) error {
	mfs, err := s.opts.Gatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return fmt.Errorf("gather series to push: %w", err)
	}
	s.selMu.Lock()
	p, err := s.sel.Encode(mfs, at)
	s.selMu.Unlock()
	if err != nil {
		return err
	}
	s.pushed.Set(float64(p.Series))
	s.capped.Set(float64(p.Capped))
	body, samples := p.Body, p.Samples
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opts.Now().Before(s.pausedUntil) {
		s.dropped.WithLabelValues(ReasonNotConfigured).Add(float64(samples))
		return nil
	}
	s.seq++
	s.queue = append(s.queue, request{seq: s.seq, target: target, body: body, samples: samples})
	for len(s.queue) > s.opts.QueueSize {
		s.dropped.WithLabelValues(ReasonQueueFull).Add(float64(s.queue[0].samples))
		s.queue[0] = request{}
		s.queue = s.queue[1:]
	}
	s.settleLocked()
	s.queued.Set(float64(len(s.queue)))
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return nil
}

type triedWaiter struct {
	seq uint64
	ch  chan struct{}
}

// Tried returns a channel closed once every collection queued before the
// call has been pushed once (sent, refused or failed) or dropped. An agent
// on one HTTP/1.1 connection waits for it before sending a call that holds
// the connection (a held report), so that its samples go out first.
func (s *Sender) Tried() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.waiters = append(s.waiters, triedWaiter{seq: s.seq, ch: ch})
	s.settleLocked()
	return ch
}

// settleLocked closes the Tried channels whose collections were all tried
// or are no longer queued.
func (s *Sender) settleLocked() {
	kept := s.waiters[:0]
	for _, w := range s.waiters {
		if w.seq <= s.tried || len(s.queue) == 0 || s.queue[0].seq > w.seq {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	clear(s.waiters[len(kept):])
	s.waiters = kept
}

// Reset drops everything queued: the registration ended or changed, and
// its credential must not push any more.
func (s *Sender) Reset() {
	s.selMu.Lock()
	s.sel.reset()
	s.selMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropAllLocked(ReasonUnregistered)
	s.pausedUntil = time.Time{}
	s.backoff.Reset()
}

func (s *Sender) dropAllLocked(reason string) {
	for _, r := range s.queue {
		s.dropped.WithLabelValues(reason).Add(float64(r.samples))
	}
	s.queue = nil
	s.queued.Set(0)
	s.settleLocked()
}

// Run pushes queued collections until ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		}
		for {
			wait, more := s.sendHead(ctx)
			if !more {
				break
			}
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-t.C:
				}
			}
		}
	}
}

// sendHead pushes the oldest queued collection once. It says how long to
// wait before the next attempt and whether anything is left to send.
func (s *Sender) sendHead(ctx context.Context) (time.Duration, bool) {
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.mu.Unlock()
		return 0, false
	}
	head := s.queue[0]
	s.mu.Unlock()

	disabled, err := s.send(ctx, head)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tried = max(s.tried, head.seq)
	defer s.settleLocked()
	if len(s.queue) == 0 || s.queue[0].seq != head.seq {
		// Reset or dropped for room while sending: the outcome is moot.
		return 0, len(s.queue) > 0
	}
	var perm *permanentError
	switch {
	case err == nil && disabled:
		s.dropped.WithLabelValues(ReasonNotConfigured).Add(float64(head.samples))
		s.popLocked()
		s.dropAllLocked(ReasonNotConfigured)
		s.pausedUntil = s.opts.Now().Add(s.opts.DisabledPause)
		s.logger.Info("ecp has no remote-write backend; pausing pushes", "pause", s.opts.DisabledPause)
	case err == nil:
		s.sent.Add(float64(head.samples))
		s.popLocked()
		s.backoff.Reset()
	case errors.Is(err, ecpclient.ErrCredentialRevoked):
		s.dropAllLocked(ReasonUnregistered)
	case errors.As(err, &perm):
		s.dropped.WithLabelValues(ReasonRejected).Add(float64(head.samples))
		s.popLocked()
		s.logger.Warn("ecp refused pushed samples; dropped", "samples", head.samples, "err", err)
	default:
		if ctx.Err() != nil {
			return 0, false
		}
		s.failures.Inc()
		wait := s.backoff.Next(ecpclient.RetryAfter(err))
		s.logger.Warn("remote write to ecp failed; retrying", "err", err, "retryIn", wait, "queued", len(s.queue))
		return wait, true
	}
	return 0, len(s.queue) > 0
}

func (s *Sender) popLocked() {
	s.queue[0] = request{}
	s.queue = s.queue[1:]
	s.queued.Set(float64(len(s.queue)))
}

// permanentError is a refusal that resending cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// send makes one push; disabled reports ecp's "no backend" answer.
func (s *Sender) send(ctx context.Context, r request) (disabled bool, err error) {
	u, err := url.JoinPath(strings.TrimRight(r.target.ECPURL, "/"), agentproto.PathWrite)
	if err != nil {
		return false, &permanentError{err: fmt.Errorf("ecp url %q: %w", r.target.ECPURL, err)}
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, u, bytes.NewReader(r.body))
	if err != nil {
		return false, &permanentError{err: err}
	}
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	req.Header.Set("Authorization", "Bearer "+r.target.Credential.Reveal())
	resp, err := r.target.Client.Do(req)
	if err != nil {
		return false, fmt.Errorf("push to ecp: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode/100 == 2 {
		return resp.Header.Get(agentproto.HeaderRemoteWrite) == agentproto.RemoteWriteDisabled, nil
	}
	apiErr := &ecpclient.APIError{Status: resp.StatusCode, Message: strings.TrimSpace(string(msg)),
		RetryAfter: parseRetryAfter(resp.Header.Get(agentproto.HeaderRetryAfter))}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
		return false, apiErr
	case resp.StatusCode == http.StatusUnauthorized:
		return false, fmt.Errorf("push to ecp: %w", ecpclient.ErrCredentialRevoked)
	default:
		return false, &permanentError{err: apiErr}
	}
}

func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// Encode turns gathered metric families into a snappy-compressed remote
// write 1.0 request with every sample at time at, and counts the samples.
// Histograms and summaries become their classic _bucket/_sum/_count and
// quantile series, as a scrape would store them.
func Encode(mfs []*dto.MetricFamily, at time.Time) ([]byte, int, error) {
	var buf pushBuf
	return buf.marshal(flattenKept(mfs, at, nil, nil, &buf))
}

// pushBuf keeps the arrays a push is built in for the next push of the
// same Selector: one is built every collection, and allocating them
// afresh was most of the garbage a tick left. The series, samples and
// encoded bytes of one push are valid until the next; the labels for one
// push more, as staleness holds the labels of the previous push while the
// next is built (labels alternate between two arrays).
type pushBuf struct {
	series   []prompb.TimeSeries
	samples  []prompb.Sample
	labels   [2][]prompb.Label
	flip     int
	raw, enc []byte
}

// marshal encodes series as a snappy-compressed write request and counts
// their samples. The request returned is its own (a push is queued while
// the next is built).
func (b *pushBuf) marshal(series []prompb.TimeSeries) ([]byte, int, error) {
	req := prompb.WriteRequest{Timeseries: series}
	size := req.Size()
	b.raw = slices.Grow(b.raw[:0], size)[:size]
	n, err := req.MarshalToSizedBuffer(b.raw)
	if err != nil {
		return nil, 0, fmt.Errorf("encode remote-write request: %w", err)
	}
	samples := 0
	for _, ts := range series {
		samples += len(ts.Samples)
	}
	// s2's snappy encoder at its default level: the "better" level left
	// a push 3 % smaller for four times the CPU, and its 576 KiB table
	// was allocated again after most garbage collections.
	b.enc = s2.EncodeSnappy(b.enc[:cap(b.enc)], b.raw[len(b.raw)-n:])
	return append([]byte(nil), b.enc...), samples, nil
}

// flattenKept turns metric families into one series per sample, at time
// at, limited to the metrics kept: keep[f] nil (or keep nil) keeps family
// f whole, else keep[f][m] says whether metric m is. earlier adds an
// earlier sample to a metric's series. Labels and samples of all series
// share two arrays, buf's: a push is built and dropped every collection,
// and thousands of small allocations would cost more than the work
// itself.
func flattenKept(mfs []*dto.MetricFamily, at time.Time, keep [][]bool, earlier map[ref]prompb.Sample, buf *pushBuf) []prompb.TimeSeries {
	kept := func(f, m int) bool { return keep == nil || keep[f] == nil || keep[f][m] }
	nSeries, nLabels := 0, 0
	for f, mf := range mfs {
		for m, metric := range mf.GetMetric() {
			if !kept(f, m) {
				continue
			}
			n := 1
			switch mf.GetType() {
			case dto.MetricType_SUMMARY:
				n = len(metric.GetSummary().GetQuantile()) + 2
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				n = len(metric.GetHistogram().GetBucket()) + 3
			}
			nSeries += n
			nLabels += n * (len(metric.GetLabel()) + 2)
		}
	}
	ts := at.UnixMilli()
	buf.flip ^= 1
	out := slices.Grow(buf.series[:0], nSeries)
	labels := slices.Grow(buf.labels[buf.flip][:0], nLabels)
	samples := slices.Grow(buf.samples[:0], nSeries+len(earlier))
	defer func() { buf.series, buf.labels[buf.flip], buf.samples = out, labels, samples }()
	var cur ref
	add := func(name string, m *dto.Metric, value float64, extra ...string) {
		start := len(labels)
		labels = append(labels, prompb.Label{Name: "__name__", Value: name})
		for _, l := range m.GetLabel() {
			labels = append(labels, prompb.Label{Name: l.GetName(), Value: l.GetValue()})
		}
		for i := 0; i+1 < len(extra); i += 2 {
			labels = append(labels, prompb.Label{Name: extra[i], Value: extra[i+1]})
		}
		ls := labels[start:len(labels):len(labels)]
		sortLabels(ls)
		first := len(samples)
		if e, ok := earlier[cur]; ok {
			samples = append(samples, e)
		}
		samples = append(samples, prompb.Sample{Value: value, Timestamp: ts})
		out = append(out, prompb.TimeSeries{Labels: ls, Samples: samples[first:len(samples):len(samples)]})
	}
	for f, mf := range mfs {
		name := mf.GetName()
		for m, metric := range mf.GetMetric() {
			if !kept(f, m) {
				continue
			}
			cur = ref{Family: int32(f), Metric: int32(m)}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				add(name, metric, metric.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, metric, metric.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, metric, metric.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				sm := metric.GetSummary()
				for _, q := range sm.GetQuantile() {
					add(name, metric, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
				}
				add(name+"_sum", metric, sm.GetSampleSum())
				add(name+"_count", metric, float64(sm.GetSampleCount()))
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := metric.GetHistogram()
				for _, b := range h.GetBucket() {
					add(name+"_bucket", metric, float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
				}
				add(name+"_bucket", metric, float64(h.GetSampleCount()), "le", "+Inf")
				add(name+"_sum", metric, h.GetSampleSum())
				add(name+"_count", metric, float64(h.GetSampleCount()))
			}
		}
	}
	return out
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// sortLabels sorts by name (insertion sort: a handful of labels, mostly
// in order already).
func sortLabels(ls []prompb.Label) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}
