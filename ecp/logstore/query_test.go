package logstore

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// esHit is one search hit as Elasticsearch documents it, sort values
// included.
func esHit(id string, t time.Time, project, cluster, level, msg string) map[string]any {
	ts := t.UTC().Format(timeLayout)
	return map[string]any{
		"_index": "logs-" + t.UTC().Format("2006.01.02"), "_id": id, "_score": nil,
		"_source": map[string]any{
			"@timestamp": ts, "message": msg, "level": level, "project": project, "cluster": cluster,
			"node": "emqx@n1", "raw": ts + " [" + level + "] " + msg, "log_id": id,
		},
		"sort": []any{ts, id},
	}
}

func esHits(hits ...any) map[string]any {
	return map[string]any{
		"took": 2, "timed_out": false,
		"_shards": map[string]any{"total": 1, "successful": 1, "skipped": 0, "failed": 0},
		"hits":    map[string]any{"max_score": nil, "hits": hits},
	}
}

func TestElasticsearchQueryBody(t *testing.T) {
	es := newFakeES(t)
	q, err := NewQuerier(es.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	from := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	hostile := `x"}},{"match_all":{}}`
	_, err = q.Query(t.Context(), Query{
		Projects: []string{"p2", "p1", "p2"}, Cluster: hostile, Level: "ERROR", Text: "connection refused",
		From: from, To: to, Limit: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := es.searches[0]
	if s.Path != "/logs-*/_search" {
		t.Errorf("path %s", s.Path)
	}
	if !strings.Contains(s.Query, "ignore_unavailable=true") || !strings.Contains(s.Query, "allow_no_indices=true") {
		t.Errorf("query args %s", s.Query)
	}
	want := map[string]any{
		"size":             float64(51),
		"track_total_hits": false,
		"query": map[string]any{"bool": map[string]any{
			"filter": []any{
				map[string]any{"terms": map[string]any{"project": []any{"p1", "p2"}}},
				map[string]any{"term": map[string]any{"cluster": hostile}},
				map[string]any{"term": map[string]any{"level": "error"}},
				map[string]any{"range": map[string]any{"@timestamp": map[string]any{
					"gte": "2026-11-27T10:00:00.000000000Z", "lt": "2026-11-27T11:00:00.000000000Z",
					"format": "strict_date_optional_time_nanos",
				}}},
			},
			"must": []any{map[string]any{"bool": map[string]any{
				"minimum_should_match": float64(1),
				"should": []any{
					map[string]any{"multi_match": map[string]any{
						"query": "connection refused", "type": "phrase", "fields": []any{"message", "raw"},
					}},
					map[string]any{"bool": map[string]any{"filter": []any{
						map[string]any{"wildcard": map[string]any{"raw": map[string]any{"value": "*connection*"}}},
						map[string]any{"wildcard": map[string]any{"raw": map[string]any{"value": "*refused*"}}},
					}}},
				},
			}}},
		}},
		"sort": []any{
			map[string]any{"@timestamp": map[string]any{"order": "desc", "format": "strict_date_optional_time_nanos"}},
			map[string]any{"log_id": map[string]any{"order": "desc"}},
		},
		"_source": []any{"@timestamp", "message", "level", "project", "cluster", "node", "raw", "fields", "log_id"},
	}
	if !reflect.DeepEqual(s.Body, want) {
		got, _ := json.MarshalIndent(s.Body, "", " ")
		t.Fatalf("search body:\n%s", got)
	}
}

func TestElasticsearchQueryPages(t *testing.T) {
	es := newFakeES(t)
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ids := []string{"pppppppppppppppppppppppppppppppp", "oooooooooooooooooooooooooooooooo", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"}
	es.search = func(n int, s fakeSearch) (int, any) {
		switch n {
		case 0:
			return http.StatusOK, esHits(
				esHit(ids[0], base.Add(2*time.Second), "p1", "c1", "error", "third"),
				esHit(ids[1], base.Add(time.Second), "p1", "c1", "warning", "second"),
				esHit(ids[2], base.Add(time.Second), "p1", "c1", "warning", "second-tie"),
			)
		default:
			return http.StatusOK, esHits(esHit(ids[2], base.Add(time.Second), "p1", "c1", "warning", "second-tie"))
		}
	}
	q, err := NewQuerier(es.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	page, err := q.Query(t.Context(), Query{Projects: []string{"p1"}, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 || page.NextPageToken == "" {
		t.Fatalf("page %+v", page)
	}
	it := page.Items[0]
	if it.Message != "third" || it.Level != "error" || it.Project != "p1" || it.Cluster != "c1" || it.Node != "emqx@n1" ||
		!it.Time.Equal(base.Add(2*time.Second)) || it.ID != ids[0] || !strings.HasSuffix(it.Raw, "[error] third") {
		t.Fatalf("item %+v", it)
	}
	page2, err := q.Query(t.Context(), Query{Projects: []string{"p1"}, Limit: 2, PageToken: page.NextPageToken})
	if err != nil {
		t.Fatal(err)
	}
	if len(page2.Items) != 1 || page2.NextPageToken != "" {
		t.Fatalf("page 2 %+v", page2)
	}
	// search_after carries the last returned hit's sort values.
	sa := es.searches[1].Body["search_after"]
	if !reflect.DeepEqual(sa, []any{base.Add(time.Second).Format(timeLayout), ids[1]}) {
		t.Fatalf("search_after %v", sa)
	}

	// A token is bound to its filters.
	_, err = q.Query(t.Context(), Query{Projects: []string{"p1", "p9"}, Limit: 2, PageToken: page.NextPageToken})
	if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != "pageToken" {
		t.Fatalf("token reused with another scope: %v", err)
	}
}

func TestElasticsearchQueryErrors(t *testing.T) {
	es := newFakeES(t)
	es.search = func(n int, s fakeSearch) (int, any) {
		if n == 0 {
			return http.StatusBadRequest, map[string]any{"error": map[string]any{
				"root_cause": []any{map[string]any{"type": "query_shard_exception", "reason": "failed to create query"}},
				"type":       "search_phase_execution_exception", "reason": "all shards failed",
			}, "status": 400}
		}
		r := esHits()
		r["timed_out"] = true
		return http.StatusOK, r
	}
	q, err := NewQuerier(es.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Query(t.Context(), Query{Projects: []string{"p"}}); err == nil || !strings.Contains(err.Error(), "all shards failed") {
		t.Fatalf("400: %v", err)
	}
	if _, err := q.Query(t.Context(), Query{Projects: []string{"p"}}); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timed out: %v", err)
	}
}

func TestQueryValidation(t *testing.T) {
	es := newFakeES(t)
	q, err := NewQuerier(es.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	now := time.Now()
	tests := []struct {
		name      string
		q         Query
		wantField string
		want      error
	}{
		{"no scope", Query{}, "", ErrNoScope},
		{"empty project", Query{Projects: []string{""}}, "", ErrNoScope},
		{"bad level", Query{Projects: []string{"p"}, Level: "fatal"}, "level", nil},
		{"limit too big", Query{Projects: []string{"p"}, Limit: MaxQueryLimit + 1}, "limit", nil},
		{"negative limit", Query{Projects: []string{"p"}, Limit: -1}, "limit", nil},
		{"to before from", Query{Projects: []string{"p"}, From: now, To: now.Add(-time.Second)}, "to", nil},
		{"garbage token", Query{Projects: []string{"p"}, PageToken: "not-a-token"}, "pageToken", nil},
		{"text not UTF-8", Query{Projects: []string{"p"}, Text: "ab\xff"}, "q", nil},
		{"forged token", Query{Projects: []string{"p"}, PageToken: cursor{Fingerprint: "x", Time: "now", ID: "x"}.encode()}, "pageToken", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := q.Query(t.Context(), tt.q)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("err %v, want %v", err, tt.want)
				}
				return
			}
			if fe, ok := errors.AsType[*FieldError](err); !ok || fe.Field != tt.wantField {
				t.Fatalf("err %v, want FieldError on %s", err, tt.wantField)
			}
		})
	}
	if len(es.searches) != 0 {
		t.Fatalf("invalid queries reached the store: %d", len(es.searches))
	}
}

func TestLogsQLKeepsUserInputInsideLiterals(t *testing.T) {
	hostile := []string{`") or project:*`, `"} or {project=~".*`, "a\\\" | delete project", "\x00\xff'`", `x) or (*`}
	for _, h := range hostile {
		t.Run(strconv.Quote(h), func(t *testing.T) {
			text := strings.ToValidUTF8(h, "?") // normalize refuses other text
			qu := Query{Projects: []string{"p1"}, Cluster: h, Level: "error", Text: text, Limit: 10}
			if err := qu.normalize(); err != nil {
				t.Fatal(err)
			}
			q := logsQL(&qu, nil)
			if !strings.HasPrefix(q, `{project in ("p1"),cluster=`+strconv.Quote(h)+`}`) {
				t.Fatalf("scope not first and intact: %s", q)
			}
			// Removing the literals must leave only our own syntax.
			rest := strings.ReplaceAll(q, strconv.Quote(h), "LIT")
			rest = strings.ReplaceAll(rest, strconv.Quote("(?i)"+regexp.QuoteMeta(text)), "TEXT")
			want := `{project in ("p1"),cluster=LIT} level:="error" (_msg:~TEXT or raw:~TEXT) | sort by (_time desc, log_id desc) limit 11 | fields _time, _msg, level, project, cluster, node, raw, log_id, fields.*`
			if rest != want {
				t.Fatalf("query\n got %s\nwant %s", rest, want)
			}
		})
	}
}

func TestLogsQLTimeAndCursor(t *testing.T) {
	from := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	to := from.Add(time.Minute)
	tests := []struct {
		name string
		q    Query
		cur  *cursor
		want string
	}{
		{"range", Query{From: from, To: to}, nil, ` _time:[2026-01-02T02:04:05.000000006Z, 2026-01-02T02:05:05.000000006Z)`},
		{"from only", Query{From: from}, nil, ` _time:>=2026-01-02T02:04:05.000000006Z`},
		{"to only", Query{To: to}, nil, ` _time:<2026-01-02T02:05:05.000000006Z`},
		{"cursor", Query{}, &cursor{Time: "2026-01-02T02:04:05.000000006Z", ID: "abcd"},
			` (_time:<2026-01-02T02:04:05.000000006Z or (_time:[2026-01-02T02:04:05.000000006Z, 2026-01-02T02:04:05.000000006Z] log_id:<"abcd"))`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.q.Projects = []string{"p"}
			tt.q.Limit = 1
			got := logsQL(&tt.q, tt.cur)
			want := `{project in ("p")}` + tt.want + ` | sort by (_time desc, log_id desc) limit 2 | fields _time, _msg, level, project, cluster, node, raw, log_id, fields.*`
			if got != want {
				t.Fatalf("\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestJourneyLogSearchElasticsearchMatchesLiterally: with Elasticsearch,
// typed text finds parts of words through wildcard patterns on raw's terms
// in which every "*", "?" and backslash the user typed is escaped, beside
// the phrase match; the project scope stays the first filter.
func TestJourneyLogSearchElasticsearchMatchesLiterally(t *testing.T) {
	qu := Query{Projects: []string{"p1"}, Text: `Health* OR project:p2 ? a\b`, Limit: 10}
	if err := qu.normalize(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(esSearchBody(&qu, nil)["query"])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"bool":{"filter":[{"terms":{"project":["p1"]}}],"must":[{"bool":{"minimum_should_match":1,"should":[` +
		`{"multi_match":{"fields":["message","raw"],"query":"Health* OR project:p2 ? a\\b","type":"phrase"}},` +
		`{"bool":{"filter":[{"wildcard":{"raw":{"value":"*health\\**"}}},{"wildcard":{"raw":{"value":"*or*"}}},` +
		`{"wildcard":{"raw":{"value":"*project:p2*"}}},{"wildcard":{"raw":{"value":"*\\?*"}}},{"wildcard":{"raw":{"value":"*a\\\\b*"}}}]}}]}}]}}`
	if string(b) != want {
		t.Fatalf("query\n got %s\nwant %s", b, want)
	}
}
