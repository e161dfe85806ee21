package logstore

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/ecpio/ecp/agentproto"
)

// skeleton replaces every Go-quoted string literal of a LogsQL query by
// `""` and returns the query so reduced with the literals' values. LogsQL
// reads a double-quoted literal as strconv.Unquote does.
func skeleton(t *testing.T, q string) (string, []string) {
	t.Helper()
	var (
		b    strings.Builder
		lits []string
	)
	for i := 0; i < len(q); {
		if q[i] != '"' {
			b.WriteByte(q[i])
			i++
			continue
		}
		lit, err := strconv.QuotedPrefix(q[i:])
		if err != nil {
			t.Fatalf("unterminated literal at %d of %s: %v", i, q, err)
		}
		v, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatal(err)
		}
		lits = append(lits, v)
		b.WriteString(`""`)
		i += len(lit)
	}
	return b.String(), lits
}

// FuzzLogQueryQuoting builds the LogsQL and Elasticsearch queries of GET
// /projects/{project}/logs from hostile filters (cluster, level, text and
// a page token's time and id). Property: user input never escapes its
// quoting. The LogsQL query has the same shape (everything outside string
// literals) as the query of harmless values, its literals read back as
// exactly the caller's values, and its scope is the one project; the
// Elasticsearch body decodes to the caller's values in the same clauses
// and the project filter untouched.
func FuzzLogQueryQuoting(f *testing.F) {
	f.Add("c1", "warning", "connector down", "2026-11-27T12:00:00Z", "abcdefghijklmnopabcdefghijklmnop", int64(0), int64(0))
	f.Add(`x"} or project:*`, "ERROR", `" or project:* or "`, "2026-11-27T12:00:00.5+01:00", "pppppppppppppppppppppppppppppppp", int64(1), int64(2))
	f.Add("\\\"", "info", "\\\" | delete", "0000-01-01T00:00:00+01:00", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", int64(-62135596800), int64(253402300799))
	f.Add("\xff\xfe", "debug", "\u2028\x00\n)(", "9999-12-31T23:59:59-01:00", "bad id", int64(0), int64(0))
	f.Add("`'*", "notice", "*", "", "", int64(5), int64(5))
	f.Fuzz(func(t *testing.T, cluster, level, text, curTime, curID string, from, to int64) {
		qu := Query{Projects: []string{"p-ours"}, Cluster: cluster, Level: level, Text: text}
		if from != 0 {
			qu.From = time.Unix(from%(1<<40), 0)
		}
		if to != 0 {
			qu.To = time.Unix(to%(1<<40), 0)
		}
		if qu.normalize() != nil {
			return // refused with a field error: nothing is built
		}
		for _, storeType := range []string{TypeVictoriaLogs, TypeElasticsearch} {
			var cur *cursor
			if curTime != "" {
				tok := cursor{Fingerprint: qu.fingerprint(storeType), Time: curTime, ID: curID}.encode()
				c, err := decodeToken(tok, qu.fingerprint(storeType))
				if err == nil {
					cur = c
				}
			}
			// The harmless twin: same filters present, plain values.
			twin := qu
			for _, s := range []*string{&twin.Cluster, &twin.Level, &twin.Text} {
				if *s != "" {
					*s = "v"
				}
			}
			var twinCur *cursor
			if cur != nil {
				twinCur = &cursor{Time: cur.Time, ID: cur.ID}
			}
			if storeType == TypeVictoriaLogs {
				got, lits := skeleton(t, logsQL(&qu, cur))
				want, _ := skeleton(t, logsQL(&twin, twinCur))
				if got != want {
					t.Fatalf("the query's shape changed with the caller's values:\n got %s\nwant %s", got, want)
				}
				wantLits := []string{"p-ours"}
				for _, v := range []string{qu.Cluster, qu.Level} {
					if v != "" {
						wantLits = append(wantLits, v)
					}
				}
				if qu.Text != "" {
					// The text is a regexp that matches exactly itself.
					re := "(?i)" + regexp.QuoteMeta(qu.Text)
					if !regexp.MustCompile(re).MatchString(qu.Text) {
						t.Fatalf("text regexp %q does not match the text %q", re, qu.Text)
					}
					wantLits = append(wantLits, re, re)
				}
				if cur != nil {
					wantLits = append(wantLits, cur.ID)
				}
				if !slices.Equal(lits, wantLits) {
					t.Fatalf("literals %q, want %q", lits, wantLits)
				}
				continue
			}
			b, err := json.Marshal(esSearchBody(&qu, cur))
			if err != nil {
				t.Fatalf("search body does not encode: %v", err)
			}
			var body struct {
				Query struct {
					Bool struct {
						Filter []map[string]map[string]any `json:"filter"`
						Must   []struct {
							Bool struct {
								Should []struct {
									MultiMatch struct {
										Query string `json:"query"`
									} `json:"multi_match"`
									Bool struct {
										Filter []struct {
											Wildcard map[string]struct {
												Value string `json:"value"`
											} `json:"wildcard"`
										} `json:"filter"`
									} `json:"bool"`
								} `json:"should"`
							} `json:"bool"`
						} `json:"must"`
					} `json:"bool"`
				} `json:"query"`
				SearchAfter []any `json:"search_after"`
			}
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("search body %s: %v", b, err)
			}
			filter := body.Query.Bool.Filter
			if len(filter) == 0 || !slices.Equal(filter[0]["terms"][fieldProject].([]any), []any{"p-ours"}) {
				t.Fatalf("the first filter is not the project scope: %s", b)
			}
			for _, f := range filter[1:] {
				for kind, clause := range f {
					for field, v := range clause {
						switch {
						case kind == "term" && field == fieldCluster:
							if s, _ := v.(string); s != viaJSON(t, qu.Cluster) {
								t.Fatalf("cluster term %q, want %q", v, qu.Cluster)
							}
						case kind == "term" && field == fieldLevel, kind == "range" && field == fieldTime:
						default:
							t.Fatalf("unexpected %s clause on %s in %s", kind, field, b)
						}
					}
				}
			}
			if qu.Text != "" {
				must := body.Query.Bool.Must
				if len(must) != 1 || len(must[0].Bool.Should) == 0 || must[0].Bool.Should[0].MultiMatch.Query != viaJSON(t, qu.Text) {
					t.Fatalf("text clause %s, want a phrase %q first", b, qu.Text)
				}
				words := strings.Fields(strings.ToLower(viaJSON(t, qu.Text)))
				var got []string
				if len(must[0].Bool.Should) == 2 {
					for _, f := range must[0].Bool.Should[1].Bool.Filter {
						got = append(got, unwildcard(t, f.Wildcard[fieldRaw].Value))
					}
				}
				if !slices.Equal(got, words) {
					t.Fatalf("wildcards %q, want each word %q literally", got, words)
				}
			}
			if cur != nil && (len(body.SearchAfter) != 2 || body.SearchAfter[1] != cur.ID) {
				t.Fatalf("search_after %v, want [time, %s]", body.SearchAfter, cur.ID)
			}
		}
	})
}

// unwildcard checks that an Elasticsearch wildcard pattern is "*word*"
// with every special character of word escaped, and returns word.
func unwildcard(t *testing.T, p string) string {
	t.Helper()
	inner, pre := strings.CutPrefix(p, "*")
	inner, suf := strings.CutSuffix(inner, "*")
	if !pre || !suf {
		t.Fatalf("wildcard %q is not *word*", p)
	}
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		switch c := inner[i]; c {
		case '\\':
			if i+1 == len(inner) {
				t.Fatalf("wildcard %q ends in a lone backslash", p)
			}
			i++
			b.WriteByte(inner[i])
		case '*', '?':
			t.Fatalf("wildcard %q has an unescaped %c", p, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// viaJSON is s as a JSON string decodes: invalid bytes become U+FFFD.
func viaJSON(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

var indexNameRE = regexp.MustCompile(`^ecp-logs-[0-9]{4}\.[0-9]{2}\.[0-9]{2}$`)

// FuzzBulkDocument stamps hostile log entries, decoded as ecp/logs decodes
// an agent's batch (unknown members refused, invalid UTF-8 let through),
// into Elasticsearch bulk lines. Properties: each entry is exactly one
// action line and one document line (no newline injection into the
// NDJSON), both strict JSON without duplicate names; the document's
// project and cluster are ecp's whatever the entry holds; its index is a
// daily index of the prefix; message, raw line and fields are capped.
func FuzzBulkDocument(f *testing.F) {
	for _, s := range []string{
		`{"time":"2026-11-27T12:00:00Z","level":"warning","message":"m","raw":"r","file":"emqx.log.1","offset":42}`,
		`{"time":"0000-01-01T00:00:00+01:00","message":"old"}`,
		`{"time":"9999-12-31T23:59:59-01:00","message":"late"}`,
		`{"message":"x\n{\"index\":{}}\n{\"project\":\"victim\"}","fields":{"project":"victim","cluster":"victim","\u2028":"\u0000"}}`,
		"{\"raw\":\"\xff\xfe\",\"node\":\"\\\"}\",\"level\":\"\\u0000\"}",
		`{"fields":{"a":"1","a":"2"}}`,
		`{"offset":-9223372036854775808}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, in []byte) {
		var e agentproto.LogEntry
		if jsonv2.Unmarshal(in, &e, jsonv2.RejectUnknownMembers(true), jsontext.AllowInvalidUTF8(true)) != nil {
			return
		}
		b := Batch{Project: "p-ours", Cluster: "c-ours", Node: "emqx@default"}
		d := newDocument(&b, &e, now)
		out, err := appendBulk(nil, "ecp-logs", &d)
		if err != nil {
			return
		}
		lines := bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
		if len(lines) != 2 {
			t.Fatalf("one entry gave %d bulk lines: %q", len(lines), out)
		}
		var action bulkAction
		if err := jsonv2.Unmarshal(lines[0], &action, jsonv2.RejectUnknownMembers(true)); err != nil {
			t.Fatalf("action line %q: %v", lines[0], err)
		}
		if !indexNameRE.MatchString(action.Index.Index) {
			t.Fatalf("index %q is not a daily index of the prefix (document time %s)", action.Index.Index, d.Time)
		}
		var doc document
		if err := jsonv2.Unmarshal(lines[1], &doc, jsonv2.RejectUnknownMembers(true)); err != nil {
			t.Fatalf("document line %q: %v", lines[1], err)
		}
		if doc.Project != "p-ours" || doc.Cluster != "c-ours" || doc.ID != action.Index.ID {
			t.Fatalf("document project %q cluster %q id %q, want ecp's p-ours, c-ours and %s", doc.Project, doc.Cluster, doc.ID, action.Index.ID)
		}
		const capped = MaxFieldBytes + len("…[truncated 18446744073709551615 bytes]")
		for name, v := range map[string]string{"message": doc.Message, "raw": doc.Raw} {
			if len(v) > capped {
				t.Fatalf("%s is %d bytes, over the cap", name, len(v))
			}
		}
		for k, v := range doc.Fields {
			if len(v) > capped {
				t.Fatalf("field %q is %d bytes, over the cap", k, len(v))
			}
		}
	})
}
