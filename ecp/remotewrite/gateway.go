// Package remotewrite is ecp's remote-write gateway: agents push their
// samples to POST /api/v1/agent/write (Prometheus remote write 1.0), the
// gateway authenticates the agent, stamps every series with the project
// and cluster the credential belongs to (overwriting whatever the agent
// sent, so no agent can write into another tenant's series) and forwards
// the result to the configured remote-write backend (Prometheus 2.42+ with
// --web.enable-remote-write-receiver, or any remote-write 1.0 receiver).
//
// # Queues, retry and backpressure
//
// Stamped requests wait in Shards bounded queues; a cluster always maps to
// the same shard, so one agent's requests reach the backend in the order it
// sent them (remote write 1.0 backends refuse out-of-order samples). Each
// shard has one sender that retries network errors, 5xx and 429 with
// jittered exponential backoff (honouring Retry-After) for as long as it
// takes. While a shard's queue is full the agent is answered 429 with
// Retry-After: it keeps the samples and tries again, so an outage of the
// backend moves the buffering to the agents instead of losing data here.
// Only what the backend refuses for good (another 4xx) is dropped, and
// counted in ecp_remote_write_samples_dropped_total{reason="rejected"}. At
// shutdown the queues are flushed for at most DrainTimeout; what a dead
// backend leaves is counted as reason="shutdown".
//
// # Batches
//
// The agent's request is stamped as it arrives and queued uncompressed (a
// queued push holds its samples as protobuf, about 80 bytes a sample). A
// sender takes the oldest, adds what its shard queued behind it (waiting
// up to BatchWait for more, up to batchBytes) and posts them as one
// WriteRequest, each push compressed into the one body (sender.encode):
// one call to the backend for many agents' pushes instead of one each, the
// largest saving of the gateway. While it
// waits it sleeps, and takes what is queued when the wait ends or when the
// queue is half full, rather than waking for each push. Their order within the shard is kept, and a call carries at most one push of
// each cluster: Prometheus keeps one sample of a series that a request
// names twice (an agent's backlog after an outage, one push per
// collection), so a second push of a cluster starts the next call. When the backend refuses a call of
// several pushes for good, each is sent again alone, so that one agent's
// refused samples (too old, out of order) never cost another agent its
// own: only what the backend refuses alone is dropped. (A backend that
// stored part of the refused call gets those samples again, unchanged,
// which Prometheus-compatible stores take as the same samples.)
//
// # Without a backend
//
// Without a URL the gateway still authenticates and decodes (so a broken
// agent is still visible), answers 204 with the header
// agentproto.HeaderRemoteWrite set to agentproto.RemoteWriteDisabled and
// counts the samples as dropped{reason="not_configured"}. The agent counts
// them the same way on its side and pauses pushing for a while instead of
// sending samples nobody stores.
package remotewrite

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/klauspost/compress/s2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/internal/backoff"
)

// Labels the gateway stamps on every series.
const (
	LabelProject = "project"
	LabelCluster = "cluster"
)

// Defaults of Options.
const (
	DefaultShards     = 4
	DefaultQueueSize  = 64
	DefaultTimeout    = 30 * time.Second
	DefaultRetryAfter = 5 * time.Second
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
	// DefaultDrainTimeout bounds the flush of the queues at shutdown.
	DefaultDrainTimeout = 5 * time.Second
	// DefaultBatchWait is ecp's --remote-write.batch-wait: at 10,000
	// agents on 4 senders it makes calls of about 40 pushes.
	DefaultBatchWait = 250 * time.Millisecond
	// DefaultMaxBodyBytes bounds the compressed request an agent may send.
	DefaultMaxBodyBytes = 8 << 20
	// DefaultMaxDecodedBytes bounds the decompressed request (Prometheus'
	// own receiver allows 32 MiB).
	DefaultMaxDecodedBytes = 32 << 20
)

// batchBytes bounds the uncompressed body of a call: a sender stops
// adding pushes once it reached it, so a call carries at most this plus
// one push (MaxDecodedBytes and the stamped labels).
const batchBytes = 4 << 20

// Reasons of ecp_remote_write_samples_dropped_total.
const (
	ReasonNotConfigured = "not_configured"
	ReasonRejected      = "rejected"
	ReasonShutdown      = "shutdown"
)

// Authenticator maps an agent request to its cluster and the cluster's
// current project; *fleet.Fleet implements it. Errors are httpapi errors.
type Authenticator interface {
	AuthenticateAgent(r *http.Request) (clusterID, project string, err error)
}

// Options configure a Gateway. Zero values mean the defaults.
type Options struct {
	// URL is the remote-write endpoint samples are forwarded to, e.g.
	// http://prometheus:9090/api/v1/write. Empty: samples are not
	// forwarded (see the package comment).
	URL string
	// Shards is the number of queues and senders.
	Shards int
	// QueueSize is how many requests each shard holds before agents are
	// told to come back later.
	QueueSize int
	// Timeout bounds one call to the backend.
	Timeout time.Duration
	// RetryAfter is what a throttled agent is told to wait.
	RetryAfter time.Duration
	// BackoffMin and BackoffMax shape the retry backoff towards the backend.
	BackoffMin, BackoffMax time.Duration
	// DrainTimeout bounds how long Run keeps forwarding queued requests
	// after its context ended.
	DrainTimeout time.Duration
	// BatchWait is how long a sender waits for more pushes to join the
	// one it took before it calls the backend. Zero sends at once what is
	// queued; ecp passes its --remote-write.batch-wait (DefaultBatchWait).
	BatchWait time.Duration
	// MaxBodyBytes and MaxDecodedBytes bound a request before and after
	// snappy decompression.
	MaxBodyBytes, MaxDecodedBytes int
	// HTTPClient talks to the backend; when nil, a client with Timeout
	// whose transport keeps one idle connection per sender (see
	// backendTransport).
	HTTPClient *http.Client
}

func (o Options) withDefaults() Options {
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = DefaultBackoffMin
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(DefaultBackoffMax, o.BackoffMin)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxDecodedBytes <= 0 {
		o.MaxDecodedBytes = DefaultMaxDecodedBytes
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.Timeout, Transport: backendTransport(o.Shards)}
	}
	return o
}

// backendTransport keeps an idle connection to the backend for each of the
// senders. Go's default keeps 2 per host: with more senders posting at
// once, every round closed the surplus connections and dialled new ones
// (hundreds of TCP and TLS handshakes a minute towards one backend).
func backendTransport(senders int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = senders
	t.MaxIdleConns = max(t.MaxIdleConns, senders)
	return t
}

// batch is one agent's request (its batch of samples), stamped and
// uncompressed, waiting for the backend; a sender posts several in one
// call.
type batch struct {
	raw     []byte
	samples int
	cluster string
}

// Gateway is the remote-write gateway of one ecp replica.
type Gateway struct {
	opts   Options
	authn  Authenticator
	logger *slog.Logger
	shards []chan batch
	// nudges[i] wakes shard i's sender, waiting for more pushes to join
	// its call, when the shard's queue is half full.
	nudges []chan struct{}

	received  prometheus.Counter
	forwarded prometheus.Counter
	dropped   *prometheus.CounterVec
	throttled prometheus.Counter
	failures  prometheus.Counter

	bufs    sync.Pool // *bytes.Buffer: agent request bodies
	stamped sync.Pool // *[]byte: stamped requests before they are queued
}

// New returns a Gateway; nothing is sent until Run.
func New(opts Options, authn Authenticator, logger *slog.Logger, reg prometheus.Registerer) (*Gateway, error) {
	if authn == nil {
		return nil, errors.New("remotewrite: an authenticator is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("remote-write url %q must be an absolute http(s) URL such as http://127.0.0.1:9090/api/v1/write", opts.URL)
		}
	}
	opts = opts.withDefaults()
	g := &Gateway{opts: opts, authn: authn, logger: logger}
	g.shards = make([]chan batch, opts.Shards)
	g.nudges = make([]chan struct{}, opts.Shards)
	for i := range g.shards {
		g.shards[i] = make(chan batch, opts.QueueSize)
		g.nudges[i] = make(chan struct{}, 1)
	}
	g.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecp_remote_write_samples_received_total", Help: "Samples agents pushed to ecp and ecp accepted (stamped and queued, or counted as not configured).",
	})
	g.forwarded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecp_remote_write_samples_forwarded_total", Help: "Samples the remote-write backend accepted.",
	})
	g.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ecp_remote_write_samples_dropped_total", Help: "Samples ecp accepted and did not forward: no backend configured, refused by the backend (4xx), or still queued at shutdown.",
	}, []string{"reason"})
	g.throttled = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecp_remote_write_requests_throttled_total", Help: "Agent pushes answered 429 because the forwarding queue was full; the agent retries them.",
	})
	g.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ecp_remote_write_send_failures_total", Help: "Calls to the remote-write backend that failed and were retried (network errors, 5xx, 429).",
	})
	for _, r := range []string{ReasonNotConfigured, ReasonRejected, ReasonShutdown} {
		g.dropped.WithLabelValues(r)
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ecp_remote_write_queue_length", Help: "Requests waiting to be forwarded, over all shards.",
	}, func() float64 { return float64(g.QueueLength()) })
	capacity := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ecp_remote_write_queue_capacity", Help: "Requests the forwarding queues hold at most, over all shards.",
	})
	capacity.Set(float64(opts.Shards * opts.QueueSize))
	configured := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ecp_remote_write_configured", Help: "Whether a remote-write backend is configured (1) or agent samples are not forwarded (0).",
	})
	if opts.URL != "" {
		configured.Set(1)
	}
	for _, c := range []prometheus.Collector{g.received, g.forwarded, g.dropped, g.throttled, g.failures, queued, capacity, configured} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register remote-write metrics: %w", err)
		}
	}
	return g, nil
}

// QueueLength is the number of requests waiting, over all shards.
func (g *Gateway) QueueLength() int {
	n := 0
	for _, s := range g.shards {
		n += len(s)
	}
	return n
}

// Register mounts POST agentproto.PathWrite on r (the root router: the
// route authenticates agents itself).
func (g *Gateway) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle(agentproto.PathWrite, a.Handle(g.handleWrite, httpapi.BodyLimit(int64(g.opts.MaxBodyBytes)))).Methods(http.MethodPost)
}

func (g *Gateway) handleWrite(w http.ResponseWriter, r *http.Request) error {
	clusterID, project, err := g.authn.AuthenticateAgent(r)
	if err != nil {
		return err
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		return &httpapi.Error{Status: http.StatusUnsupportedMediaType, Code: httpapi.CodeInvalid, Field: "Content-Encoding",
			Message: "Content-Encoding must be snappy (Prometheus remote write 1.0), got " + enc}
	}
	buf := g.getBuf()
	defer g.putBuf(buf)
	if _, err := buf.ReadFrom(http.MaxBytesReader(nil, r.Body, int64(g.opts.MaxBodyBytes))); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &httpapi.Error{Status: http.StatusRequestEntityTooLarge, Code: httpapi.CodeTooLarge,
				Message: fmt.Sprintf("remote-write body is over %d bytes; send smaller batches", g.opts.MaxBodyBytes)}
		}
		return httpapi.Invalid("", "reading the remote-write body: %v", err)
	}
	i := g.shardIndex(clusterID)
	shard := g.shards[i]
	if g.opts.URL != "" && len(shard) == cap(shard) {
		// Refuse before decoding: under backpressure, spend nothing.
		g.throttled.Inc()
		return throttled(g.opts.RetryAfter)
	}
	// raw goes into the queue, and back to g.stamped once forwarded.
	raw, samples, err := appendStamped(g.getStamped(), buf.Bytes(), project, clusterID, g.opts.MaxDecodedBytes)
	if err != nil {
		return httpapi.Invalid("", "%v", err)
	}
	if g.opts.URL == "" {
		g.putStamped(raw)
		g.received.Add(float64(samples))
		g.dropped.WithLabelValues(ReasonNotConfigured).Add(float64(samples))
		w.Header().Set(agentproto.HeaderRemoteWrite, agentproto.RemoteWriteDisabled)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if cap(raw) > 2*len(raw)+64<<10 {
		// A pooled buffer a larger push grew: a full queue of small pushes
		// must not hold that much memory.
		small := bytes.Clone(raw)
		g.putStamped(raw)
		raw = small
	}
	select {
	case shard <- batch{raw: raw, samples: samples, cluster: clusterID}:
		g.received.Add(float64(samples))
		if len(shard) >= max(1, cap(shard)/2) {
			select {
			case g.nudges[i] <- struct{}{}:
			default:
			}
		}
	default:
		g.putStamped(raw)
		// Filled up while this request was decoded; the agent resends.
		g.throttled.Inc()
		return throttled(g.opts.RetryAfter)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func throttled(after time.Duration) error {
	return &httpapi.Error{Status: http.StatusTooManyRequests, Code: agentproto.CodeRateLimited,
		Message: "the remote-write queue is full (the backend is slow or down); retry after the Retry-After delay", RetryAfter: after}
}

func (g *Gateway) shardOf(clusterID string) chan batch {
	return g.shards[g.shardIndex(clusterID)]
}

func (g *Gateway) shardIndex(clusterID string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(clusterID))
	return int(h.Sum32() % uint32(len(g.shards)))
}

func (g *Gateway) getBuf() *bytes.Buffer {
	if b, ok := g.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (g *Gateway) putBuf(b *bytes.Buffer) {
	if b.Cap() <= g.opts.MaxBodyBytes {
		g.bufs.Put(b)
	}
}

func (g *Gateway) getStamped() []byte {
	if b, ok := g.stamped.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return nil
}

func (g *Gateway) putStamped(b []byte) {
	if cap(b) <= batchBytes {
		g.stamped.Put(&b)
	}
}

// release gives the buffers of b back once nothing refers to them.
func (g *Gateway) release(b []batch) {
	for _, p := range b {
		g.putStamped(p.raw)
	}
}

// Run sends the queued requests until ctx ends. Then it keeps sending
// what is queued (the agents were told it was taken) for at most
// DrainTimeout; what is left after that is counted as
// dropped{reason="shutdown"}. Without a URL it only waits.
func (g *Gateway) Run(ctx context.Context) error {
	if g.opts.URL == "" {
		<-ctx.Done()
		return nil
	}
	var wg sync.WaitGroup
	unfinished := make([][]batch, len(g.shards))
	for i, s := range g.shards {
		wg.Go(func() { unfinished[i] = g.sendLoop(ctx, s, g.nudges[i]) })
	}
	wg.Wait()
	// Shutdown: a fresh deadline, so a slow backend cannot hold it up.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.opts.DrainTimeout)
	defer cancel()
	for i, s := range g.shards {
		wg.Go(func() { g.drain(dctx, unfinished[i], s) })
	}
	wg.Wait()
	g.opts.HTTPClient.CloseIdleConnections()
	return nil
}

// sendLoop forwards q's pushes, several per call, until ctx ends; it
// returns what it was still forwarding then.
func (g *Gateway) sendLoop(ctx context.Context, q chan batch, nudge <-chan struct{}) []batch {
	var (
		s    sender
		next *batch // a push collect took that starts the next call
	)
	for {
		var first batch
		if next != nil {
			first = *next
		} else {
			select {
			case <-ctx.Done():
				return nil
			case first = <-q:
			}
		}
		b, carried := collect(ctx, q, nudge, first, g.opts.BatchWait)
		if rest := g.forward(ctx, &s, b); rest != nil {
			if carried != nil {
				rest = append(rest, *carried)
			}
			return rest
		}
		g.release(b)
		next = carried
	}
}

// collect returns first and the pushes queued behind it, until they hold
// batchBytes or a second push of a cluster comes, which it returns apart
// to start the next call. With a wait, it gives others that long to join
// first: it sleeps and takes what is queued when the wait ends, or earlier
// when nudge says the queue is half full, rather than waking for each
// push as it comes (at 10,000 agents, 40 wake-ups of the sender per call
// instead of one or two).
func collect(ctx context.Context, q chan batch, nudge <-chan struct{}, first batch, wait time.Duration) ([]batch, *batch) {
	b := []batch{first}
	size := len(first.raw)
	clusters := map[string]bool{first.cluster: true}
	// take adds what is queued now, and says whether the call is complete
	// (with the push that starts the next one, if that is why).
	take := func() (*batch, bool) {
		for size < batchBytes {
			select {
			case p := <-q:
				if clusters[p.cluster] {
					return &p, true
				}
				clusters[p.cluster] = true
				b, size = append(b, p), size+len(p.raw)
			default:
				return nil, false
			}
		}
		return nil, true
	}
	if carried, done := take(); done || wait <= 0 {
		return b, carried
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-nudge:
			if carried, done := take(); done {
				return b, carried
			}
		case <-t.C:
			carried, _ := take()
			return b, carried
		case <-ctx.Done():
			return b, nil
		}
	}
}

// drain forwards first, then everything queued in q, until ctx ends;
// what it could not forward is counted as dropped at shutdown.
func (g *Gateway) drain(ctx context.Context, first []batch, q chan batch) {
	var s sender
	lost := func(b []batch) {
		for _, p := range b {
			g.dropped.WithLabelValues(ReasonShutdown).Add(float64(p.samples))
		}
	}
	if first != nil {
		lost(g.forward(ctx, &s, first))
		g.release(first)
	}
	for {
		select {
		case p := <-q:
			for next := &p; next != nil; {
				var b []batch
				b, next = collect(ctx, q, nil, *next, 0)
				if ctx.Err() != nil {
					lost(b)
					continue
				}
				lost(g.forward(ctx, &s, b))
				g.release(b)
			}
		default:
			return
		}
	}
}

// sender holds a sender's body buffer, reused from one call to the next.
type sender struct{ body []byte }

// encode returns b as one compressed WriteRequest, valid until the next
// call, without ever holding the call uncompressed (the pushes joined
// before compressing took 33 MB in the 4 senders at 10,000 agents with
// 200 series each). A snappy block is its decoded length followed by
// elements, each a literal or a copy of bytes decoded before it, which
// never reaches back past the start of what its encoder was given. So
// each push is compressed on its own, in place at the end of the body,
// and its elements follow the call's one length.
func (s *sender) encode(b []batch) []byte {
	size := 0
	for _, p := range b {
		size += len(p.raw)
	}
	s.body = binary.AppendUvarint(s.body[:0], uint64(size))
	for _, p := range b {
		at := len(s.body)
		s.body = slices.Grow(s.body, s2.MaxEncodedLen(len(p.raw)))
		block := encode(s.body[at:at], p.raw)
		_, n := binary.Uvarint(block)
		s.body = append(s.body[:at], block[n:]...)
	}
	// Keep what a usual call needs, not what the largest one took.
	if cap(s.body) > 2*batchBytes {
		defer func() { s.body = nil }()
	}
	return s.body
}

// forward delivers b, retrying what may succeed later; it returns the
// pushes it had not delivered when ctx ended, nil once all are delivered
// or refused for good.
func (g *Gateway) forward(ctx context.Context, s *sender, b []batch) []batch {
	body := s.encode(b)
	bo := backoff.Backoff{Base: g.opts.BackoffMin, Max: g.opts.BackoffMax}
	for {
		retryAfter, err := g.send(ctx, body)
		var perm *permanentError
		switch {
		case err == nil:
			for _, p := range b {
				g.forwarded.Add(float64(p.samples))
			}
			return nil
		case errors.As(err, &perm) && len(b) > 1:
			// Perhaps one push's samples made the backend refuse all of
			// them (see Batches in the package comment).
			for i := range b {
				if rest := g.forward(ctx, s, b[i:i+1]); rest != nil {
					return b[i:]
				}
			}
			return nil
		case errors.As(err, &perm):
			g.dropped.WithLabelValues(ReasonRejected).Add(float64(b[0].samples))
			g.logger.Warn("remote-write backend refused samples; dropped", "cluster", b[0].cluster, "samples", b[0].samples, "err", err)
			return nil
		}
		if ctx.Err() != nil {
			return b
		}
		g.failures.Inc()
		wait := bo.Next(retryAfter)
		g.logger.Warn("remote-write backend unavailable; retrying", "err", err, "retryIn", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return b
		}
	}
}

// permanentError is a refusal that retrying cannot fix.
type permanentError struct{ msg string }

func (e *permanentError) Error() string { return e.msg }

// send makes one call to the backend.
func (g *Gateway) send(ctx context.Context, body []byte) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, g.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, g.opts.URL, bytes.NewReader(body))
	if err != nil {
		return 0, &permanentError{msg: err.Error()}
	}
	SetHeaders(req.Header)
	resp, err := g.opts.HTTPClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("post to remote-write backend: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return 0, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode/100 == 5:
		return parseRetryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("remote-write backend answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
	default:
		return 0, &permanentError{msg: fmt.Sprintf("remote-write backend answered %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))}
	}
}

// SetHeaders sets the headers of a remote-write 1.0 request.
func SetHeaders(h http.Header) {
	h.Set("Content-Encoding", "snappy")
	h.Set("Content-Type", "application/x-protobuf")
	h.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	h.Set("User-Agent", "ecp-remote-write")
}

func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
