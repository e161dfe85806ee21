package audit_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestListPagesNewestFirst: a filter that keeps few records still fills
// the limit by reading on, page after page, newest first.
func TestListPagesNewestFirst(t *testing.T) {
	l := audit.New(etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), audit.Options{})
	const n = 1100
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := l.Write(t.Context(), audit.Record{Actor: "u", Status: i}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := l.List(t.Context(), audit.Filter{Limit: 400, Visible: func(r audit.Record) bool { return r.Status%3 == 0 }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 367 { // 0, 3, ..., 1098
		t.Fatalf("got %d records, want all 367 visible ones", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i-1].ID <= got[i].ID {
			t.Fatalf("not newest first at %d: %s then %s", i, got[i-1].ID, got[i].ID)
		}
	}
	got, err = l.List(t.Context(), audit.Filter{Limit: 10})
	if err != nil || len(got) != 10 {
		t.Fatalf("limit 10: %d records, %v", len(got), err)
	}
}

// TestMiddlewareRecordsChangesOnly: reads are not audited, and the query
// string (where a careless client may put a secret) is not recorded.
func TestMiddlewareRecordsChangesOnly(t *testing.T) {
	l := audit.New(etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), audit.Options{})
	r := mux.NewRouter()
	r.Use(l.Middleware(func(*http.Request) (string, string) { return "carol", "session" }))
	r.HandleFunc("/things/{id}", func(w http.ResponseWriter, req *http.Request) {
		audit.Annotate(req.Context(), audit.Note{Project: "p1", Target: "thing/" + mux.Vars(req)["id"]})
		w.WriteHeader(http.StatusAccepted)
	}).Methods(http.MethodGet, http.MethodPost)
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/things/7?password=x", nil))
	}
	got, err := l.List(t.Context(), audit.Filter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d records, want only the POST", len(got))
	}
	rec := got[0]
	want := audit.Record{ID: rec.ID, Time: rec.Time, Actor: "carol", Via: "session", Method: "POST", Route: "/things/{id}", Path: "/things/7",
		Status: http.StatusAccepted, Project: "p1", Target: "thing/7", Remote: rec.Remote}
	if rec != want {
		t.Fatalf("record\n%+v, want\n%+v", rec, want)
	}
}

// TestMiddlewareRecordsReadsThatAskForIt: a GET whose handler marks its
// note Read (the dashboard jump) is recorded; other reads are not.
func TestMiddlewareRecordsReadsThatAskForIt(t *testing.T) {
	l := audit.New(etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), audit.Options{})
	r := mux.NewRouter()
	r.Use(l.Middleware(func(*http.Request) (string, string) { return "dave", "api-token" }))
	r.HandleFunc("/clusters/{id}/dashboard", func(w http.ResponseWriter, req *http.Request) {
		audit.Annotate(req.Context(), audit.Note{Project: "p1", Target: "cluster/" + mux.Vars(req)["id"], Read: true})
		http.Redirect(w, req, "http://emqx.example:18083/", http.StatusFound)
	}).Methods(http.MethodGet)
	r.HandleFunc("/clusters/{id}", func(w http.ResponseWriter, req *http.Request) {
		audit.Annotate(req.Context(), audit.Note{Project: "p1", Target: "cluster/" + mux.Vars(req)["id"]})
	}).Methods(http.MethodGet)
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/clusters/c9", nil))
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/clusters/c9/dashboard", nil))
	got, err := l.List(t.Context(), audit.Filter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Route != "/clusters/{id}/dashboard" || got[0].Actor != "dave" || got[0].Target != "cluster/c9" || got[0].Status != http.StatusFound {
		t.Fatalf("records %+v, want only the dashboard jump", got)
	}
}

// TestRecordsExpireWithRetention: records live on a shared lease of about
// the retention, so etcd removes them by itself.
func TestRecordsExpireWithRetention(t *testing.T) {
	cli := etcdtest.Client(t)
	const retention = 48 * time.Hour
	l := audit.New(cli, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), audit.Options{Retention: retention})
	for range 3 {
		if err := l.Write(t.Context(), audit.Record{Actor: "u"}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(t.Context(), audit.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	leases := map[int64]bool{}
	for _, kv := range resp.Kvs {
		leases[kv.Lease] = true
	}
	if len(resp.Kvs) != 3 || len(leases) > 2 || leases[0] {
		t.Fatalf("%d records on leases %v, want 3 records sharing a lease", len(resp.Kvs), leases)
	}
	for id := range leases {
		ttl, err := cli.TimeToLive(t.Context(), clientv3.LeaseID(id))
		if err != nil {
			t.Fatal(err)
		}
		if ttl.GrantedTTL < int64(retention/time.Second) || ttl.GrantedTTL > int64((retention+time.Hour)/time.Second) {
			t.Fatalf("lease TTL %ds, want about %s", ttl.GrantedTTL, retention)
		}
	}
}

// TestSec03AuditCapsCallerInput: issue #11 finding 3: a failed login with a
// 650 KB username stored the username whole in its audit record (20 of them
// added 31 MB to etcd). Every field is now cut to MaxFieldBytes, the record
// says so, and no input makes a stored record exceed MaxRecordBytes.
func TestSec03AuditCapsCallerInput(t *testing.T) {
	cli := etcdtest.Client(t)
	reg := prometheus.NewRegistry()
	l := audit.New(cli, slog.New(slog.DiscardHandler), reg, audit.Options{})
	r := mux.NewRouter()
	r.Use(l.Middleware(func(*http.Request) (string, string) { return "", "" }))
	typed := strings.Repeat("x", 650_000)
	r.HandleFunc("/login/{rest:.*}", func(w http.ResponseWriter, req *http.Request) {
		// What the login handler notes: the typed username.
		audit.Annotate(req.Context(), audit.Note{Actor: typed, Target: "user/" + typed})
		w.WriteHeader(http.StatusUnauthorized)
	}).Methods(http.MethodPost)
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/login/"+strings.Repeat("p", 5000), nil))
	got, err := l.List(t.Context(), audit.Filter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d records, want 1", len(got))
	}
	rec := got[0]
	for name, v := range map[string]string{"actor": rec.Actor, "target": rec.Target, "path": rec.Path} {
		if len(v) > audit.MaxFieldBytes || !strings.HasSuffix(v, "…") {
			t.Errorf("%s is %d bytes (%.20q…), want at most %d ending in …", name, len(v), v, audit.MaxFieldBytes)
		}
	}
	if !strings.HasPrefix(rec.Actor, "xxxx") || !strings.HasPrefix(rec.Path, "/login/pppp") || !rec.Truncated {
		t.Errorf("record with actor %.20q…, path %.20q…, truncated %v: want the start of each field kept and truncated set", rec.Actor, rec.Path, rec.Truncated)
	}
	if n := gathered(t, reg, "ecp_audit_records_truncated_total"); n != 1 {
		t.Errorf("ecp_audit_records_truncated_total = %v, want 1", n)
	}

	// The worst a caller can type: characters JSON escapes sixfold, in
	// every field.
	nasty := strings.Repeat("<\x01\xff\u2028\"", 10_000)
	if err := l.Write(t.Context(), audit.Record{Actor: nasty, Via: nasty, Method: nasty, Route: nasty, Path: nasty,
		Org: nasty, Project: nasty, Target: nasty, Remote: nasty, Status: 599}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(t.Context(), audit.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if len(kv.Value) > audit.MaxRecordBytes {
			t.Errorf("record %s stored as %d bytes, want at most %d", kv.Key, len(kv.Value), audit.MaxRecordBytes)
		}
	}
}

// TestSec03AuditKeepsNewestWithinBudget: issue #11 finding 3: the audit log
// was bounded by age only, so a flood of failed logins grew it for 90 days.
// Beyond MaxRecords the oldest records go first.
func TestSec03AuditKeepsNewestWithinBudget(t *testing.T) {
	cli := etcdtest.Client(t)
	reg := prometheus.NewRegistry()
	l := audit.New(cli, slog.New(slog.DiscardHandler), reg, audit.Options{MaxRecords: 10})
	for i := range 35 {
		if err := l.Write(t.Context(), audit.Record{Actor: "u", Status: i}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // A second trim finds nothing to do.
		if err := l.Trim(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	got, err := l.List(t.Context(), audit.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var statuses []int
	for _, r := range got {
		statuses = append(statuses, r.Status)
	}
	if want := []int{34, 33, 32, 31, 30, 29, 28, 27, 26, 25}; !slices.Equal(statuses, want) {
		t.Fatalf("kept records with statuses %v, want the newest ten %v", statuses, want)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ecp_audit_records Audit records in etcd when this replica last counted them against --audit.max-records.
# TYPE ecp_audit_records gauge
ecp_audit_records 10
# HELP ecp_audit_records_trimmed_total Oldest audit records this replica removed to keep the log within --audit.max-records.
# TYPE ecp_audit_records_trimmed_total counter
ecp_audit_records_trimmed_total 25
`), "ecp_audit_records", "ecp_audit_records_trimmed_total"); err != nil {
		t.Fatal(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("metric lint: %v %v", problems, err)
	}
}

// gathered is the value of the unlabelled metric name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
