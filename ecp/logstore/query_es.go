package logstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// esSortFormat makes Elasticsearch return (and take in search_after) the
// time sort value as a nanosecond string rather than epoch milliseconds.
const esSortFormat = "strict_date_optional_time_nanos"

// searchElasticsearch runs qu with the query DSL over "<prefix>-*". It asks
// for Limit+1 hits to know whether another page exists.
func (q *Querier) searchElasticsearch(ctx context.Context, qu *Query, cur *cursor) ([]Item, []json.RawMessage, error) {
	body, err := json.Marshal(esSearchBody(qu, cur))
	if err != nil {
		return nil, nil, fmt.Errorf("encoding search: %w", err)
	}
	path := "/" + q.c.cfg.indexPrefix() + "-*/_search"
	// A project whose logs never arrived has no index: that is an empty
	// result, not an error.
	args := url.Values{"ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
	resp, err := q.c.do(ctx, http.MethodPost, path, args, "application/json", body)
	if err != nil {
		return nil, nil, fmt.Errorf("searching logs: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("searching logs: %w", readStatusError(resp))
	}
	var reply struct {
		TimedOut bool `json:"timed_out"`
		Hits     struct {
			Hits []struct {
				ID     string          `json:"_id"`
				Source esSource        `json:"_source"`
				Sort   json.RawMessage `json:"sort"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return nil, nil, fmt.Errorf("decoding search reply: %w", err)
	}
	if reply.TimedOut {
		// Partial results would make paging skip lines; say so instead.
		return nil, nil, fmt.Errorf("searching logs: %w", &statusError{Status: http.StatusGatewayTimeout, Body: "the search timed out; narrow the time range"})
	}
	items := make([]Item, 0, len(reply.Hits.Hits))
	sorts := make([]json.RawMessage, 0, len(reply.Hits.Hits))
	for _, h := range reply.Hits.Hits {
		t, err := time.Parse(time.RFC3339Nano, h.Source.Time)
		if err != nil {
			return nil, nil, fmt.Errorf("hit %s has a bad %s %q: %w", h.ID, fieldTime, h.Source.Time, err)
		}
		id := h.Source.ID
		if id == "" {
			id = h.ID
		}
		items = append(items, Item{
			Time: t, Level: h.Source.Level, Cluster: h.Source.Cluster, Project: h.Source.Project,
			Node: h.Source.Node, Message: h.Source.Message, Raw: h.Source.Raw, Fields: h.Source.Fields, ID: id,
		})
		sorts = append(sorts, h.Sort)
	}
	return items, sorts, nil
}

// esSource is the part of a stored document a query returns.
type esSource struct {
	Time    string            `json:"@timestamp"`
	Message string            `json:"message"`
	Level   string            `json:"level"`
	Project string            `json:"project"`
	Cluster string            `json:"cluster"`
	Node    string            `json:"node"`
	Raw     string            `json:"raw"`
	Fields  map[string]string `json:"fields"`
	ID      string            `json:"log_id"`
}

// esSearchBody is the search request. Every user value goes into a JSON
// string of a term, range, match_phrase or wildcard clause, never into
// query-string syntax, so none of it can widen the project filter.
func esSearchBody(qu *Query, cur *cursor) map[string]any {
	filter := []any{
		map[string]any{"terms": map[string]any{fieldProject: qu.Projects}},
	}
	if qu.Cluster != "" {
		filter = append(filter, map[string]any{"term": map[string]any{fieldCluster: qu.Cluster}})
	}
	if qu.Level != "" {
		filter = append(filter, map[string]any{"term": map[string]any{fieldLevel: qu.Level}})
	}
	if !qu.From.IsZero() || !qu.To.IsZero() {
		r := map[string]any{"format": esSortFormat}
		if !qu.From.IsZero() {
			r["gte"] = qu.From.UTC().Format(timeLayout)
		}
		if !qu.To.IsZero() {
			r["lt"] = qu.To.UTC().Format(timeLayout)
		}
		filter = append(filter, map[string]any{"range": map[string]any{fieldTime: r}})
	}
	boolQ := map[string]any{"filter": filter}
	if qu.Text != "" {
		boolQ["must"] = []any{esTextQuery(qu.Text)}
	}
	body := map[string]any{
		"size":             qu.Limit + 1,
		"track_total_hits": false,
		"query":            map[string]any{"bool": boolQ},
		"sort": []any{
			map[string]any{fieldTime: map[string]any{"order": "desc", "format": esSortFormat}},
			map[string]any{fieldID: map[string]any{"order": "desc"}},
		},
		"_source": []string{fieldTime, fieldMessage, fieldLevel, fieldProject, fieldCluster, fieldNode, fieldRaw, fieldFields, fieldID},
	}
	if cur != nil {
		if len(cur.Sort) > 0 {
			body["search_after"] = cur.Sort
		} else {
			body["search_after"] = []any{cur.Time, cur.ID}
		}
	}
	return body
}

// esTextQuery finds what the user typed in the message or the raw line:
// either as a phrase (whole words, punctuation ignored as the standard
// analyzer does) or with every typed word inside a word of the raw line
// ("health" finds "health_check_failed"), in any case. The wildcard
// patterns run against the analyzed, lower-cased terms of raw, so the
// index mapping needs no change and indices written before work the same.
func esTextQuery(text string) map[string]any {
	should := []any{map[string]any{"multi_match": map[string]any{
		"query": text, "type": "phrase", "fields": []string{fieldMessage, fieldRaw},
	}}}
	var words []any
	for w := range strings.FieldsSeq(strings.ToLower(text)) {
		words = append(words, map[string]any{"wildcard": map[string]any{fieldRaw: map[string]any{"value": "*" + esWildcardEscape(w) + "*"}}})
	}
	if len(words) > 0 {
		should = append(should, map[string]any{"bool": map[string]any{"filter": words}})
	}
	return map[string]any{"bool": map[string]any{"should": should, "minimum_should_match": 1}}
}

// esWildcardEscape makes every character of s literal in a wildcard
// pattern, where "*", "?" and the backslash are special.
func esWildcardEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`).Replace(s)
}
