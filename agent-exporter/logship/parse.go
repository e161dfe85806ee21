package logship

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ecpio/ecp/agentproto"
)

// levels are EMQX's log levels (emqx-api.md §8.2).
var levels = map[string]bool{
	"debug": true, "info": true, "notice": true, "warning": true,
	"error": true, "critical": true, "alert": true, "emergency": true,
}

// Parse turns one EMQX log line (without its newline) into an entry; the
// raw line is always kept. It understands the text formatter
// ("<time> [<level>] k: v, k: v" or free text) and the JSON formatter (one
// object per line, time in microseconds or RFC 3339). A line it cannot
// parse is still shipped: message and raw are the line, time is fallback
// (when the line was read), level is empty. Parse never fails, because a
// line an operator cannot find is worse than one with fewer fields.
func Parse(line []byte, fallback time.Time) agentproto.LogEntry {
	raw := validUTF8(line)
	if len(line) > 0 && line[0] == '{' {
		if e, ok := parseJSON(line, raw); ok {
			if e.Time.IsZero() {
				e.Time = fallback
			}
			return e
		}
	}
	e := agentproto.LogEntry{Raw: raw, Message: raw, Time: fallback}
	ts, rest, ok := strings.Cut(raw, " ")
	if !ok {
		return e
	}
	t, ok := parseTime(ts)
	if !ok {
		return e
	}
	if !strings.HasPrefix(rest, "[") {
		return e
	}
	level, body, ok := strings.Cut(rest[1:], "] ")
	if !ok {
		level, ok = strings.CutSuffix(rest[1:], "]")
		if !ok {
			return e
		}
	}
	if !levels[level] {
		return e
	}
	e.Time, e.Level, e.Message = t, level, body
	if f := parseFields(body); f != nil {
		e.Fields = f
		if m, ok := f["msg"]; ok {
			e.Message = m
		}
	}
	return e
}

// parseTime reads the text formatter's timestamp: RFC 3339 (any fraction)
// or, with timestamp_format = epoch, microseconds since the epoch.
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	if s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:T") {
		us, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		return time.UnixMicro(us).UTC(), true
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// parseFields splits "k: v, k: v" into fields. Values may themselves hold
// ", " (EMQX prints "period: 1 minutes, 0 seconds"), so a piece starts a new
// field only when it begins with an identifier and ": "; otherwise it
// belongs to the previous value. Free text (no leading "k: ") gives nil.
func parseFields(body string) map[string]string {
	var (
		fields map[string]string
		key    string
	)
	for piece := range strings.SplitSeq(body, ", ") {
		if k, v, ok := strings.Cut(piece, ": "); ok && isKey(k) {
			if fields == nil {
				fields = make(map[string]string, 8)
			}
			key = k
			fields[k] = v
			continue
		}
		if fields == nil {
			return nil
		}
		fields[key] += ", " + piece
	}
	return fields
}

func isKey(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

// parseJSON reads the JSON formatter's object. Every key other than time,
// level and msg becomes a field, strings unquoted and other values as their
// JSON text.
func parseJSON(line []byte, raw string) (agentproto.LogEntry, bool) {
	var obj map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&obj); err != nil {
		return agentproto.LogEntry{}, false
	}
	e := agentproto.LogEntry{Raw: raw}
	for k, v := range obj {
		switch k {
		case "time":
			if t, ok := jsonTime(v); ok {
				e.Time = t
			}
		case "level":
			_ = json.Unmarshal(v, &e.Level)
		case "msg":
			e.Message = jsonString(v)
		default:
			if e.Fields == nil {
				e.Fields = make(map[string]string, len(obj))
			}
			e.Fields[k] = jsonString(v)
		}
	}
	if e.Message == "" {
		e.Message = raw
	}
	return e, true
}

func jsonTime(v json.RawMessage) (time.Time, bool) {
	if us, err := strconv.ParseInt(string(v), 10, 64); err == nil {
		return time.UnixMicro(us).UTC(), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return time.Time{}, false
	}
	return parseTime(s)
}

func jsonString(v json.RawMessage) string {
	var s string
	if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// validUTF8 returns line as a string with invalid bytes replaced, so one
// bad byte cannot make ecp or the store refuse the batch.
func validUTF8(line []byte) string {
	if utf8.Valid(line) {
		return string(line)
	}
	return strings.ToValidUTF8(string(line), "\uFFFD")
}
