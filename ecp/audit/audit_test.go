package audit_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestListPagesNewestFirst: a filter that keeps few records still fills
// the limit by reading on, page after page, newest first.
func TestListPagesNewestFirst(t *testing.T) {
	l := audit.New(etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), 0)
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
	l := audit.New(etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), 0)
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
	l := audit.New(etcdtest.Client(t), slog.New(slog.DiscardHandler), prometheus.NewRegistry(), 0)
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
	l := audit.New(cli, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), retention)
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
