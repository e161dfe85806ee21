package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// fakeVictoriaLogs answers the receiver test and every query with rows,
// and keeps the queries it was asked.
type fakeVictoriaLogs struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
}

func startFakeVictoriaLogs(t *testing.T, rows string) *fakeVictoriaLogs {
	t.Helper()
	f := &fakeVictoriaLogs{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/insert/elasticsearch/":
			w.Header().Set("X-Elastic-Product", "Elasticsearch")
			_, _ = io.WriteString(w, `{"version":{"number":"8.9.0"}}`)
		case "/select/logsql/query":
			_ = r.ParseForm()
			q := r.PostForm.Get("query")
			f.mu.Lock()
			f.queries = append(f.queries, q)
			f.mu.Unlock()
			if strings.Contains(q, "| sort by") {
				_, _ = io.WriteString(w, rows)
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// TestJourneyLogsTableShowsFieldsAndNode: the logs page shows each line's
// node and the fields the agent parsed (client, topic, connector…) beside
// the message, the raw line on demand, and the raw line itself for a line
// without a message.
func TestJourneyLogsTableShowsFieldsAndNode(t *testing.T) {
	e := start(t, nil)
	row1 := `{"_time":"2026-12-04T10:00:00.000000001Z","_msg":"health_check_failed","level":"warning","project":"` + e.project +
		`","cluster":"c1","node":"emqx@10.0.0.1","raw":"2026-12-04T10:00:00.000000+00:00 [warning] tag: CONNECTOR, msg: health_check_failed, connector: http:sink, reason: econnrefused","log_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",` +
		`"fields.tag":"CONNECTOR","fields.msg":"health_check_failed","fields.connector":"http:sink","fields.reason":"econnrefused"}` + "\n"
	row2 := `{"_time":"2026-12-04T09:00:00Z","_msg":"","level":"","project":"` + e.project +
		`","cluster":"c1","node":"emqx@10.0.0.1","raw":"free text the agent could not parse","log_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}` + "\n"
	vl := startFakeVictoriaLogs(t, row1+row2)
	e.api(200, "PUT", "/api/v1/system/log-receiver", e.admin, map[string]any{"type": "victorialogs", "url": vl.URL})

	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get("/projects/" + e.project + "/logs?" + url.Values{"q": {"health"}}.Encode())
	mustStatus(t, p, http.StatusOK, "logs")
	for _, want := range []string{
		"<td>emqx@10.0.0.1</td>",
		"<code>health_check_failed</code>",
		"<dt>connector</dt><dd>http:sink</dd>", "<dt>reason</dt><dd>econnrefused</dd>", "<dt>tag</dt><dd>CONNECTOR</dd>",
		"<summary>Raw line</summary><code>2026-12-04T10:00:00.000000&#43;00:00 [warning] tag: CONNECTOR",
		"<code>free text the agent could not parse</code>",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("logs page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "<dt>msg</dt>") {
		t.Error("the message is shown twice, as the message and as the msg field")
	}
	if t.Failed() {
		t.Logf("page:\n%s", p.body)
	}
}
