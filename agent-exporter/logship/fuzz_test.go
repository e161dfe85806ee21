package logship

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParse feeds Parse hostile EMQX log lines (EMQX logs what MQTT clients
// send: client ids, topics, usernames). Properties: no panic; the raw line
// is always kept (invalid bytes replaced); every string shipped is valid
// UTF-8, so ecp and the store never refuse a batch for one line; a text
// line's level is one of EMQX's; the entry is bounded by the line (at most
// three bytes per input byte, what replacing an invalid byte with U+FFFD
// costs); and a line Parse did not understand keeps the read time.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`2026-11-27T12:00:00.123456+00:00 [warning] msg: client_disconnected, clientid: c1, reason: "keepalive_timeout", period: 1 minutes, 0 seconds`,
		`1764244800123456 [error] free text with: colons, and commas`,
		`2026-11-27T12:00:00Z [notice]`,
		`2026-11-27T12:00:00Z [bogus] msg: x`,
		`{"time":1764244800123456,"level":"error","msg":"connector_down","clientid":"c\u0000","n":1.5e400,"obj":{"a":[1]}}`,
		`{"time":"2026-11-27T12:00:00Z","level":7,"msg":null}`,
		`{"msg":"\xff\xfe"} trailing`,
		"2026-11-27T12:00:00Z [info] clientid: \xff\xfe, topic: t/\u202e",
		`{`, ``, ` `, `[`,
	} {
		f.Add([]byte(s))
	}
	fallback := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line []byte) {
		e := Parse(line, fallback)
		if want := strings.ToValidUTF8(string(line), "\uFFFD"); e.Raw != want {
			t.Fatalf("raw = %q, want the line %q", e.Raw, want)
		}
		if e.Time.IsZero() {
			t.Fatal("an entry without a time")
		}
		size := len(e.Message) + len(e.Level)
		check := func(what, s string) {
			if !utf8.ValidString(s) {
				t.Fatalf("%s %q is not valid UTF-8", what, s)
			}
		}
		check("message", e.Message)
		check("level", e.Level)
		for k, v := range e.Fields {
			check("field name", k)
			check("field "+k, v)
			size += len(k) + len(v)
		}
		if limit := 3 * len(line); size > limit {
			t.Fatalf("entry holds %d bytes from a %d-byte line", size, len(line))
		}
		if len(line) > 0 && line[0] != '{' && e.Level != "" && !levels[e.Level] {
			t.Fatalf("text line gave level %q, not one of EMQX's", e.Level)
		}
		if len(line) > 0 && line[0] != '{' {
			ts, _, _ := strings.Cut(e.Raw, " ")
			if _, ok := parseTime(ts); !ok && !e.Time.Equal(fallback) {
				t.Fatalf("a line without a time of its own got %v, want the read time", e.Time)
			}
		}
	})
}
