package logstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of Query.Limit.
const (
	DefaultQueryLimit = 100
	MaxQueryLimit     = 1000
)

// ErrNoScope is returned for a query without projects: the scope is
// mandatory, so a bug upstream can never turn into "all projects".
var ErrNoScope = errors.New("logstore: a query needs at least one project in scope")

// Query selects log lines, newest first.
type Query struct {
	// Projects is the caller's scope: only lines of these projects are
	// returned, whatever the other fields say. Never empty.
	Projects []string
	// Cluster, Level narrow to one cluster id and one EMQX level (exact).
	Cluster string
	Level   string
	// Text is what the user typed: lines whose message or raw line contain
	// it, anywhere and in any case, match ("health" finds
	// "health_check_failed"). It is matched literally: no character of it
	// is query syntax.
	Text string
	// From (inclusive) and To (exclusive) bound the line time; zero means
	// unbounded.
	From, To time.Time
	// Limit is the page size, DefaultQueryLimit when zero, at most
	// MaxQueryLimit.
	Limit int
	// PageToken continues a previous query with the same filters.
	PageToken string
}

// Item is one log line (JSON shape of GET /projects/{project}/logs items).
type Item struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Cluster string    `json:"cluster"`
	Project string    `json:"project"`
	Node    string    `json:"node"`
	Message string    `json:"message"`
	Raw     string    `json:"raw"`
	// Fields are the key/values the agent parsed from the line (clientid,
	// topic, connector…), empty for free text.
	Fields map[string]string `json:"fields,omitempty"`
	// ID is the line's log_id (stable, unique per line).
	ID string `json:"id"`
}

// Page is one page of results.
type Page struct {
	Items []Item `json:"items"`
	// NextPageToken continues after the last item; empty on the last page.
	NextPageToken string `json:"nextPageToken,omitempty"`
}

// QuerierOptions configure a Querier.
type QuerierOptions struct {
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// Timeout bounds one query.
	Timeout time.Duration
}

// Querier reads log lines from one receiver. Safe for concurrent use.
type Querier struct {
	c *conn
}

// NewQuerier validates cfg and returns a Querier for it.
func NewQuerier(cfg ReceiverConfig, opts QuerierOptions) (*Querier, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	c, err := newConn(cfg, opts.Transport, opts.Timeout)
	if err != nil {
		return nil, err
	}
	return &Querier{c: c}, nil
}

// Close releases idle connections.
func (q *Querier) Close() { q.c.client.CloseIdleConnections() }

// Query returns one page of lines matching qu, newest first (time, then
// log_id, descending). Bad input yields a *FieldError naming the field.
func (q *Querier) Query(ctx context.Context, qu Query) (Page, error) {
	if err := qu.normalize(); err != nil {
		return Page{}, err
	}
	var cur *cursor
	if qu.PageToken != "" {
		c, err := decodeToken(qu.PageToken, qu.fingerprint(q.c.cfg.Type))
		if err != nil {
			return Page{}, err
		}
		cur = c
	}
	var (
		items []Item
		sorts []json.RawMessage
		err   error
	)
	switch q.c.cfg.Type {
	case TypeElasticsearch:
		items, sorts, err = q.searchElasticsearch(ctx, &qu, cur)
	default:
		items, err = q.searchVictoriaLogs(ctx, &qu, cur)
	}
	if err != nil {
		return Page{}, err
	}
	page := Page{Items: items}
	if len(items) > qu.Limit {
		page.Items = items[:qu.Limit]
		last := page.Items[qu.Limit-1]
		next := cursor{Fingerprint: qu.fingerprint(q.c.cfg.Type), Time: last.Time.UTC().Format(timeLayout), ID: last.ID}
		if sorts != nil {
			next.Sort = sorts[qu.Limit-1]
		}
		page.NextPageToken = next.encode()
	}
	if page.Items == nil {
		page.Items = []Item{}
	}
	return page, nil
}

func (qu *Query) normalize() error {
	if len(qu.Projects) == 0 {
		return ErrNoScope
	}
	for _, p := range qu.Projects {
		if p == "" {
			return ErrNoScope
		}
	}
	qu.Projects = slices.Clone(qu.Projects)
	slices.Sort(qu.Projects)
	qu.Projects = slices.Compact(qu.Projects)
	if qu.Level != "" {
		if !isLevel(qu.Level) {
			return fieldErr("level", "%q is not an EMQX log level; use one of %s", qu.Level, strings.Join(levelNames, ", "))
		}
		qu.Level = strings.ToLower(qu.Level)
	}
	switch {
	case qu.Limit == 0:
		qu.Limit = DefaultQueryLimit
	case qu.Limit < 0 || qu.Limit > MaxQueryLimit:
		return fieldErr("limit", "must be between 1 and %d", MaxQueryLimit)
	}
	if !qu.From.IsZero() && !qu.To.IsZero() && !qu.From.Before(qu.To) {
		return fieldErr("to", "must be after from")
	}
	qu.Text = strings.TrimSpace(qu.Text)
	if len(qu.Text) > 1024 {
		return fieldErr("q", "must be at most 1024 bytes")
	}
	if !utf8.ValidString(qu.Text) {
		return fieldErr("q", "must be UTF-8 text")
	}
	return nil
}

// fingerprint binds a page token to the filters it was made for, so a token
// pasted into another query is refused instead of silently skipping lines.
func (qu *Query) fingerprint(storeType string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%q\x00%q\x00%q\x00%q\x00%d\x00%d", storeType, qu.Projects, qu.Cluster, qu.Level, qu.Text,
		qu.From.UnixNano(), qu.To.UnixNano())
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:9])
}

// cursor is the content of a page token: where the previous page ended.
type cursor struct {
	Fingerprint string `json:"f"`
	// Time and ID are the last item's; VictoriaLogs continues strictly
	// before them in (time, log_id) order.
	Time string `json:"t"`
	ID   string `json:"i"`
	// Sort is the last hit's Elasticsearch sort values, for search_after.
	Sort json.RawMessage `json:"s,omitempty"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c) // strings and raw JSON only: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(tok, fingerprint string) (*cursor, error) {
	bad := fieldErr("pageToken", "is not a page token of this query; start again without it")
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, bad
	}
	var c cursor
	if json.Unmarshal(b, &c) != nil || c.Fingerprint != fingerprint || c.ID == "" {
		return nil, bad
	}
	t, err := time.Parse(time.RFC3339Nano, c.Time)
	if err != nil {
		return nil, bad
	}
	// Re-formatted, so only a well-formed time reaches a query.
	c.Time = t.UTC().Format(timeLayout)
	if !isLineID(c.ID) {
		return nil, bad
	}
	if len(c.Sort) > 0 {
		// Elasticsearch sort values: [time, log_id], nothing else.
		var sv []any
		if json.Unmarshal(c.Sort, &sv) != nil || len(sv) != 2 || sv[1] != c.ID {
			return nil, bad
		}
		switch sv[0].(type) {
		case string, float64:
		default:
			return nil, bad
		}
	}
	return &c, nil
}

// isLineID reports whether s looks like a LineID (letters a to p).
func isLineID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := range len(s) {
		if s[i] < 'a' || s[i] > 'p' {
			return false
		}
	}
	return true
}
