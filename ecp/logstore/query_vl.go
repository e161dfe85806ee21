package logstore

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// searchVictoriaLogs runs qu as LogsQL at /select/logsql/query.
func (q *Querier) searchVictoriaLogs(ctx context.Context, qu *Query, cur *cursor) ([]Item, error) {
	form := url.Values{"query": {logsQL(qu, cur)}}
	resp, err := q.c.do(ctx, http.MethodPost, "/select/logsql/query", nil, "application/x-www-form-urlencoded", []byte(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("searching logs: %w", err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("searching logs: %w", readStatusError(resp))
	}
	var items []Item
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		// Every value VictoriaLogs returns is a string; the parsed fields
		// come back flattened as "fields.<key>".
		var row map[string]string
		if err := json.Unmarshal(line, &row); err != nil {
			return nil, fmt.Errorf("decoding query reply: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, row["_time"])
		if err != nil {
			return nil, fmt.Errorf("row %s has a bad _time %q: %w", row[fieldID], row["_time"], err)
		}
		it := Item{
			Time: t, Level: row[fieldLevel], Cluster: row[fieldCluster], Project: row[fieldProject], Node: row[fieldNode],
			Message: row["_msg"], Raw: row[fieldRaw], ID: row[fieldID],
		}
		for k, v := range row {
			if name, ok := strings.CutPrefix(k, fieldFields+"."); ok && name != "" {
				if it.Fields == nil {
					it.Fields = make(map[string]string)
				}
				it.Fields[name] = v
			}
		}
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading query reply: %w", err)
	}
	return items, nil
}

// logsQL builds the query. The scope comes first as a stream filter, and
// every user value enters only as a strconv.Quote'd string literal, which
// LogsQL reads back with strconv.Unquote: no input can close the literal and
// add "or project:*", so the scope cannot be widened. The user's text is a
// case-insensitive substring of the message or the raw line (see
// textFilter).
func logsQL(qu *Query, cur *cursor) string {
	var b strings.Builder
	b.WriteString(logsQLFilter(qu, cur))
	fmt.Fprintf(&b, " | sort by (_time desc, %s desc) limit %d", fieldID, qu.Limit+1)
	fmt.Fprintf(&b, " | fields _time, _msg, %s, %s, %s, %s, %s, %s, %s.*", fieldLevel, fieldProject, fieldCluster, fieldNode, fieldRaw, fieldID, fieldFields)
	return b.String()
}

// logsQLFilter is the filter part of logsQL, shared with Count.
func logsQLFilter(qu *Query, cur *cursor) string {
	var b strings.Builder
	b.WriteString("{" + fieldProject + " in (")
	for i, p := range qu.Projects {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strconv.Quote(p))
	}
	b.WriteString(")")
	if qu.Cluster != "" {
		b.WriteString("," + fieldCluster + "=" + strconv.Quote(qu.Cluster))
	}
	b.WriteString("}")
	switch {
	case !qu.From.IsZero() && !qu.To.IsZero():
		fmt.Fprintf(&b, " _time:[%s, %s)", qu.From.UTC().Format(timeLayout), qu.To.UTC().Format(timeLayout))
	case !qu.From.IsZero():
		fmt.Fprintf(&b, " _time:>=%s", qu.From.UTC().Format(timeLayout))
	case !qu.To.IsZero():
		fmt.Fprintf(&b, " _time:<%s", qu.To.UTC().Format(timeLayout))
	}
	if qu.Level != "" {
		b.WriteString(" " + fieldLevel + ":=" + strconv.Quote(qu.Level))
	}
	if qu.Text != "" {
		t := textFilter(qu.Text)
		fmt.Fprintf(&b, " (_msg:%s or %s:%s)", t, fieldRaw, t)
	}
	if cur != nil {
		// Strictly after the previous page in (time desc, log_id desc)
		// order. cur.Time and cur.ID were validated by decodeToken.
		fmt.Fprintf(&b, " (_time:<%s or (_time:[%s, %s] %s:<%s))", cur.Time, cur.Time, cur.Time, fieldID, strconv.Quote(cur.ID))
	}
	return b.String()
}

// textFilter is the LogsQL filter for what the user typed: a regexp filter
// (~"…") that finds text as a case-insensitive substring, so "health"
// matches "Health_check_failed" where a phrase filter would need the whole
// word. regexp.QuoteMeta makes every character of text literal in the
// regexp (VictoriaLogs uses Go's regexp syntax), and strconv.Quote keeps the
// regexp inside one LogsQL string literal (text is valid UTF-8, checked by
// normalize, so the regexp always compiles).
func textFilter(text string) string {
	return "~" + strconv.Quote("(?i)"+regexp.QuoteMeta(text))
}
