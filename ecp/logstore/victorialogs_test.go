package logstore

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// victoriaLogs is a real victoria-logs process on a loopback port.
type victoriaLogs struct {
	t    testing.TB
	bin  string
	dir  string
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

// victoriaLogsBinary finds the binary scripts/install-victorialogs.sh
// installs; without it the test fails with the install command.
func victoriaLogsBinary(t testing.TB) string {
	t.Helper()
	const install = "victoria-logs is not installed; run scripts/install-victorialogs.sh (or set ECP_VICTORIALOGS_BIN)"
	if p := os.Getenv("ECP_VICTORIALOGS_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v", install, err)
		}
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			p := filepath.Join(d, ".tools", "victoria-logs")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	if p, err := exec.LookPath("victoria-logs"); err == nil {
		return p
	}
	t.Fatal(install)
	return ""
}

func startVictoriaLogs(t testing.TB) *victoriaLogs {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	v := &victoriaLogs{t: t, bin: victoriaLogsBinary(t), dir: t.TempDir(), addr: addr}
	v.start()
	t.Cleanup(v.stop)
	return v
}

func (v *victoriaLogs) url() string { return "http://" + v.addr }

func (v *victoriaLogs) cfg() ReceiverConfig {
	return ReceiverConfig{Type: TypeVictoriaLogs, URL: v.url()}
}

func (v *victoriaLogs) start() {
	v.t.Helper()
	v.cmd = exec.Command(v.bin, "-storageDataPath="+filepath.Join(v.dir, "data"), "-httpListenAddr="+v.addr,
		"-loggerLevel=ERROR")
	v.cmd.Stdout, v.cmd.Stderr = os.Stderr, os.Stderr
	if err := v.cmd.Start(); err != nil {
		v.t.Fatalf("starting victoria-logs: %v", err)
	}
	v.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(v.cmd, v.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(v.url() + "/health")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("victoria-logs did not become healthy at %s: %v", v.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process gracefully (it flushes its data), by its pid.
func (v *victoriaLogs) stop() {
	if v.cmd == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(10 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
	}
	v.cmd = nil
}

// flush makes everything ingested searchable at once.
func (v *victoriaLogs) flush() {
	v.t.Helper()
	resp, err := http.Get(v.url() + "/internal/force_flush")
	if err != nil {
		v.t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		v.t.Fatalf("force_flush: %s", resp.Status)
	}
}

// queryAll pages through q and fails on any duplicate id.
func queryAll(t *testing.T, qr *Querier, q Query) []Item {
	t.Helper()
	var all []Item
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		page, err := qr.Query(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		for i, it := range page.Items {
			if seen[it.ID] {
				t.Fatalf("page %d: line %s returned twice", pages, it.ID)
			}
			seen[it.ID] = true
			if len(all) > 0 || i > 0 {
				prev := all
				if i > 0 {
					prev = page.Items[:i]
				}
				p := prev[len(prev)-1]
				if it.Time.After(p.Time) || it.Time.Equal(p.Time) && it.ID > p.ID {
					t.Fatalf("not newest first: %v %s after %v %s", it.Time, it.ID, p.Time, p.ID)
				}
			}
		}
		all = append(all, page.Items...)
		if page.NextPageToken == "" {
			return all
		}
		q.PageToken = page.NextPageToken
	}
}

// TestVictoriaLogsEndToEnd writes 20,000 lines of two projects through the
// Writer into a real VictoriaLogs and reads them back through the Querier.
func TestVictoriaLogsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts victoria-logs; runs without -short")
	}
	vl := startVictoriaLogs(t)
	if err := Test(t.Context(), vl.cfg(), nil); err != nil {
		t.Fatalf("connection test: %v", err)
	}
	if err := Test(t.Context(), ReceiverConfig{Type: TypeElasticsearch, URL: vl.url()}, nil); !errors.Is(err, ErrWrongType) {
		t.Fatalf("victorialogs tested as elasticsearch: %v", err)
	}
	w, _ := newTestWriter(t, vl.cfg(), quietWriterOptions())

	// 2 projects x 2 clusters x 5,000 lines; every 10th line is an error;
	// lines of one cluster share timestamps in pairs to exercise ties.
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	type key struct{ project, cluster string }
	clusters := []key{{"proj-a", "a1"}, {"proj-a", "a2"}, {"proj-b", "b1"}, {"proj-b", "b2"}}
	const perCluster = 5000
	for ci, k := range clusters {
		for b := range perCluster / 1000 {
			lines := make([]agentproto.LogEntry, 1000)
			for i := range lines {
				n := b*1000 + i
				level := "warning"
				if n%10 == 0 {
					level = "error"
				}
				ts := base.Add(time.Duration(n/2) * time.Millisecond).Add(time.Duration(ci) * time.Microsecond)
				msg := fmt.Sprintf("msg: line_%d, clientid: client-%s-%d", n, k.cluster, n%50)
				if n == 4321 {
					msg = "msg: special_needle, reason: not_authorized"
				}
				lines[i] = agentproto.LogEntry{
					Time: ts, Level: level, Message: msg, Raw: ts.Format(time.RFC3339Nano) + " [" + level + "] " + msg,
					File: "emqx.log.1", Offset: int64(n) * 120,
				}
			}
			res, err := w.Write(t.Context(), Batch{Project: k.project, Cluster: k.cluster, Node: "emqx@" + k.cluster,
				BatchID: fmt.Sprintf("%s-%d", k.cluster, b), Lines: lines})
			if err != nil || res.Accepted != len(lines) {
				t.Fatalf("write %s batch %d: %+v %v", k.cluster, b, res, err)
			}
		}
	}
	vl.flush()

	qr, err := NewQuerier(vl.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()

	t.Run("scope and paging", func(t *testing.T) {
		items := queryAll(t, qr, Query{Projects: []string{"proj-a"}, Limit: MaxQueryLimit})
		if len(items) != 2*perCluster {
			t.Fatalf("proj-a has %d lines, want %d", len(items), 2*perCluster)
		}
		for _, it := range items {
			if it.Project != "proj-a" || (it.Cluster != "a1" && it.Cluster != "a2") || it.Node != "emqx@"+it.Cluster || it.Raw == "" {
				t.Fatalf("out of scope or incomplete: %+v", it)
			}
		}
		both := queryAll(t, qr, Query{Projects: []string{"proj-a", "proj-b"}, Limit: 777})
		if len(both) != 4*perCluster {
			t.Fatalf("both projects: %d lines", len(both))
		}
		for _, c := range []struct {
			q    Query
			want int64
		}{
			{Query{Projects: []string{"proj-a"}}, 2 * perCluster},
			{Query{Projects: []string{"proj-a"}, Cluster: "a2", Level: "error"}, perCluster / 10},
			{Query{Projects: []string{"proj-c"}}, 0},
		} {
			if n, err := qr.Count(t.Context(), c.q); err != nil || n != c.want {
				t.Fatalf("Count(%+v) = %d, %v; want %d", c.q, n, err, c.want)
			}
		}
	})
	t.Run("line read back exactly", func(t *testing.T) {
		page, err := qr.Query(t.Context(), Query{Projects: []string{"proj-a"}, Cluster: "a2", Text: "special_needle"})
		if err != nil || len(page.Items) != 1 {
			t.Fatalf("%+v %v", page, err)
		}
		it := page.Items[0]
		wantTime := base.Add(4321 / 2 * time.Millisecond).Add(time.Microsecond)
		wantMsg := "msg: special_needle, reason: not_authorized"
		if !it.Time.Equal(wantTime) || it.Level != "warning" || it.Message != wantMsg || it.Node != "emqx@a2" ||
			it.Raw != wantTime.Format(time.RFC3339Nano)+" [warning] "+wantMsg || !isLineID(it.ID) {
			t.Fatalf("item %+v, want time %v", it, wantTime)
		}
	})
	t.Run("filters", func(t *testing.T) {
		tests := []struct {
			name string
			q    Query
			want int
		}{
			{"cluster", Query{Projects: []string{"proj-b"}, Cluster: "b2"}, perCluster},
			{"cluster of another project", Query{Projects: []string{"proj-a"}, Cluster: "b2"}, 0},
			{"level", Query{Projects: []string{"proj-a"}, Cluster: "a1", Level: "error"}, perCluster / 10},
			{"text", Query{Projects: []string{"proj-a", "proj-b"}, Text: "special_needle"}, 4},
			{"text in raw only", Query{Projects: []string{"proj-b"}, Text: "[error] msg: line_4320"}, 2},
			{"time range", Query{Projects: []string{"proj-a"}, Cluster: "a1", From: base, To: base.Add(100 * time.Millisecond)}, 200},
			{"hostile text", Query{Projects: []string{"proj-a"}, Text: `") or project:*`}, 0},
			{"hostile cluster", Query{Projects: []string{"proj-a"}, Cluster: `a1"} or {project="proj-b`}, 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				tt.q.Limit = MaxQueryLimit
				items := queryAll(t, qr, tt.q)
				if len(items) != tt.want {
					t.Fatalf("%d lines, want %d", len(items), tt.want)
				}
				for _, it := range items {
					if !slicesContains(tt.q.Projects, it.Project) {
						t.Fatalf("scope widened: %+v", it)
					}
				}
			})
		}
	})
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestVictoriaLogsDownThenUp: with the store down the Writer reports
// backpressure and keeps nothing half-done; once it is back, the agent's
// retry of the same batch lands exactly once, and a further retry (lost
// ack) writes nothing.
func TestVictoriaLogsDownThenUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts victoria-logs; runs without -short")
	}
	vl := startVictoriaLogs(t)
	opts := quietWriterOptions()
	opts.MaxRetryTime = 300 * time.Millisecond
	opts.MinBackoff = 10 * time.Millisecond
	opts.MaxBackoff = 50 * time.Millisecond
	w, reg := newTestWriter(t, vl.cfg(), opts)
	batch := Batch{Project: "p", Cluster: "c", Node: "n", BatchID: "batch-1", Lines: testLines(500, time.Now().Add(-time.Minute), "info")}

	vl.stop()
	_, err := w.Write(t.Context(), batch)
	bp, ok := errors.AsType[*BackpressureError](err)
	if !ok || !errors.Is(err, ErrUnreachable) || bp.Pending != 500 || bp.RetryAfter <= 0 {
		t.Fatalf("store down: %v", err)
	}
	if counter(t, reg, "ecp_logstore_retries_total") == 0 {
		t.Fatal("no retries while the store was down")
	}

	vl.start()
	res, err := w.Write(t.Context(), batch)
	if err != nil || res.Accepted != 500 || res.Duplicate {
		t.Fatalf("store up: %+v %v", res, err)
	}
	res, err = w.Write(t.Context(), batch)
	if err != nil || !res.Duplicate {
		t.Fatalf("lost-ack retry: %+v %v", res, err)
	}
	vl.flush()
	qr, err := NewQuerier(vl.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()
	items := queryAll(t, qr, Query{Projects: []string{"p"}, Limit: 1000})
	if len(items) != 500 {
		t.Fatalf("%d lines stored, want exactly 500", len(items))
	}
	if got := strconv.Itoa(int(counter(t, reg, "ecp_logstore_lines_written_total"))); got != "500" {
		t.Fatalf("lines written %s", got)
	}
}

// quietWriterOptions is DefaultWriterOptions with a quiet logger.
func quietWriterOptions() WriterOptions {
	o := DefaultWriterOptions()
	o.Logger = discardLogger()
	return o
}

// TestJourneyLogSearchFindsWhatIsTyped: against a real VictoriaLogs, the
// text a person types finds lines that contain it anywhere, in any case
// ("health" finds "health_check_failed"), the line's parsed fields come
// back, and text full of LogsQL and Elasticsearch syntax is matched
// literally and never reaches another project's lines.
func TestJourneyLogSearchFindsWhatIsTyped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts victoria-logs; runs without -short")
	}
	vl := startVictoriaLogs(t)
	w, _ := newTestWriter(t, vl.cfg(), quietWriterOptions())
	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	// The same lines in both projects: a query that escaped its scope
	// would return proj-b's copies.
	authz := map[string]string{"tag": "AUTHZ", "clientid": "c1", "msg": "cannot_publish_to_topic_due_to_not_authorized", "topic": "a/+/b", "reason": `x*y|z:"q"`}
	texts := []struct {
		msg, raw string
		fields   map[string]string
	}{
		{"health_check_failed", "tag: CONNECTOR, msg: health_check_failed, connector: http:c1, reason: timeout", nil},
		{"Health_Check_Failed loudly", "msg: Health_Check_Failed loudly", nil},
		{"cannot_publish_to_topic_due_to_not_authorized", `tag: AUTHZ, clientid: c1, msg: cannot_publish_to_topic_due_to_not_authorized, topic: a/+/b, reason: x*y|z:"q"`, authz},
		{"literal syntax", `msg: literal syntax, note: ") or project:* | project:proj-b {"match_all":{}} (?i).* a\b`, nil},
		{"plain", "msg: plain, clientid: c2", nil},
	}
	stored := map[string][]agentproto.LogEntry{}
	for _, project := range []string{"proj-a", "proj-b"} {
		var lines []agentproto.LogEntry
		for i, x := range texts {
			ts := base.Add(time.Duration(i) * time.Millisecond)
			raw := ts.Format(time.RFC3339Nano) + " [warning] " + x.raw
			e := agentproto.LogEntry{Time: ts, Level: "warning", Message: x.msg, Raw: raw, Fields: x.fields, File: "emqx.log.1", Offset: int64(i) * 200}
			lines = append(lines, e)
		}
		stored[project] = lines
		if _, err := w.Write(t.Context(), Batch{Project: project, Cluster: "c-" + project, Node: "emqx@n1", BatchID: project, Lines: lines}); err != nil {
			t.Fatal(err)
		}
	}
	vl.flush()
	qr, err := NewQuerier(vl.cfg(), QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer qr.Close()

	for _, text := range []string{
		"health", "HEALTH", "ealth_che", "not_auth", "topic: a/+/b",
		`x*y|z:"q"`, `"`, "*", "|", ":", `") or project:*`, "project:proj-b", `{"match_all":{}}`,
		`(?i).*`, `a\b`, ".*", `"} or {project="proj-b"}`, "* | delete", "_msg:*", "nothing_like_this",
	} {
		t.Run(strconv.Quote(text), func(t *testing.T) {
			var want []string
			for _, e := range stored["proj-a"] {
				if containsFold(e.Message, text) || containsFold(e.Raw, text) {
					want = append(want, e.Raw)
				}
			}
			q := Query{Projects: []string{"proj-a"}, Text: text, Limit: MaxQueryLimit}
			var got []string
			for _, it := range queryAll(t, qr, q) {
				if it.Project != "proj-a" {
					t.Fatalf("scope widened to %s by %q", it.Project, text)
				}
				got = append(got, it.Raw)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("q=%q found\n%q\nwant\n%q", text, got, want)
			}
			if n, err := qr.Count(t.Context(), q); err != nil || n != int64(len(want)) {
				t.Fatalf("count %d, %v; want %d", n, err, len(want))
			}
		})
	}
	if n := len(queryAll(t, qr, Query{Projects: []string{"proj-a"}, Text: "health"})); n != 2 {
		t.Fatalf("health found %d lines, want health_check_failed and Health_Check_Failed", n)
	}

	page, err := qr.Query(t.Context(), Query{Projects: []string{"proj-a"}, Text: "cannot_publish"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("%+v %v", page, err)
	}
	if it := page.Items[0]; !maps.Equal(it.Fields, authz) || it.Node != "emqx@n1" {
		t.Fatalf("fields %q node %q, want %q and emqx@n1", it.Fields, it.Node, authz)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
