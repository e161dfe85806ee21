package logstore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Count returns how many lines match qu (Limit and PageToken are ignored):
// the store counts, so an operator or a test can check completeness without
// paging through every line. Bad input yields a *FieldError.
func (q *Querier) Count(ctx context.Context, qu Query) (int64, error) {
	qu.PageToken, qu.Limit = "", 0
	if err := qu.normalize(); err != nil {
		return 0, err
	}
	if q.c.cfg.Type == TypeElasticsearch {
		return q.countElasticsearch(ctx, &qu)
	}
	return q.countVictoriaLogs(ctx, &qu)
}

// countVictoriaLogs runs "<filter> | stats count() as n".
func (q *Querier) countVictoriaLogs(ctx context.Context, qu *Query) (int64, error) {
	form := url.Values{"query": {logsQLFilter(qu, nil) + " | stats count() as n"}}
	resp, err := q.c.do(ctx, http.MethodPost, "/select/logsql/query", nil, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("counting logs: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("counting logs: %w", readStatusError(resp))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("reading count reply: %w", err)
	}
	line := strings.TrimSpace(string(b))
	if line == "" {
		return 0, nil
	}
	var row struct {
		N string `json:"n"`
	}
	if err := json.Unmarshal([]byte(line), &row); err != nil {
		return 0, fmt.Errorf("decoding count reply: %w", err)
	}
	n, err := strconv.ParseInt(row.N, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decoding count reply %q: %w", row.N, err)
	}
	return n, nil
}

// countElasticsearch runs the search's query at "<prefix>-*/_count".
func (q *Querier) countElasticsearch(ctx context.Context, qu *Query) (int64, error) {
	body, err := json.Marshal(map[string]any{"query": esSearchBody(qu, nil)["query"]})
	if err != nil {
		return 0, fmt.Errorf("encoding count: %w", err)
	}
	args := url.Values{"ignore_unavailable": {"true"}, "allow_no_indices": {"true"}}
	resp, err := q.c.do(ctx, http.MethodPost, "/"+q.c.cfg.indexPrefix()+"-*/_count", args, "application/json", body)
	if err != nil {
		return 0, fmt.Errorf("counting logs: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return 0, fmt.Errorf("counting logs: %w", readStatusError(resp))
	}
	var reply struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return 0, fmt.Errorf("decoding count reply: %w", err)
	}
	return reply.Count, nil
}
