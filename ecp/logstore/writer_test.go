package logstore

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agentproto"
)

func newTestWriter(t *testing.T, cfg ReceiverConfig, opts WriterOptions) (*Writer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	w, err := NewWriter(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w, reg
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s %v not found", name, labels)
	return 0
}

func TestWriterWritesBulkAsElasticsearchDocuments(t *testing.T) {
	es := newFakeES(t)
	w, reg := newTestWriter(t, es.cfg(), fastOptions())
	start := time.Date(2026, 11, 27, 23, 59, 59, 999_000_000, time.FixedZone("CET", 3600))
	lines := testLines(3, start, "warning")
	lines[1].Node = "emqx@10.0.0.2"
	res, err := w.Write(t.Context(), Batch{Project: "p1", Cluster: "c1", Node: "emqx@10.0.0.1", BatchID: "b1", Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 || len(res.Rejected) != 0 || res.Duplicate {
		t.Fatalf("result %+v", res)
	}
	if len(es.templates) != 1 || es.templates[0] != "logs" {
		t.Fatalf("templates %v, want [logs]", es.templates)
	}
	if len(es.bulks) != 1 {
		t.Fatalf("%d bulk requests, want 1", len(es.bulks))
	}
	b := es.bulks[0]
	if !strings.Contains(b.Query, "filter_path=") {
		t.Errorf("bulk query %q lacks filter_path", b.Query)
	}
	for i, d := range b.Docs {
		wantNode := "emqx@10.0.0.1"
		if i == 1 {
			wantNode = "emqx@10.0.0.2"
		}
		if d.Project != "p1" || d.Cluster != "c1" || d.Node != wantNode || d.Level != "warning" ||
			d.Message != lines[i].Message || d.Raw != lines[i].Raw || d.File != "emqx.log.1" || d.Offset != lines[i].Offset ||
			d.Fields["clientid"] != lines[i].Fields["clientid"] {
			t.Errorf("doc %d = %+v", i, d)
		}
		// 23:59:59.999 CET is 22:59:59.999 UTC, the UTC day names the index.
		if d.Time != lines[i].Time.UTC().Format(timeLayout) || b.Actions[i].Index.Index != "logs-2026.11.27" {
			t.Errorf("doc %d time %s index %s", i, d.Time, b.Actions[i].Index.Index)
		}
		if d.ID != LineID("c1", &lines[i]) {
			t.Errorf("doc %d id %s", i, d.ID)
		}
	}
	if got := counter(t, reg, "ecp_logstore_lines_written_total"); got != 3 {
		t.Errorf("lines written %v", got)
	}
	if got := counter(t, reg, "ecp_logstore_bulk_requests_total", "outcome", "success"); got != 1 {
		t.Errorf("successful bulks %v", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func TestLineIDIsDeterministicAndDistinguishesWrappedFiles(t *testing.T) {
	base := agentproto.LogEntry{Time: time.Unix(100, 5), File: "emqx.log.1", Offset: 42, Raw: "a"}
	other := func(f func(e *agentproto.LogEntry)) agentproto.LogEntry { e := base; f(&e); return e }
	id := LineID("c1", &base)
	if !isLineID(id) {
		t.Fatalf("id %q is not 32 letters a..p", id)
	}
	same := base
	if LineID("c1", &same) != id {
		t.Fatal("same line, different id")
	}
	for name, e := range map[string]agentproto.LogEntry{
		"offset":           other(func(e *agentproto.LogEntry) { e.Offset = 43 }),
		"file":             other(func(e *agentproto.LogEntry) { e.File = "emqx.log.2" }),
		"wrapped new line": other(func(e *agentproto.LogEntry) { e.Time = time.Unix(200, 0); e.Raw = "b" }),
	} {
		t.Run(name, func(t *testing.T) {
			if LineID("c1", &e) == id {
				t.Fatal("different line, same id")
			}
		})
	}
	if LineID("c2", &base) == id {
		t.Fatal("other cluster, same id")
	}
}

func TestWriterReportsRejectedDocumentsAndRetriesTransientOnes(t *testing.T) {
	es := newFakeES(t)
	es.reply = func(n int, b fakeBulk) (int, http.Header, any) {
		if n > 0 {
			return http.StatusOK, nil, bulkOK(len(b.Docs))
		}
		// Documented partial failure: item 1 has a mapping error (never
		// retryable), item 2 hit a full write queue (retryable).
		return http.StatusOK, nil, map[string]any{"took": 5, "errors": true, "items": []any{
			bulkItem(201, "", ""),
			bulkItem(400, "mapper_parsing_exception", "failed to parse field [offset] of type [long]"),
			bulkItem(429, "es_rejected_execution_exception", "rejected execution of coordinating operation"),
			bulkItem(200, "", ""),
		}}
	}
	w, reg := newTestWriter(t, es.cfg(), fastOptions())
	lines := testLines(4, time.Now(), "error")
	res, err := w.Write(t.Context(), Batch{Project: "p", Cluster: "c", BatchID: "b", Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 3 || len(res.Rejected) != 1 {
		t.Fatalf("result %+v", res)
	}
	r := res.Rejected[0]
	if r.Line != 1 || r.Status != 400 || r.Type != "mapper_parsing_exception" || r.File != "emqx.log.1" || r.Offset != 100 ||
		!strings.Contains(r.Error(), "failed to parse field [offset]") {
		t.Fatalf("rejected %+v (%s)", r, r.Error())
	}
	if len(es.bulks) != 2 || len(es.bulks[1].Docs) != 1 || es.bulks[1].Docs[0].ID != LineID("c", &lines[2]) {
		t.Fatalf("retry bulk %+v, want only line 2", es.bulks)
	}
	for name, want := range map[string]float64{
		"ecp_logstore_lines_written_total":      3,
		"ecp_logstore_documents_rejected_total": 1,
		"ecp_logstore_retries_total":            1,
	} {
		if got := counter(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := counter(t, reg, "ecp_logstore_bulk_requests_total", "outcome", "partial"); got != 1 {
		t.Errorf("partial bulks %v", got)
	}
}

func TestWriterTransientFailures(t *testing.T) {
	tests := []struct {
		name string
		// reply answers bulk request n.
		reply func(n int) (int, http.Header, any)
		// wantBulks is how many bulk requests the fake sees.
		wantOK, wantOverloaded bool
	}{
		{
			name: "429 with Retry-After then success",
			reply: func(n int) (int, http.Header, any) {
				if n == 0 {
					return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}},
						map[string]any{"error": map[string]any{"type": "es_rejected_execution_exception", "reason": "rejected"}, "status": 429}
				}
				return http.StatusOK, nil, bulkOK(5)
			},
			wantOK: true,
		},
		{
			name: "503 twice then success",
			reply: func(n int) (int, http.Header, any) {
				if n < 2 {
					return http.StatusServiceUnavailable, nil, map[string]any{"error": "unavailable", "status": 503}
				}
				return http.StatusOK, nil, bulkOK(5)
			},
			wantOK: true,
		},
		{
			name: "always 503: backpressure",
			reply: func(int) (int, http.Header, any) {
				return http.StatusServiceUnavailable, nil, map[string]any{"error": "master_not_discovered_exception", "status": 503}
			},
		},
		{
			name: "always 429: backpressure, overloaded",
			reply: func(int) (int, http.Header, any) {
				return http.StatusTooManyRequests, http.Header{"Retry-After": {"7"}}, map[string]any{"status": 429}
			},
			wantOverloaded: true,
		},
		{
			name: "items keep failing with 429: backpressure",
			reply: func(int) (int, http.Header, any) {
				items := make([]any, 5)
				for i := range items {
					items[i] = bulkItem(429, "es_rejected_execution_exception", "queue full")
				}
				return http.StatusOK, nil, map[string]any{"errors": true, "items": items}
			},
			wantOverloaded: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := newFakeES(t)
			es.reply = func(n int, _ fakeBulk) (int, http.Header, any) { return tt.reply(n) }
			opts := fastOptions()
			began := opts.Now()
			w, reg := newTestWriter(t, es.cfg(), opts)
			res, err := w.Write(t.Context(), Batch{Project: "p", Cluster: "c", BatchID: "b", Lines: testLines(5, time.Now(), "info")})
			if tt.wantOK {
				if err != nil || res.Accepted != 5 {
					t.Fatalf("Write = %+v, %v", res, err)
				}
				if counter(t, reg, "ecp_logstore_retries_total") == 0 {
					t.Error("no retry counted")
				}
				return
			}
			bp, ok := errors.AsType[*BackpressureError](err)
			if !ok || !errors.Is(err, ErrBackpressure) {
				t.Fatalf("err %v, want backpressure", err)
			}
			if bp.Pending != 5 || bp.Overloaded != tt.wantOverloaded || bp.RetryAfter <= 0 {
				t.Fatalf("backpressure %+v", bp)
			}
			if es.bulkCount() < 2 {
				t.Fatalf("%d bulk requests: no retry before giving up", es.bulkCount())
			}
			if spent := opts.Now().Sub(began); spent > opts.MaxRetryTime || spent < opts.MaxRetryTime/2 {
				t.Fatalf("gave up after %s of retrying, want about %s", spent, opts.MaxRetryTime)
			}
			if got := counter(t, reg, "ecp_logstore_backpressure_total"); got != 1 {
				t.Errorf("backpressure counted %v", got)
			}
		})
	}
}

func TestWriterStoreUnreachableIsBackpressure(t *testing.T) {
	es := newFakeES(t)
	cfg := es.cfg()
	es.srv.Close()
	w, reg := newTestWriter(t, cfg, fastOptions())
	_, err := w.Write(t.Context(), Batch{Project: "p", Cluster: "c", Lines: testLines(2, time.Now(), "info")})
	if !errors.Is(err, ErrBackpressure) || !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v, want backpressure wrapping unreachable", err)
	}
	if counter(t, reg, "ecp_logstore_retries_total") < 2 {
		t.Fatal("gave up without retrying")
	}
}

func TestWriterPermanentFailuresAreNotBackpressure(t *testing.T) {
	es := newFakeES(t)
	cfg := es.cfg()
	cfg.Password = "wrong-password"
	var logs bytes.Buffer
	opts := fastOptions()
	opts.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w, _ := newTestWriter(t, cfg, opts)
	_, err := w.Write(t.Context(), Batch{Project: "p", Cluster: "c", Lines: testLines(2, time.Now(), "info")})
	if err == nil || errors.Is(err, ErrBackpressure) || !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err %v, want unauthorized, not backpressure", err)
	}
	if strings.Contains(err.Error(), "wrong-password") || strings.Contains(logs.String(), "wrong-password") {
		t.Fatal("password leaked into an error or a log")
	}
}

func TestWriterSplitsLargeBatches(t *testing.T) {
	es := newFakeES(t)
	opts := fastOptions()
	opts.MaxBulkDocs = 3
	w, reg := newTestWriter(t, es.cfg(), opts)
	res, err := w.Write(t.Context(), Batch{Project: "p", Cluster: "c", Lines: testLines(10, time.Now(), "info")})
	if err != nil || res.Accepted != 10 {
		t.Fatalf("Write = %+v, %v", res, err)
	}
	var sizes []int
	seen := map[string]bool{}
	for _, b := range es.bulks {
		sizes = append(sizes, len(b.Docs))
		for _, d := range b.Docs {
			if seen[d.ID] {
				t.Fatalf("doc %s sent twice", d.ID)
			}
			seen[d.ID] = true
		}
	}
	if len(sizes) != 4 || sizes[0] != 3 || sizes[3] != 1 || len(seen) != 10 {
		t.Fatalf("bulk sizes %v", sizes)
	}
	if got := counter(t, reg, "ecp_logstore_lines_written_total"); got != 10 {
		t.Errorf("lines written %v", got)
	}
}

func TestWriterSkipsStoredBatchesAndLines(t *testing.T) {
	es := newFakeES(t)
	failSecondChunk := true
	es.reply = func(n int, b fakeBulk) (int, http.Header, any) {
		if n == 1 && failSecondChunk {
			return http.StatusServiceUnavailable, nil, map[string]any{"status": 503}
		}
		return http.StatusOK, nil, bulkOK(len(b.Docs))
	}
	opts := fastOptions()
	opts.MaxBulkDocs = 3
	opts.MaxRetryTime = time.Millisecond // give up at once
	w, reg := newTestWriter(t, es.cfg(), opts)
	batch := Batch{Project: "p", Cluster: "c", BatchID: "agent-7", Lines: testLines(6, time.Now(), "info")}

	// First attempt: chunk 1 stored, chunk 2 fails.
	if _, err := w.Write(t.Context(), batch); !errors.Is(err, ErrBackpressure) {
		t.Fatalf("first attempt err %v", err)
	}
	// The agent retries the whole batch: only chunk 2 is sent again.
	es.mu.Lock()
	failSecondChunk = false
	es.bulks = nil
	es.mu.Unlock()
	res, err := w.Write(t.Context(), batch)
	if err != nil || res.Accepted != 6 || res.Duplicate {
		t.Fatalf("retry = %+v, %v", res, err)
	}
	if len(es.bulks) != 1 || len(es.bulks[0].Docs) != 3 || es.bulks[0].Docs[0].ID != LineID("c", &batch.Lines[3]) {
		t.Fatalf("retry sent %+v, want lines 3..5 only", es.bulks)
	}
	// A third delivery (the ack was lost) writes nothing.
	res, err = w.Write(t.Context(), batch)
	if err != nil || !res.Duplicate || res.Accepted != 6 || len(es.bulks) != 1 {
		t.Fatalf("duplicate = %+v, %v, %d bulks", res, err, len(es.bulks))
	}
	if got := counter(t, reg, "ecp_logstore_batches_deduplicated_total"); got != 1 {
		t.Errorf("deduplicated %v", got)
	}
	// The same batch id from another cluster is another batch.
	res, err = w.Write(t.Context(), Batch{Project: "p", Cluster: "c2", BatchID: "agent-7", Lines: batch.Lines})
	if err != nil || res.Duplicate {
		t.Fatalf("other cluster = %+v, %v", res, err)
	}
}

func TestDedupWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := newDedupWindow(time.Minute, 2)
	if s, _ := d.begin("a", t0); s != dedupNew {
		t.Fatal("a should be new")
	}
	if s, _ := d.begin("a", t0); s != dedupInFlight {
		t.Fatal("a should be in flight")
	}
	d.end("a", false, map[string]struct{}{"x": {}}, t0)
	s, prev := d.begin("a", t0.Add(time.Second))
	if _, ok := prev["x"]; s != dedupNew || !ok {
		t.Fatalf("a after failure: %v %v", s, prev)
	}
	d.end("a", true, nil, t0.Add(time.Second))
	if s, _ := d.begin("a", t0.Add(30*time.Second)); s != dedupDone {
		t.Fatal("a should be done within the window")
	}
	if s, _ := d.begin("a", t0.Add(2*time.Minute)); s != dedupNew {
		t.Fatal("a should have expired")
	}
	d.end("a", true, nil, t0.Add(2*time.Minute))
	// Size bound: b and c push a out.
	for _, k := range []string{"b", "c"} {
		d.begin(k, t0.Add(2*time.Minute))
		d.end(k, true, nil, t0.Add(2*time.Minute))
	}
	if s, _ := d.begin("a", t0.Add(2*time.Minute)); s != dedupNew {
		t.Fatal("a should have been evicted by size")
	}
}

func TestWriterNeedsAConfiguration(t *testing.T) {
	w, err := NewWriter(fastOptions())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(t.Context(), Batch{Lines: testLines(1, time.Now(), "info")}); !errors.Is(err, ErrNotConfigured) {
		t.Fatalf("err %v", err)
	}
	if err := w.Configure(ReceiverConfig{Type: "splunk", URL: "http://x"}); err == nil {
		t.Fatal("bad config accepted")
	}
	if _, err := NewWriter(WriterOptions{}); err == nil {
		t.Fatal("writer without logger accepted")
	}
}

func TestWriterMetricsRegisterOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := fastOptions()
	opts.Registerer = reg
	if _, err := NewWriter(opts); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(opts); err == nil {
		t.Fatal("second writer on the same registry should fail, not panic")
	}
}

func TestWriterBackpressureWhileBusy(t *testing.T) {
	es := newFakeES(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	es.reply = func(n int, b fakeBulk) (int, http.Header, any) {
		if n == 0 {
			entered <- struct{}{}
			<-release
		}
		return http.StatusOK, nil, bulkOK(len(b.Docs))
	}
	opts := fastOptions()
	opts.MaxInFlight = 1
	opts.QueueWait = 5 * time.Millisecond
	opts.MaxRetryTime = 20 * time.Millisecond
	w, _ := newTestWriter(t, es.cfg(), opts)
	batch := Batch{Project: "p", Cluster: "c", BatchID: "slow", Lines: testLines(2, time.Now(), "info")}
	first := make(chan error, 1)
	go func() {
		_, err := w.Write(t.Context(), batch)
		first <- err
	}()
	<-entered

	// The agent's retry of the batch in flight must not race it.
	_, err := w.Write(t.Context(), batch)
	if bp, ok := errors.AsType[*BackpressureError](err); !ok || !bp.Overloaded {
		t.Fatalf("same batch in flight: %v", err)
	}
	// Another batch finds no free request slot: backpressure, not a queue.
	_, err = w.Write(t.Context(), Batch{Project: "p", Cluster: "c", BatchID: "other", Lines: testLines(2, time.Now(), "info")})
	if bp, ok := errors.AsType[*BackpressureError](err); !ok || !bp.Overloaded {
		t.Fatalf("no free slot: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first write: %v", err)
	}
	if es.bulkCount() != 1 {
		t.Fatalf("%d bulk requests, want only the first batch's", es.bulkCount())
	}
}

func TestWriterRefusesUnscopedBatches(t *testing.T) {
	es := newFakeES(t)
	w, _ := newTestWriter(t, es.cfg(), fastOptions())
	for _, b := range []Batch{{Cluster: "c"}, {Project: "p"}} {
		b.Lines = testLines(1, time.Now(), "info")
		if _, err := w.Write(t.Context(), b); err == nil {
			t.Fatalf("batch %+v accepted", b)
		}
	}
	if es.bulkCount() != 0 {
		t.Fatal("unscoped lines reached the store")
	}
}

func TestWriterTruncatesHugeLines(t *testing.T) {
	es := newFakeES(t)
	w, _ := newTestWriter(t, es.cfg(), fastOptions())
	lines := testLines(1, time.Now(), "info")
	huge := strings.Repeat("é", MaxFieldBytes) // 2 bytes each
	lines[0].Raw, lines[0].Message, lines[0].Fields = huge, huge, map[string]string{"payload": huge, "k": "v"}
	if _, err := w.Write(t.Context(), Batch{Project: "p", Cluster: "c", Lines: lines}); err != nil {
		t.Fatal(err)
	}
	d := es.bulks[0].Docs[0]
	for name, v := range map[string]string{"raw": d.Raw, "message": d.Message, "field": d.Fields["payload"]} {
		if len(v) > MaxFieldBytes+64 || !strings.HasSuffix(v, "…[truncated 32768 bytes]") || !utf8ValidString(v) {
			t.Errorf("%s: %d bytes, ends %q", name, len(v), v[len(v)-30:])
		}
	}
	if d.Fields["k"] != "v" || d.ID != LineID("c", &lines[0]) {
		t.Errorf("doc %+v", d.Fields["k"])
	}
}

func utf8ValidString(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
