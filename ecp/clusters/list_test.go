package clusters

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/internal/secret"
)

// stubFleet answers Status from a map; everything else is unused here.
type stubFleet map[string]string

func (f stubFleet) Status(_ context.Context, id string) (Status, error) {
	return Status{State: f[id]}, nil
}

func (stubFleet) IssueRegistration(context.Context, string, time.Duration) (secret.String, time.Time, error) {
	return "", time.Time{}, errors.New("not in this test")
}

func (stubFleet) Forget(context.Context, string) error { return errors.New("not in this test") }

func (f stubFleet) States(_ context.Context, ids, out []string) error {
	for i, id := range ids {
		out[i] = f[id]
	}
	return nil
}

// StateCounts counts every scripted state: the tests list one project.
func (f stubFleet) StateCounts(_ context.Context, _ string, _ func(string) bool, out map[string]int) error {
	for _, st := range f {
		if st != "" && st != StateCreated {
			out[st]++
		}
	}
	return nil
}

func (stubFleet) DashboardSession(context.Context, string, string, time.Duration) (fleet.DashboardLogin, error) {
	return fleet.DashboardLogin{}, errors.New("not in this test")
}

var _ Fleet = stubFleet(nil)

// listFixture is an index filled by hand (no etcd) and an API over it.
type listFixture struct {
	api   *API
	fleet stubFleet
	rev   int64
}

func newListFixture(t *testing.T) *listFixture {
	t.Helper()
	fx := &listFixture{fleet: stubFleet{}}
	fx.api = &API{fleet: fx.fleet, index: registry.NewMirror(nil, nil)}
	return fx
}

// put stores a spec in the index at the next revision.
func (fx *listFixture) put(t *testing.T, s registry.Spec) {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	fx.rev++
	fx.api.index.Apply([]*clientv3.Event{{Type: clientv3.EventTypePut,
		Kv: &mvccpb.KeyValue{Key: []byte(registry.Key(s.ID)), Value: b, ModRevision: fx.rev}}})
}

func (fx *listFixture) del(id string) {
	fx.rev++
	fx.api.index.Apply([]*clientv3.Event{{Type: clientv3.EventTypeDelete,
		Kv: &mvccpb.KeyValue{Key: []byte(registry.Key(id)), ModRevision: fx.rev}}})
}

// list is one request of the project list with query v.
func (fx *listFixture) list(t *testing.T, project string, v url.Values) (ListPage, error) {
	t.Helper()
	q, err := parseListQuery(v, "project\x00"+project)
	if err != nil {
		return ListPage{}, err
	}
	return fx.api.page(t.Context(), project, nil, q)
}

func (fx *listFixture) mustList(t *testing.T, project string, v url.Values) ListPage {
	t.Helper()
	p, err := fx.list(t, project, v)
	if err != nil {
		t.Fatalf("list %v: %v", v, err)
	}
	return p
}

func ids(p ListPage) []string {
	var out []string
	for _, c := range p.Items {
		out = append(out, c.ID)
	}
	return out
}

// walk follows nextPageToken from the first page to the last; between
// pages it calls between (to change the list under the walk).
func (fx *listFixture) walk(t *testing.T, project string, v url.Values, between func(page int)) []string {
	t.Helper()
	var seen []string
	for page := 0; ; page++ {
		p := fx.mustList(t, project, v)
		seen = append(seen, ids(p)...)
		if p.NextPageToken == "" {
			return seen
		}
		if page > 1000 {
			t.Fatal("walk does not end")
		}
		v = cloneValues(v)
		v.Set("pageToken", p.NextPageToken)
		if between != nil {
			between(page)
		}
	}
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func spec(id, name, project string) registry.Spec {
	return registry.Spec{ID: id, Name: name, Project: project, MaxConnections: 10}
}

// TestListPagesReachEveryEntryOnce: whatever the page size, walking the
// pages returns every entry exactly once, in (name, id) order, and
// walking back with prevPageToken gives the same pages.
func TestListPagesReachEveryEntryOnce(t *testing.T) {
	fx := newListFixture(t)
	var want []string
	for i := range 53 {
		// Names come in pairs: the id breaks the tie.
		name := fmt.Sprintf("edge-%02d", i/2)
		id := fmt.Sprintf("id-%03d", 100-i)
		fx.put(t, spec(id, name, "p"))
		fx.put(t, spec(fmt.Sprintf("other-%d", i), name, "q")) // another project's
	}
	entries := fx.api.index.AppendSnapshot(nil, "p", nil)
	for _, it := range entries {
		want = append(want, it.Spec.ID)
	}
	if !slices.IsSortedFunc(entries, registry.CompareEntries) || len(want) != 53 {
		t.Fatalf("index order broken: %v", want)
	}
	for _, limit := range []int{1, 7, 10, 53, 100} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			v := url.Values{"limit": {fmt.Sprint(limit)}}
			got := fx.walk(t, "p", v, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("walk got %d entries\n%v\nwant\n%v", len(got), got, want)
			}
			// Forward to the last page, then back to the first.
			var pages [][]string
			var last ListPage
			for p := fx.mustList(t, "p", v); ; {
				pages = append(pages, ids(p))
				last = p
				if p.NextPageToken == "" {
					break
				}
				p = fx.mustList(t, "p", url.Values{"limit": v["limit"], "pageToken": {p.NextPageToken}})
			}
			for i := len(pages) - 2; i >= 0; i-- {
				if last.PrevPageToken == "" {
					t.Fatalf("page %d has no prevPageToken", i+1)
				}
				last = fx.mustList(t, "p", url.Values{"limit": v["limit"], "pageToken": {last.PrevPageToken}})
				if !slices.Equal(ids(last), pages[i]) {
					t.Fatalf("back to page %d: %v, want %v", i, ids(last), pages[i])
				}
			}
			if last.PrevPageToken != "" {
				t.Fatal("first page has a prevPageToken")
			}
		})
	}
}

// TestListPagesUnderConcurrentInserts: entries created while a caller
// pages never make an entry appear twice, and every entry that existed
// throughout is reached.
func TestListPagesUnderConcurrentInserts(t *testing.T) {
	fx := newListFixture(t)
	var before []string
	for i := range 40 {
		id := fmt.Sprintf("a%03d", i)
		fx.put(t, spec(id, fmt.Sprintf("m-%03d", i*10), "p"))
		before = append(before, id)
	}
	n := 0
	got := fx.walk(t, "p", url.Values{"limit": {"6"}}, func(int) {
		// Names before, inside and after the pages already served.
		for _, name := range []string{"a-first", fmt.Sprintf("m-%03d", n*37%400+5), "z-last"} {
			fx.put(t, spec(fmt.Sprintf("new%03d", n), name, "p"))
			n++
		}
		fx.del(fmt.Sprintf("new%03d", n-3)) // and one goes away again
	})
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
		if seen[id] > 1 {
			t.Fatalf("%s listed twice in %v", id, got)
		}
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Fatalf("%s, present throughout, listed %d times", id, seen[id])
		}
	}
	if n == 0 {
		t.Fatal("nothing was inserted during the walk")
	}
}

func TestListFilters(t *testing.T) {
	fx := newListFixture(t)
	for i, name := range []string{"Prod-EU", "prod-us", "staging", "Édge-Ünit", "lab"} {
		id := fmt.Sprintf("c%d", i)
		fx.put(t, spec(id, name, "p"))
	}
	fx.fleet["c1"] = fleet.StateRunning
	fx.fleet["c2"] = fleet.StateAbnormal
	fx.fleet["c4"] = fleet.StateRunning
	tests := []struct {
		name  string
		query url.Values
		want  []string
	}{
		// Byte order of the names: upper case first, then lower, then the rest.
		{"all", url.Values{}, []string{"c0", "c4", "c1", "c2", "c3"}},
		{"q any case", url.Values{"q": {"PROD"}}, []string{"c0", "c1"}},
		{"q unicode", url.Values{"q": {"édge-ü"}}, []string{"c3"}},
		{"q exact id", url.Values{"q": {"c2"}}, []string{"c2"}},
		{"q spaces trimmed", url.Values{"q": {"  lab "}}, []string{"c4"}},
		{"state", url.Values{"state": {fleet.StateRunning}}, []string{"c4", "c1"}},
		{"state and q", url.Values{"state": {fleet.StateRunning}, "q": {"prod"}}, []string{"c1"}},
		{"state created", url.Values{"state": {StateCreated}}, []string{"c0", "c3"}},
		{"nothing", url.Values{"q": {"nope"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := fx.mustList(t, "p", tc.query)
			if !slices.Equal(ids(p), tc.want) || p.Total != len(tc.want) {
				t.Fatalf("got %v (total %d), want %v", ids(p), p.Total, tc.want)
			}
			want := map[string]int{StateCreated: 2, fleet.StateRegistering: 0, fleet.StateRunning: 2, fleet.StateAbnormal: 1}
			if fmt.Sprint(p.StateCounts) != fmt.Sprint(want) {
				t.Fatalf("stateCounts %v, want %v (before filters)", p.StateCounts, want)
			}
			for _, c := range p.Items {
				if want := cmpOr(fx.fleet[c.ID], StateCreated); c.State != want {
					t.Fatalf("%s shows state %q, want %q", c.ID, c.State, want)
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestListQueryRefusals: every bad parameter is a 400 naming its field.
func TestListQueryRefusals(t *testing.T) {
	fx := newListFixture(t)
	for i := range 5 {
		fx.put(t, spec(fmt.Sprint("c", i), fmt.Sprint("n", i), "p"))
	}
	first := fx.mustList(t, "p", url.Values{"limit": {"2"}, "q": {"n"}})
	if first.NextPageToken == "" {
		t.Fatal("no next page")
	}
	tok := first.NextPageToken
	tests := []struct {
		name  string
		scope string
		query url.Values
		field string
	}{
		{"limit zero", "p", url.Values{"limit": {"0"}}, "limit"},
		{"limit too big", "p", url.Values{"limit": {"1001"}}, "limit"},
		{"limit not a number", "p", url.Values{"limit": {"ten"}}, "limit"},
		{"bad state", "p", url.Values{"state": {"sleeping"}}, "state"},
		{"q too long", "p", url.Values{"q": {strings.Repeat("x", 201)}}, "q"},
		{"garbage token", "p", url.Values{"pageToken": {"not-a-token"}}, "pageToken"},
		{"token of other q", "p", url.Values{"pageToken": {tok}, "q": {"n1"}}, "pageToken"},
		{"token without its q", "p", url.Values{"pageToken": {tok}}, "pageToken"},
		{"token of other state", "p", url.Values{"pageToken": {tok}, "q": {"n"}, "state": {fleet.StateRunning}}, "pageToken"},
		{"token of another project", "other", url.Values{"pageToken": {tok}, "q": {"n"}}, "pageToken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fx.list(t, tc.scope, tc.query)
			var apiErr *httpapi.Error
			if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Field != tc.field {
				t.Fatalf("got %v, want 400 naming %s", err, tc.field)
			}
		})
	}
	// The same token with its own filters and another page size is fine.
	p := fx.mustList(t, "p", url.Values{"limit": {"10"}, "q": {"n"}, "pageToken": {tok}})
	if !slices.Equal(ids(p), []string{"c2", "c3", "c4"}) {
		t.Fatalf("token with a new limit: %v", ids(p))
	}
	// No limit: the first DefaultListLimit entries.
	for i := 5; i < DefaultListLimit+20; i++ {
		fx.put(t, spec(fmt.Sprint("d", i), fmt.Sprintf("z%03d", i), "p"))
	}
	if p := fx.mustList(t, "p", url.Values{}); len(p.Items) != DefaultListLimit || p.NextPageToken == "" || p.Total != DefaultListLimit+20 {
		t.Fatalf("default page: %d items, total %d, next %q", len(p.Items), p.Total, p.NextPageToken)
	}
}

// TestListPastTheEnd: a next-page token whose entries went away gives an
// empty page that leads back to the last page still there.
func TestListPastTheEnd(t *testing.T) {
	fx := newListFixture(t)
	for i := range 6 {
		fx.put(t, spec(fmt.Sprint("c", i), fmt.Sprint("n", i), "p"))
	}
	p := fx.mustList(t, "p", url.Values{"limit": {"3"}})
	fx.del("c3")
	fx.del("c4")
	fx.del("c5")
	p = fx.mustList(t, "p", url.Values{"limit": {"3"}, "pageToken": {p.NextPageToken}})
	if len(p.Items) != 0 || p.NextPageToken != "" || p.PrevPageToken == "" {
		t.Fatalf("past the end: %v next %q prev %q", ids(p), p.NextPageToken, p.PrevPageToken)
	}
	p = fx.mustList(t, "p", url.Values{"limit": {"3"}, "pageToken": {p.PrevPageToken}})
	if !slices.Equal(ids(p), []string{"c0", "c1", "c2"}) {
		t.Fatalf("back from past the end: %v", ids(p))
	}
}
