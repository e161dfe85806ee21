package logstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeES is an httptest Elasticsearch that checks requests the way
// Elasticsearch documents them and answers with programmable replies.
type fakeES struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	bulks     []fakeBulk                                      // every bulk request received
	templates []string                                        // PUT _index_template names
	searches  []fakeSearch                                    // every search received
	reply     func(n int, b fakeBulk) (int, http.Header, any) // bulk reply per request number
	search    func(n int, s fakeSearch) (int, any)
	user      string
	pass      string
	// denied lists the privileges has_privileges reports as missing.
	denied map[string]bool
}

type fakeBulk struct {
	Query   string
	Actions []bulkAction
	Docs    []document
}

type fakeSearch struct {
	Path  string
	Query string
	Body  map[string]any
}

func newFakeES(t *testing.T) *fakeES {
	t.Helper()
	f := &fakeES{t: t, user: "ecp", pass: "s3cret-pw"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeES) cfg() ReceiverConfig {
	return ReceiverConfig{Type: TypeElasticsearch, URL: f.srv.URL, Username: f.user, Password: "s3cret-pw", IndexPrefix: "logs"}
}

func (f *fakeES) fail(w http.ResponseWriter, format string, args ...any) {
	f.t.Errorf("fake elasticsearch: "+format, args...)
	http.Error(w, fmt.Sprintf(format, args...), http.StatusBadRequest)
}

func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != f.user || p != f.pass {
		w.Header().Set("WWW-Authenticate", `Basic realm="security" charset="UTF-8"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"root_cause":[{"type":"security_exception","reason":"unable to authenticate user [x] for REST request [/]"}],"type":"security_exception","reason":"unable to authenticate user"},"status":401}`)
		return
	}
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		_, _ = io.WriteString(w, `{"name":"es-1","cluster_name":"logs","cluster_uuid":"x","version":{"number":"8.15.0","build_flavor":"default","lucene_version":"9.11.1"},"tagline":"You Know, for Search"}`)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_index_template/"):
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			f.fail(w, "template content type %q", ct)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			f.fail(w, "template body: %v", err)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/_index_template/")
		if pats, _ := body["index_patterns"].([]any); len(pats) != 1 || pats[0] != name+"-*" {
			f.fail(w, "template %s patterns %v", name, body["index_patterns"])
			return
		}
		f.mu.Lock()
		f.templates = append(f.templates, name)
		f.mu.Unlock()
		_, _ = io.WriteString(w, `{"acknowledged":true}`)
	case r.URL.Path == "/insert/elasticsearch/":
		// What Elasticsearch answers for a path it has no handler for.
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"no handler found for uri [/insert/elasticsearch/] and method [GET]"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/_security/user/_has_privileges":
		var body struct {
			Cluster []string `json:"cluster"`
			Index   []struct {
				Names      []string `json:"names"`
				Privileges []string `json:"privileges"`
			} `json:"index"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Index) != 1 || len(body.Index[0].Names) != 1 {
			f.fail(w, "has_privileges body: %v", err)
			return
		}
		f.mu.Lock()
		denied := f.denied
		f.mu.Unlock()
		cluster := map[string]bool{}
		for _, p := range body.Cluster {
			cluster[p] = !denied[p]
		}
		index := map[string]bool{}
		for _, p := range body.Index[0].Privileges {
			index[p] = !denied[p]
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"username": f.user, "has_all_requested": len(denied) == 0, "cluster": cluster,
			"index": map[string]any{body.Index[0].Names[0]: index}, "application": map[string]any{},
		})
	case r.Method == http.MethodPost && r.URL.Path == "/_bulk":
		f.serveBulk(w, r)
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/_search"):
		f.serveSearch(w, r)
	default:
		f.fail(w, "unexpected %s %s", r.Method, r.URL.Path)
	}
}

// serveBulk checks the NDJSON bulk body as the bulk API documents it: the
// x-ndjson content type, one action line and one source line per document,
// a final newline.
func (f *fakeES) serveBulk(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		f.fail(w, "bulk content type %q, want application/x-ndjson", ct)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	if len(raw) == 0 || raw[len(raw)-1] != '\n' {
		f.fail(w, "bulk body must end with a newline")
		return
	}
	b := fakeBulk{Query: r.URL.RawQuery}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var a bulkAction
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil || a.Index.ID == "" || a.Index.Index == "" {
			f.fail(w, "bad action line %q: %v", sc.Text(), err)
			return
		}
		if !sc.Scan() {
			f.fail(w, "action without source line")
			return
		}
		var d document
		dec = json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			f.fail(w, "bad source line %q: %v", sc.Text(), err)
			return
		}
		if a.Index.ID != d.ID {
			f.fail(w, "_id %q differs from log_id %q", a.Index.ID, d.ID)
			return
		}
		b.Actions = append(b.Actions, a)
		b.Docs = append(b.Docs, d)
	}
	f.mu.Lock()
	n := len(f.bulks)
	f.bulks = append(f.bulks, b)
	reply := f.reply
	f.mu.Unlock()
	status, hdr, body := http.StatusOK, http.Header(nil), any(bulkOK(len(b.Docs)))
	if reply != nil {
		status, hdr, body = reply(n, b)
	}
	for k, v := range hdr {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func (f *fakeES) serveSearch(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.fail(w, "search content type %q", ct)
		return
	}
	s := fakeSearch{Path: r.URL.Path, Query: r.URL.RawQuery}
	if err := json.NewDecoder(r.Body).Decode(&s.Body); err != nil {
		f.fail(w, "search body: %v", err)
		return
	}
	f.mu.Lock()
	n := len(f.searches)
	f.searches = append(f.searches, s)
	search := f.search
	f.mu.Unlock()
	status, body := http.StatusOK, any(map[string]any{"took": 1, "timed_out": false, "hits": map[string]any{"hits": []any{}}})
	if search != nil {
		status, body = search(n, s)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// bulkItem is one item of a bulk reply as Elasticsearch documents it.
func bulkItem(status int, errType, reason string) map[string]any {
	res := map[string]any{"_index": "logs-2026.11.27", "_id": "x", "status": status}
	if errType != "" {
		res["error"] = map[string]any{"type": errType, "reason": reason}
	} else {
		res["result"] = "created"
		res["_version"] = 1
	}
	return map[string]any{"index": res}
}

func bulkOK(n int) map[string]any {
	items := make([]any, n)
	for i := range items {
		items[i] = bulkItem(201, "", "")
	}
	return map[string]any{"took": 3, "errors": false, "items": items}
}

func (f *fakeES) bulkCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bulks)
}

// testLines makes n lines of one file, one millisecond apart.
func testLines(n int, start time.Time, level string) []agentproto.LogEntry {
	lines := make([]agentproto.LogEntry, n)
	for i := range lines {
		t := start.Add(time.Duration(i) * time.Millisecond)
		msg := fmt.Sprintf("msg: line_%d, clientid: c%d", i, i%7)
		lines[i] = agentproto.LogEntry{
			Time: t, Level: level, Message: msg, Fields: map[string]string{"clientid": fmt.Sprintf("c%d", i%7)},
			Raw:  t.Format(time.RFC3339Nano) + " [" + level + "] " + msg,
			File: "emqx.log.1", Offset: int64(i) * 100,
		}
	}
	return lines
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fakeClock is the Writer's clock in unit tests: waiting between retries
// advances it instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return nil
}

// fastOptions are the default options on a fake clock, so retry and
// backoff paths run their full course without sleeping.
func fastOptions() WriterOptions {
	c := &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	o := DefaultWriterOptions()
	o.Logger = discardLogger()
	o.Now = c.now
	o.sleep = c.sleep
	return o
}
