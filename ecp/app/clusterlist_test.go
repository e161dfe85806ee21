package app

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

// clusterPage is a reply of the cluster lists.
type clusterPage struct {
	Items         []clusterJSON  `json:"items"`
	NextPageToken string         `json:"nextPageToken"`
	PrevPageToken string         `json:"prevPageToken"`
	Total         int            `json:"total"`
	StateCounts   map[string]int `json:"stateCounts"`
}

func (h *harness) clusterPage(t *testing.T, path, token string) clusterPage {
	t.Helper()
	var p clusterPage
	h.must(200, "GET", path, token, nil).decode(t, &p)
	return p
}

// TestClusterListReadsItsOwnWrites: right after a create, edit, transfer
// or delete through a replica, that replica's list shows it.
func TestClusterListReadsItsOwnWrites(t *testing.T) {
	h := start(t, testOptions(t))
	admin, project := setupProject(t, h)
	var orgs struct{ Items []struct{ ID string } }
	h.must(200, "GET", "/api/v1/orgs", admin, nil).decode(t, &orgs)
	other := h.id(h.must(201, "POST", "/api/v1/orgs/"+orgs.Items[0].ID+"/projects", admin, map[string]string{"name": "other"}))
	list := "/api/v1/projects/" + project + "/clusters"
	find := func(name string) []clusterJSON {
		return h.clusterPage(t, list+"?q="+url.QueryEscape(name), admin).Items
	}
	for i := range 10 {
		name := fmt.Sprint("rw-", i)
		id := h.id(h.must(201, "POST", list, admin, map[string]string{"name": name}))
		if got := find(name); len(got) != 1 || got[0].ID != id {
			t.Fatalf("round %d: list after create shows %v", i, got)
		}
		h.must(200, "PATCH", "/api/v1/clusters/"+id, admin, map[string]string{"name": name + "-renamed"})
		if got := find(name + "-renamed"); len(got) != 1 || got[0].ID != id {
			t.Fatalf("round %d: list after rename shows %v", i, got)
		}
		h.must(200, "PUT", "/api/v1/clusters/"+id+"/max-connections", admin, map[string]int{"maxConnections": 20 + i})
		if got := find(name + "-renamed"); len(got) != 1 || got[0].MaxConnections != 20+i {
			t.Fatalf("round %d: list after max-connections shows %v", i, got)
		}
		h.must(200, "POST", "/api/v1/clusters/"+id+"/transfer", admin, map[string]string{"project": other})
		if got := find(name + "-renamed"); len(got) != 0 {
			t.Fatalf("round %d: old project still lists %v after transfer", i, got)
		}
		moved := h.clusterPage(t, "/api/v1/projects/"+other+"/clusters?q="+id, admin).Items
		if len(moved) != 1 || moved[0].ID != id {
			t.Fatalf("round %d: new project lists %v after transfer", i, moved)
		}
		h.must(204, "DELETE", "/api/v1/clusters/"+id, admin, nil)
		if got := h.clusterPage(t, "/api/v1/clusters?q="+id, admin); got.Total != 0 {
			t.Fatalf("round %d: fleet list shows %v after delete", i, got.Items)
		}
	}
}

// TestClusterListPagingOverHTTP: walking the pages of both lists while
// clusters are being created returns every entry that existed throughout
// exactly once and none twice; refusals name their field; the fleet-wide
// list pages only what the caller may see.
func TestClusterListPagingOverHTTP(t *testing.T) {
	h := start(t, testOptions(t))
	w := newTenants(t, h)
	admin := w.token[sysAdm]
	var before []string
	for range 25 {
		before = append(before, w.cluster(false))
	}
	foreign := w.cluster(true)
	list := "/api/v1/projects/" + w.a1 + "/clusters"

	run := 0
	for _, tc := range []struct {
		name, path, token string
		want              []string
		hidden            string
	}{
		{"project", list, admin, before, foreign},
		{"fleet for a viewer of A1", "/api/v1/clusters", w.token[viewer], before, foreign},
	} {
		run++
		t.Run(tc.name, func(t *testing.T) {
			// A writer creates clusters (with names before, among and
			// after those already listed) between every two pages; the
			// run number keeps the names of the two runs apart, as names
			// are unique within a project.
			stop, created := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					// Not must: Fatal belongs to the test's goroutine.
					if r := h.do("POST", list, admin, map[string]string{"name": fmt.Sprintf("%c-new-%d-%d", 'a'+i%26, run, i)}); r.status != 201 {
						t.Errorf("create during the walk: %d %s", r.status, r.body)
						close(created)
						return
					}
					select {
					case created <- struct{}{}:
					case <-stop:
						return
					}
				}
			})
			seen := map[string]int{}
			token := ""
			for pages := 0; ; pages++ {
				v := url.Values{"limit": {"4"}}
				if token != "" {
					v.Set("pageToken", token)
				}
				p := h.clusterPage(t, tc.path+"?"+v.Encode(), tc.token)
				if len(p.Items) > 4 {
					t.Fatalf("page of %d items with limit 4", len(p.Items))
				}
				for _, c := range p.Items {
					if seen[c.ID]++; seen[c.ID] > 1 {
						t.Fatalf("%s listed twice", c.ID)
					}
				}
				if token = p.NextPageToken; token == "" || pages > 500 {
					break
				}
				<-created
			}
			close(stop)
			wg.Wait()
			for _, id := range tc.want {
				if seen[id] != 1 {
					t.Fatalf("%s, present throughout, listed %d times", id, seen[id])
				}
			}
			if seen[tc.hidden] != 0 {
				t.Fatalf("%s of another tenant listed", tc.hidden)
			}
		})
	}

	first := h.clusterPage(t, list+"?limit=2&state=created", admin)
	if first.NextPageToken == "" || first.Total < 25 || first.StateCounts["created"] != first.Total {
		t.Fatalf("first page: %+v", first)
	}
	for _, tc := range []struct{ name, query, field string }{
		{"limit too big", "limit=1001", "limit"},
		{"limit zero", "limit=0", "limit"},
		{"token with another state", "state=running&pageToken=" + url.QueryEscape(first.NextPageToken), "pageToken"},
		{"token without its state", "pageToken=" + url.QueryEscape(first.NextPageToken), "pageToken"},
		{"made-up token", "pageToken=abc", "pageToken"},
		{"bad state", "state=sleeping", "state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e apiError
			h.must(400, "GET", list+"?"+tc.query, admin, nil).decode(t, &e)
			if e.Error.Field != tc.field {
				t.Fatalf("400 names %q, want %q", e.Error.Field, tc.field)
			}
		})
	}
	// A project token is not one of the fleet list.
	h.must(400, "GET", "/api/v1/clusters?state=created&pageToken="+url.QueryEscape(first.NextPageToken), admin, nil)

	// Without a limit: the first 100, in (name, id) order.
	p := h.clusterPage(t, list, admin)
	if len(p.Items) != min(p.Total, 100) || !slices.IsSortedFunc(p.Items, func(a, b clusterJSON) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	}) {
		t.Fatalf("default page: %d of %d items, or out of order", len(p.Items), p.Total)
	}
}
