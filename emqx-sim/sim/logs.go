package sim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EMQX log levels, lowest first.
var logLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

func levelRank(l string) int {
	for i, v := range logLevels {
		if v == l {
			return i
		}
	}
	return -1
}

// kv is one field of a structured log report; v is a string or an int.
type kv struct {
	k string
	v any
}

// logRecord is one EMQX log event.
type logRecord struct {
	level  string
	fields []kv
}

// textFieldOrder is the text formatter's lead order (emqx-api.md §8.2).
var textFieldOrder = []string{"tag", "clientid", "msg", "peername", "username", "topic"}

// logWriter writes EMQX log lines the way OTP disk_log does in wrap mode:
// emqx.log.1..N plus emqx.log.idx / emqx.log.siz bookkeeping, moving to the
// next file when one is full and wrapping to .1 (emqx-api.md §8.1).
type logWriter struct {
	dir      string
	format   string
	minLevel int
	maxBytes int64
	maxFiles int
	rng      *rand.Rand

	cur     int // active file index, 1-based
	f       *os.File
	w       *bufio.Writer
	written int64
	lastTS  time.Time
	lines   int64
}

func newLogWriter(dir, format, level string, maxBytes int64, maxFiles int, rng *rand.Rand) (*logWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	lw := &logWriter{dir: dir, format: format, minLevel: levelRank(level), maxBytes: maxBytes, maxFiles: maxFiles, rng: rng, cur: 1}
	// Reopen like disk_log: carry on in the newest file if one exists.
	var newest time.Time
	for i := 1; i <= maxFiles; i++ {
		st, err := os.Stat(lw.path(i))
		if err == nil && st.ModTime().After(newest) {
			newest, lw.cur = st.ModTime(), i
		}
	}
	if err := lw.open(false); err != nil {
		return nil, err
	}
	if err := lw.writeSiz(); err != nil {
		return nil, err
	}
	return lw, lw.writeIdx()
}

func (lw *logWriter) path(i int) string { return filepath.Join(lw.dir, "emqx.log."+strconv.Itoa(i)) }

func (lw *logWriter) open(truncate bool) error {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(lw.path(lw.cur), flags, 0o644)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("stat log file: %w", err)
	}
	lw.f, lw.written = f, st.Size()
	lw.w = bufio.NewWriterSize(f, 64*1024)
	return nil
}

// writeSiz stores term_to_binary({MaxBytes, MaxFiles}) as disk_log does.
func (lw *logWriter) writeSiz() error {
	b := []byte{131, 104, 2}
	for _, v := range []int64{lw.maxBytes, int64(lw.maxFiles)} {
		switch {
		case v < 256:
			b = append(b, 97, byte(v))
		case v <= 1<<31-1:
			b = append(b, 98)
			b = binary.BigEndian.AppendUint32(b, uint32(v))
		default:
			b = append(b, 110, 8, 0)
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		}
	}
	return os.WriteFile(filepath.Join(lw.dir, "emqx.log.siz"), b, 0o644)
}

// writeIdx records the active file number (a simplification of disk_log's
// index file, which readers must not rely on).
func (lw *logWriter) writeIdx() error {
	b := binary.BigEndian.AppendUint32(nil, uint32(lw.cur))
	return os.WriteFile(filepath.Join(lw.dir, "emqx.log.idx"), b, 0o644)
}

func (lw *logWriter) rotate() error {
	if err := lw.w.Flush(); err != nil {
		return fmt.Errorf("flush log file: %w", err)
	}
	if err := lw.f.Close(); err != nil {
		return fmt.Errorf("close log file: %w", err)
	}
	lw.cur = lw.cur%lw.maxFiles + 1
	if err := lw.open(true); err != nil {
		return err
	}
	return lw.writeIdx()
}

// write formats and appends records; the caller flushes.
func (lw *logWriter) write(now time.Time, recs ...logRecord) error {
	for _, rec := range recs {
		if levelRank(rec.level) < lw.minLevel {
			continue
		}
		ts := now
		if !ts.After(lw.lastTS) {
			ts = lw.lastTS.Add(time.Microsecond)
		}
		lw.lastTS = ts
		line := lw.format1(ts, rec)
		if lw.written > 0 && lw.written+int64(len(line)) > lw.maxBytes {
			if err := lw.rotate(); err != nil {
				return err
			}
		}
		n, err := lw.w.Write(line)
		lw.written += int64(n)
		if err != nil {
			return fmt.Errorf("write log line: %w", err)
		}
		lw.lines++
	}
	return nil
}

func (lw *logWriter) flush() error { return lw.w.Flush() }

func (lw *logWriter) close() error {
	if lw.f == nil {
		return nil
	}
	err := lw.w.Flush()
	if cerr := lw.f.Close(); err == nil {
		err = cerr
	}
	lw.f = nil
	return err
}

func (lw *logWriter) format1(ts time.Time, rec logRecord) []byte {
	if lw.format == "json" {
		return formatJSON(ts, rec, lw.rng)
	}
	return formatText(ts, rec)
}

func formatText(ts time.Time, rec logRecord) []byte {
	var b bytes.Buffer
	b.WriteString(ts.Format("2006-01-02T15:04:05.000000-07:00"))
	b.WriteString(" [")
	b.WriteString(rec.level)
	b.WriteString("] ")
	first := true
	put := func(f kv) {
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(f.k)
		b.WriteString(": ")
		fmt.Fprint(&b, f.v)
	}
	for _, k := range textFieldOrder {
		for _, f := range rec.fields {
			if f.k == k {
				put(f)
			}
		}
	}
	for _, f := range rec.fields {
		if !contains(textFieldOrder, f.k) {
			put(f)
		}
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func formatJSON(ts time.Time, rec logRecord, rng *rand.Rand) []byte {
	var b bytes.Buffer
	b.WriteString(`{"time":`)
	b.WriteString(strconv.FormatInt(ts.UnixMicro(), 10))
	b.WriteString(`,"level":`)
	writeJSONValue(&b, rec.level)
	for _, f := range rec.fields {
		if f.k == "msg" {
			b.WriteString(`,"msg":`)
			writeJSONValue(&b, f.v)
		}
	}
	for _, f := range rec.fields {
		if f.k == "msg" {
			continue
		}
		b.WriteByte(',')
		writeJSONValue(&b, f.k)
		b.WriteByte(':')
		writeJSONValue(&b, f.v)
	}
	fmt.Fprintf(&b, `,"pid":"<0.%d.0>","line":%d}`, 1000+rng.IntN(90000), 100+rng.IntN(900))
	b.WriteByte('\n')
	return b.Bytes()
}

func writeJSONValue(b *bytes.Buffer, v any) {
	enc, _ := json.Marshal(v)
	b.Write(enc)
}

// background writes n deterministic everyday lines.
func (lw *logWriter) background(now time.Time, n int) error {
	recs := make([]logRecord, 0, n)
	for range n {
		recs = append(recs, lw.noise())
	}
	if err := lw.write(now, recs...); err != nil {
		return err
	}
	return lw.flush()
}

// noise draws one line of the kinds EMQX writes at warning level under
// normal traffic (emqx-api.md §8.2 examples).
func (lw *logWriter) noise() logRecord {
	r := lw.rng
	client := fmt.Sprintf("client%d", r.IntN(5000))
	peer := fmt.Sprintf("10.1.%d.%d:%d", r.IntN(250), 1+r.IntN(250), 30000+r.IntN(30000))
	user := fmt.Sprintf("user%d", r.IntN(500))
	topic := fmt.Sprintf("devices/%d/telemetry", r.IntN(1000))
	switch r.IntN(5) {
	case 0:
		return logRecord{"warning", []kv{{"tag", "AUTHZ"}, {"clientid", client}, {"msg", "cannot_publish_to_topic_due_to_not_authorized"},
			{"peername", peer}, {"username", user}, {"topic", topic}, {"reason", "not_authorized"}}}
	case 1:
		return logRecord{"warning", []kv{{"tag", "AUTHZ"}, {"clientid", client}, {"msg", "authorization_permission_denied"},
			{"peername", peer}, {"username", user}, {"topic", "t/#"}, {"action", "SUBSCRIBE(Q0)"}, {"source", "file"}}}
	case 2:
		return logRecord{"warning", []kv{{"clientid", client}, {"msg", "emqx_session_mem_unknown_message"}, {"peername", peer},
			{"username", user}, {"message", fmt.Sprintf("{'EXIT',<0.%d.0>,normal}", 1000+r.IntN(900000))}}}
	case 3:
		return logRecord{"warning", []kv{{"msg", "log_events_throttled_during_last_period"}, {"period", "1 minutes, 0 seconds"},
			{"dropped", fmt.Sprintf("#{authorization_permission_denied => %d}", 1+r.IntN(20))}}}
	default:
		return logRecord{"info", []kv{{"clientid", client}, {"msg", "terminate"}, {"peername", peer}, {"username", user},
			{"reason", "{shutdown,tcp_closed}"}}}
	}
}

// WriteLogs writes n background log lines at once, across as many rotations
// as they need, with strictly increasing timestamps from the clock; it is how
// tests produce large, deterministic logs quickly. It returns an error when
// the simulator has no LogDir.
func (s *Sim) WriteLogs(n int) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return fmt.Errorf("write logs: no log dir configured")
	}
	const batch = 4096
	for n > 0 {
		k := min(n, batch)
		recs := make([]logRecord, 0, k)
		for range k {
			recs = append(recs, s.logs.noise())
		}
		if err := s.logs.write(now, recs...); err != nil {
			return err
		}
		n -= k
	}
	return s.logs.flush()
}

// LogLinesWritten counts the lines written to the log files so far.
func (s *Sim) LogLinesWritten() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return 0
	}
	return s.logs.lines
}

// emit writes fault lines if logging to files; errors go to the sim logger.
func (s *Sim) emit(now time.Time, recs ...logRecord) {
	if s.logs == nil {
		return
	}
	err := s.logs.write(now, recs...)
	if err == nil {
		err = s.logs.flush()
	}
	if err != nil {
		s.logger.Error("write emqx log", "err", err)
	}
}

func (s *Sim) logConnectorDown(now time.Time, c *connector) {
	c.lastHC = now
	s.emit(now, logRecord{"warning", []kv{{"msg", "health_check_failed"}, {"resource_id", "connector:" + c.id()},
		{"status", "disconnected"}}})
}

func (s *Sim) logRuleFailed(now time.Time, ru *rule) {
	s.emit(now, logRecord{"warning", []kv{{"msg", "SELECT_clause_exception"}, {"rule_id", ru.id}, {"reason", ru.failReason}}})
}

func (s *Sim) logLicenseRejected(now time.Time) {
	s.emit(now, logRecord{"error", []kv{{"tag", "LICENSE"}, {"msg", "connection_rejected_due_to_license_limit_reached"}}})
}

func (s *Sim) logAlarm(now time.Time, name, message string, activated bool) {
	msg := "alarm_is_deactivated"
	if activated {
		msg = "alarm_is_activated"
	}
	s.emit(now, logRecord{"warning", []kv{{"msg", msg}, {"name", name}, {"message", "<<\"" + strings.ReplaceAll(message, `"`, `\"`) + "\">>"}}})
}
