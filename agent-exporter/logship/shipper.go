package logship

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/backoff"
)

// Defaults of Options.
const (
	DefaultMaxBatchLines = 4000
	DefaultMaxInFlight   = 8
	DefaultMaxBatchBytes = 1 << 20
	DefaultMaxLineBytes  = 64 << 10
	DefaultPollInterval  = 250 * time.Millisecond
	DefaultBackoffBase   = 500 * time.Millisecond
	DefaultBackoffMax    = 30 * time.Second
)

// Sender delivers a batch to ecp (agentproto.PathLogs): body is the JSON of
// an agentproto.LogBatch. It returns nil only when ecp acknowledged the
// batch as stored.
type Sender interface {
	SendLogs(ctx context.Context, body []byte) (agentproto.LogBatchResponse, error)
}

// Options configure a Shipper.
type Options struct {
	// Dir is EMQX's log directory.
	Dir string
	// StateDir holds OffsetsFile (the agent's state directory).
	StateDir string
	// Cluster is the registration the offsets belong to; another cluster
	// starts over.
	Cluster string
	// Node names the EMQX node whose logs Dir holds, asked for every
	// batch (the agent learns it from EMQX); nil or "" leaves it empty.
	Node func() string
	// MaxBatchLines and MaxBatchBytes bound one batch (and so the memory
	// the shipper holds); MaxLineBytes bounds one line.
	MaxBatchLines, MaxBatchBytes, MaxLineBytes int
	// MaxInFlight is how many batches may be unacknowledged at once.
	MaxInFlight int
	// PollInterval is how often the directory is looked at when there is
	// nothing new.
	PollInterval time.Duration
	// BackoffBase and BackoffMax shape the jittered exponential backoff
	// between attempts of one batch; a Retry-After from ecp is a floor.
	BackoffBase, BackoffMax time.Duration
	// RetryAfter extracts ecp's Retry-After from a Sender error.
	RetryAfter func(error) time.Duration
	// Permanent reports errors after which the shipper must stop (the
	// credential was revoked).
	Permanent func(error) bool

	Sender  Sender
	Logger  *slog.Logger
	Metrics *Metrics
	// Now is the clock (tests).
	Now func() time.Time
}

// Metrics are the shipper's counters, shared by the shippers one agent
// runs over its life.
type Metrics struct {
	linesRead, linesShipped, batches, retried, skippedBytes prometheus.Counter
	behind                                                  prometheus.Gauge
}

// NewMetrics registers the shipper's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		linesRead: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_log_lines_read_total", Help: "EMQX log lines read from the log files and put into a batch (a resent batch counts again).",
		}),
		linesShipped: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_log_lines_shipped_total", Help: "EMQX log lines ecp acknowledged as stored.",
		}),
		batches: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_log_batches_shipped_total", Help: "Log batches ecp acknowledged.",
		}),
		retried: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_log_batches_retried_total", Help: "Log batch attempts that failed and were retried (ecp or its log store unreachable, backpressure).",
		}),
		skippedBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_log_bytes_lost_total", Help: "Bytes of log files EMQX overwrote (wrap-around) or truncated before they were shipped.",
		}),
		behind: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_log_bytes_behind", Help: "Bytes of the EMQX log files not yet acknowledged by ecp.",
		}),
	}
}

// Shipper tails one EMQX log directory and ships it to ecp. Run it once.
type Shipper struct {
	opts  Options
	log   *slog.Logger
	m     *Metrics
	path  string
	state offsets
	// sizes remembers each fingerprint's last seen size, to count what a
	// wrap-around overwrote unread.
	sizes map[string]int64
	// node is Options.Node's answer for the batch being built.
	node string
	// pending are the batches sent and not yet folded into the acked
	// offsets, in file order; pos is where reading goes on per file
	// (the end of the last built batch); resume are the batches found in
	// flight on disk at start, sent first.
	pending []*batch
	pos     map[string]int64
	resume  []inFlight
}

// New checks opts and returns a Shipper.
func New(opts Options) (*Shipper, error) {
	if opts.Dir == "" || opts.StateDir == "" || opts.Sender == nil || opts.Logger == nil || opts.Metrics == nil {
		return nil, errors.New("logship: Dir, StateDir, Sender, Logger and Metrics are required")
	}
	if opts.MaxBatchLines <= 0 {
		opts.MaxBatchLines = DefaultMaxBatchLines
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	opts.MaxLineBytes = min(opts.MaxLineBytes, opts.MaxBatchBytes)
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = DefaultBackoffBase
	}
	if opts.BackoffMax < opts.BackoffBase {
		opts.BackoffMax = max(DefaultBackoffMax, opts.BackoffBase)
	}
	if opts.RetryAfter == nil {
		opts.RetryAfter = func(error) time.Duration { return 0 }
	}
	if opts.Permanent == nil {
		opts.Permanent = func(error) bool { return false }
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Shipper{opts: opts, log: opts.Logger, m: opts.Metrics, path: filepath.Join(opts.StateDir, OffsetsFile), sizes: map[string]int64{}}, nil
}

// batch is a built batch and the byte ranges it covers.
type batch struct {
	id       string
	segments []segment
	lines    []agentproto.LogEntry
	// done is set once ecp acknowledged the batch.
	done bool
}

// Run ships until ctx ends or the Sender reports a permanent error (which
// it returns). Up to Options.MaxInFlight batches are sent at once, so
// reading, ecp and the store work side by side; the acknowledged offsets
// advance only over a prefix of acknowledged batches, in file order. The
// batches in flight when the agent stopped are sent first, with their old
// ids.
func (s *Shipper) Run(ctx context.Context) error {
	st, err := loadOffsets(s.path, s.opts.Dir, s.opts.Cluster)
	if err != nil {
		// A damaged offsets file must not stop collection; starting over
		// duplicates rather than loses.
		s.log.Error("cannot read log offsets; starting from the beginning of the files", "err", err)
	}
	s.state, s.resume, s.pending, s.pos = st, st.InFlight, nil, map[string]int64{}
	s.state.InFlight = nil
	s.log.Info("log collection started", "dir", s.opts.Dir)
	defer s.log.Info("log collection stopped", "dir", s.opts.Dir)

	sendCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	acked := make(chan *batch)
	failed := make(chan error, 1)
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		for len(s.pending) < s.opts.MaxInFlight {
			b, err := s.next()
			if err != nil {
				s.log.Warn("cannot read the emqx log dir", "dir", s.opts.Dir, "err", err)
			}
			if b == nil {
				break
			}
			// Recorded as in flight before it goes out: after a crash
			// the same ranges go out again under the same id.
			s.pending = append(s.pending, b)
			if err := s.save(); err != nil {
				s.log.Error("cannot save log offsets; not sending", "path", s.path, "err", err)
				s.pending = s.pending[:len(s.pending)-1]
				s.resume, s.pos = nil, map[string]int64{}
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.send(sendCtx, b); err != nil {
					if sendCtx.Err() != nil {
						return // stopping, not failing
					}
					select {
					case failed <- err:
					default:
					}
					return
				}
				select {
				case acked <- b:
				case <-sendCtx.Done():
				}
			}()
		}
		if len(s.pending) < s.opts.MaxInFlight {
			poll.Reset(s.opts.PollInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case b := <-acked:
			b.done = true
			s.advance()
		case <-poll.C:
		}
	}
}

// inFlight lists the pending batches for the offsets file.
func (s *Shipper) save() error {
	s.state.InFlight = s.state.InFlight[:0]
	for _, b := range s.pending {
		s.state.InFlight = append(s.state.InFlight, inFlight{ID: b.id, Segments: b.segments})
	}
	return s.state.save(s.path)
}

// send delivers one batch, retrying until ecp acknowledges it, ctx ends
// (ctx.Err()) or the Sender reports a permanent error.
func (s *Shipper) send(ctx context.Context, b *batch) error {
	// Encoded once, and the parsed lines let go: a batch waiting for
	// ecp holds only its JSON (encoding/json/v2 from go-json-experiment,
	// less than half the CPU of v1).
	n := len(b.lines)
	body, err := jsonv2.Marshal(agentproto.LogBatch{BatchID: b.id, Lines: b.lines}, jsontext.AllowInvalidUTF8(true))
	if err != nil {
		return fmt.Errorf("encoding log batch: %w", err)
	}
	b.lines = nil
	bo := backoff.Backoff{Base: s.opts.BackoffBase, Max: s.opts.BackoffMax}
	for {
		_, err := s.opts.Sender.SendLogs(ctx, body)
		if err == nil {
			s.m.linesShipped.Add(float64(n))
			s.m.batches.Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.opts.Permanent(err) {
			return err
		}
		s.m.retried.Inc()
		wait := bo.Next(s.opts.RetryAfter(err))
		s.log.Warn("log batch not accepted; retrying", "batch", b.id, "lines", n, "retryIn", wait, "err", err)
		if backoff.Sleep(ctx, wait) != nil {
			return ctx.Err()
		}
	}
}

// advance moves the acknowledged offsets over the acknowledged batches at
// the head of the pending list and saves them.
func (s *Shipper) advance() {
	n := 0
	for n < len(s.pending) && s.pending[n].done {
		for _, sg := range s.pending[n].segments {
			s.state.Acked[sg.Fingerprint] = sg.To
		}
		n++
	}
	if n == 0 {
		return
	}
	s.pending = s.pending[n:]
	if err := s.save(); err != nil {
		// The batches stay recorded as in flight on disk: after a
		// restart they are sent again under their ids and ecp
		// recognises them.
		s.log.Error("cannot save log offsets", "path", s.path, "err", err)
	}
}

// position is where reading file fp goes on: after the last batch built.
func (s *Shipper) position(fp string) int64 {
	if p, ok := s.pos[fp]; ok {
		return p
	}
	return s.state.Acked[fp]
}

// next returns the next batch to send: first the ones in flight when the
// agent last stopped, if their bytes are still there, else the next lines
// after the read position. nil means nothing to send.
func (s *Shipper) next() (*batch, error) {
	files, err := scan(s.opts.Dir)
	if err != nil {
		return nil, err
	}
	if s.opts.Node != nil {
		s.node = s.opts.Node()
	}
	byFP := make(map[string]logFile, len(files))
	for _, f := range files {
		byFP[f.fingerprint] = f
	}
	s.forget(byFP)
	if len(s.resume) > 0 {
		inf := s.resume[0]
		s.resume = s.resume[1:]
		if b := s.rebuild(&inf, byFP); b != nil {
			return b, nil
		}
		// EMQX overwrote part of it meanwhile: go on from the read
		// position; later in-flight batches cannot follow it.
		s.resume = nil
	}
	return s.build(files)
}

// forget drops the offsets of files that no longer exist under any name
// (overwritten by a wrap-around or deleted), counting what was never read,
// and updates the bytes-behind gauge.
func (s *Shipper) forget(byFP map[string]logFile) {
	var behind int64
	for fp, off := range s.state.Acked {
		if _, ok := byFP[fp]; !ok {
			if size := s.sizes[fp]; size > off {
				s.m.skippedBytes.Add(float64(size - off))
				s.log.Warn("emqx overwrote log lines before they were shipped", "bytes", size-off)
			}
			delete(s.state.Acked, fp)
			delete(s.sizes, fp)
		}
	}
	for fp := range s.pos {
		if _, ok := byFP[fp]; !ok {
			delete(s.pos, fp)
		}
	}
	for fp, f := range byFP {
		s.sizes[fp] = f.size
		if d := f.size - s.state.Acked[fp]; d > 0 {
			behind += d
		}
	}
	s.m.behind.Set(float64(behind))
}

// rebuild reads the byte ranges of an unacknowledged batch again. When they
// are all still there it is the same batch under the same id; otherwise
// (EMQX overwrote a file meanwhile) nil, and shipping goes on from the
// acknowledged offsets.
func (s *Shipper) rebuild(inf *inFlight, byFP map[string]logFile) *batch {
	b := &batch{id: inf.ID}
	for _, sg := range inf.Segments {
		f, ok := byFP[sg.Fingerprint]
		if !ok || f.size < sg.To || s.position(sg.Fingerprint) != sg.From {
			return nil
		}
		end, _, err := readLines(f.path, sg.From, int(sg.To-sg.From), s.opts.MaxLineBytes, s.opts.MaxBatchLines, func(line []byte, off int64) {
			b.lines = append(b.lines, s.entry(line, f.name, off))
		})
		if err != nil || end != sg.To {
			return nil
		}
		b.segments = append(b.segments, segment{Fingerprint: sg.Fingerprint, Name: f.name, From: sg.From, To: sg.To})
	}
	for _, sg := range b.segments {
		s.pos[sg.Fingerprint] = sg.To
	}
	s.m.linesRead.Add(float64(len(b.lines)))
	return b
}

// build reads new lines, oldest file first, up to the batch limits.
func (s *Shipper) build(files []logFile) (*batch, error) {
	b := &batch{}
	room, bytesLeft := s.opts.MaxBatchLines, s.opts.MaxBatchBytes
	for _, f := range files {
		if room <= 0 || bytesLeft <= 0 {
			break
		}
		from := s.position(f.fingerprint)
		if from > f.size {
			// Same first line, shorter file: it was truncated and
			// rewritten identically so far. Read it again from the start
			// rather than lose what follows.
			from = 0
		}
		if from == f.size {
			continue
		}
		want := int(min(int64(bytesLeft), f.size-from))
		want = max(want, min(s.opts.MaxLineBytes, int(f.size-from)))
		end, n, err := readLines(f.path, from, want, s.opts.MaxLineBytes, room, func(line []byte, off int64) {
			b.lines = append(b.lines, s.entry(line, f.name, off))
		})
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.name, err)
		}
		if n == 0 {
			continue
		}
		// The file may have been overwritten while it was read: keep the
		// lines only if it still starts with the same first line.
		if fp, err := fingerprint(f.path); err != nil || fp != f.fingerprint {
			b.lines = b.lines[:len(b.lines)-n]
			continue
		}
		b.segments = append(b.segments, segment{Fingerprint: f.fingerprint, Name: f.name, From: from, To: end})
		room -= n
		bytesLeft -= int(end - from)
	}
	if len(b.lines) == 0 {
		return nil, nil
	}
	b.id = batchID(s.opts.Cluster, b.segments)
	for _, sg := range b.segments {
		s.pos[sg.Fingerprint] = sg.To
	}
	s.m.linesRead.Add(float64(len(b.lines)))
	return b, nil
}

func (s *Shipper) entry(line []byte, name string, off int64) agentproto.LogEntry {
	e := Parse(line, s.opts.Now().UTC())
	e.File, e.Offset, e.Node = name, off, s.node
	return e
}

// batchID names a batch by what it holds: the same byte ranges of the same
// file contents give the same id, also after a restart.
func batchID(cluster string, segs []segment) string {
	h := sha256.New()
	h.Write([]byte(cluster))
	for _, sg := range segs {
		h.Write([]byte{0})
		h.Write([]byte(sg.Fingerprint))
		h.Write(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(sg.From)), uint64(sg.To)))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
