package alerts

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// ended is a resolved alert of project: rule on cluster at severity, ended
// end after t0 (it started a minute earlier).
func ended(project, fp, rule, cluster, severity string, end time.Duration) webhookAlert {
	return webhookAlert{
		Status: "resolved", Fingerprint: fp, StartsAt: t0.Add(end - time.Minute), EndsAt: t0.Add(end),
		Labels: map[string]string{"alertname": rule, "project": project, "cluster": cluster, "severity": severity},
	}
}

// fps are the fingerprints of items, in order.
func fps(items []Alert) string {
	var s []string
	for _, it := range items {
		s = append(s, it.Fingerprint)
	}
	return strings.Join(s, " ")
}

// historyWorld stores five history records in the project and two in the
// foreign one, whose fingerprints are the ones the foreign project's
// tests must never see.
func historyWorld(t *testing.T) (*api, string, string) {
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, Options{Now: (&clock{t: t0.Add(24 * time.Hour)}).now})
	p, f := w.project.ID, w.foreign.ID
	a.must(204, "", http.MethodPost, WebhookPath, webhookMessage{Version: "4", Status: "resolved", Receiver: "ecp", Alerts: []webhookAlert{
		ended(p, "a", "EMQXNodeDown", "c1", "critical", 10*time.Minute),
		ended(p, "b", "EMQXNodeDown", "c2", "warning", 20*time.Minute),
		ended(p, "c", "EMQXRuleAbnormal", "c1", "warning", 30*time.Minute),
		ended(p, "d", "EMQXRuleAbnormal", "c2", "critical", 40*time.Minute),
		ended(p, "e", "MyBackupFailed", "", "info", 50*time.Minute),
		ended(f, "x", "EMQXNodeDown", "c1", "critical", 5*time.Minute),
		ended(f, "y", "EMQXNodeDown", "c1", "critical", 15*time.Minute),
	}}, "Authorization", "Bearer "+a.svc.token.Reveal())
	return a, p, f
}

// TestHistorySearch: the history list filters by time range, cluster,
// rule and severity together, and returns exactly the matching records of
// the project asked about.
func TestHistorySearch(t *testing.T) {
	a, p, f := historyWorld(t)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct{ query, want string }{
		{"", "e d c b a"},
		{"rule=EMQXNodeDown", "b a"},
		{"rule=EMQXRuleAbnormal&cluster=c2", "d"},
		{"rule=EMQXNodeDown&severity=critical", "a"},
		{"severity=warning", "c b"},
		{"cluster=c1&from=" + at(15*time.Minute), "c"},
		{"from=" + at(25*time.Minute) + "&to=" + at(45*time.Minute), "d c"},
		{"rule=MyBackupFailed&severity=info", "e"},
		{"rule=Nothing", ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			if got := fps(a.list(p, "state=history&"+tc.query)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if got := fps(a.list(f, "state=history&rule=EMQXNodeDown")); got != "y x" {
		t.Fatalf("foreign project's history = %q, want %q", got, "y x")
	}
	a.must(400, "root", http.MethodGet, "/api/v1/projects/"+p+"/alerts?state=history&rule="+strings.Repeat("r", MaxRuleFilter+1), nil)
	var viewer struct{ Items []Alert }
	a.must(200, "viewer", http.MethodGet, "/api/v1/projects/"+p+"/alerts?state=history&rule=EMQXNodeDown", nil).decode(t, &viewer)
	if got := fps(viewer.Items); got != "b a" {
		t.Fatalf("viewer sees %q, want %q", got, "b a")
	}
	a.must(404, "viewer", http.MethodGet, "/api/v1/projects/"+f+"/alerts?state=history", nil)
}

// TestHistoryClear: a project admin clears the project's history by time
// or by count; exactly those records go, the foreign project's stay, and
// viewers, strangers and bad requests change nothing.
func TestHistoryClear(t *testing.T) {
	a, p, f := historyWorld(t)
	path := "/api/v1/projects/" + p + "/alerts/history?"
	before := "before=" + t0.Add(30*time.Minute).Format(time.RFC3339)
	for _, tc := range []struct {
		user, query string
		want        int
		field       string
	}{
		{"viewer", before, 403, ""},
		{"stranger", before, 404, ""},
		{"", before, 401, ""},
		{"padmin", "", 400, "before"},
		{"padmin", before + "&count=1", 400, "before"},
		{"padmin", "before=yesterday", 400, "before"},
		{"padmin", "count=0", 400, "count"},
		{"padmin", fmt.Sprintf("count=%d", MaxClearCount+1), 400, "count"},
		{"padmin", "count=many", 400, "count"},
	} {
		var e struct {
			Error struct{ Field, Message string }
		}
		a.must(tc.want, tc.user, http.MethodDelete, path+tc.query, nil).decode(t, &e)
		if e.Error.Field != tc.field || e.Error.Message == "" {
			t.Fatalf("%s as %q: error %+v, want field %q and a message", tc.query, tc.user, e.Error, tc.field)
		}
	}
	if got := fps(a.list(p, "state=history")); got != "e d c b a" {
		t.Fatalf("refused clears changed history: %q", got)
	}
	var out ClearReply
	// Ended before 30m: a (10m) and b (20m); c ended at 30m exactly stays.
	a.must(200, "padmin", http.MethodDelete, path+before, nil).decode(t, &out)
	if got := fps(a.list(p, "state=history")); out.Deleted != 2 || got != "e d c" {
		t.Fatalf("after clearing before 30m: deleted %d, history %q; want 2 and %q", out.Deleted, got, "e d c")
	}
	a.must(200, "padmin", http.MethodDelete, path+"count=2", nil).decode(t, &out)
	if got := fps(a.list(p, "state=history")); out.Deleted != 2 || got != "e" {
		t.Fatalf("after clearing the oldest 2: deleted %d, history %q; want 2 and %q", out.Deleted, got, "e")
	}
	a.must(200, "padmin", http.MethodDelete, path+fmt.Sprintf("count=%d", MaxClearCount), nil).decode(t, &out)
	if got := fps(a.list(p, "state=history")); out.Deleted != 1 || got != "" {
		t.Fatalf("after clearing all: deleted %d, history %q", out.Deleted, got)
	}
	if got := fps(a.list(f, "state=history")); got != "y x" {
		t.Fatalf("foreign project's history = %q, want it untouched", got)
	}
	// A cleared record is gone from the id index too.
	a.must(404, "root", http.MethodDelete, "/api/v1/alerts/"+AlertID("a", t0.Add(9*time.Minute)), nil)
}

// TestHistoryClearInBatches: a clear bigger than one etcd transaction
// removes exactly the oldest count records.
func TestHistoryClearInBatches(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, Options{Now: (&clock{t: t0.Add(24 * time.Hour)}).now})
	p := w.project.ID
	const total = 3*clearBatch + 5
	var all []webhookAlert
	for i := range total {
		all = append(all, ended(p, fmt.Sprintf("fp%04d", i), "EMQXNodeDown", "c1", "critical", time.Duration(i+1)*time.Second))
	}
	for batch := range slices.Chunk(all, 50) {
		a.must(204, "", http.MethodPost, WebhookPath, webhookMessage{Version: "4", Status: "resolved", Receiver: "ecp", Alerts: batch},
			"Authorization", "Bearer "+a.svc.token.Reveal())
	}
	var out ClearReply
	a.must(200, "padmin", http.MethodDelete, fmt.Sprintf("/api/v1/projects/%s/alerts/history?count=%d", p, 2*clearBatch+3), nil).decode(t, &out)
	left := a.list(p, "state=history&limit=1000")
	var want []string
	for i := total - 1; i >= 2*clearBatch+3; i-- {
		want = append(want, fmt.Sprintf("fp%04d", i))
	}
	if out.Deleted != 2*clearBatch+3 || fps(left) != strings.Join(want, " ") {
		t.Fatalf("deleted %d, left %q; want %d deleted, left %q", out.Deleted, fps(left), 2*clearBatch+3, strings.Join(want, " "))
	}
}
