package app

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/clusters/clusterstest"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
)

// BenchmarkListClusters measures the cluster lists over HTTP with 10,000
// entries in one project (and 100 in each of 9 others): the first page,
// each filter, a page deep in the list, and the fleet-wide list. Each
// prints its p50 and p99.
//
//	go test -run '^$' -bench ListClusters ./ecp/app/
func BenchmarkListClusters(b *testing.B) {
	const n = 10000
	opts := benchOptions(b)
	h := startWith(b, opts, false)
	admin := h.login("admin", testAdminPassword)
	org := h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "o"}))
	var projects []string
	for i := range 10 {
		projects = append(projects, h.id(h.must(201, "POST", "/api/v1/orgs/"+org+"/projects", admin, map[string]string{"name": fmt.Sprint("p", i)})))
	}
	var specs []registry.Spec
	for i := range n + 900 {
		p := projects[0]
		if i >= n {
			p = projects[1+(i-n)/100]
		}
		specs = append(specs, registry.Spec{ID: fmt.Sprintf("c%05d", i), Name: fmt.Sprint("edge-", i), Project: p, MaxConnections: 10})
	}
	// Entries go straight into etcd: the benchmark is about reading them.
	if err := clusterstest.Seed(b.Context(), h.app.EtcdClient(), specs); err != nil {
		b.Fatal(err)
	}
	project := "/api/v1/projects/" + projects[0] + "/clusters"
	waitListed(b, h, admin, project, n)
	// Some entries in other states, for the state filter.
	for i := 0; i < n; i += 7 {
		h.fleet.SetStatus(projects[0], fmt.Sprintf("c%05d", i), clusters.Status{State: "running"})
	}
	var deep struct {
		NextPageToken string `json:"nextPageToken"`
	}
	h.must(200, "GET", project+"?limit=1000", admin, nil).decode(b, &deep)
	for _, bc := range []struct{ name, path string }{
		{"project-first-page", project},
		{"project-q", project + "?q=" + url.QueryEscape("EDGE-99")},
		{"project-state", project + "?state=running"},
		{"project-page-2-of-1000s", project + "?limit=1000&pageToken=" + url.QueryEscape(deep.NextPageToken)},
		{"fleet-first-page", "/api/v1/clusters"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				t0 := time.Now()
				r := h.do(http.MethodGet, bc.path, admin, nil)
				lat = append(lat, time.Since(t0))
				if r.status != 200 {
					b.Fatalf("%d %s", r.status, r.body)
				}
			}
			reportQuantiles(b, lat)
		})
	}
}

// waitListed waits until the list at path holds n entries: seeded entries
// reach the list through the index's watch.
func waitListed(b *testing.B, h *harness, token, path string, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var page struct{ Total int }
		h.must(200, "GET", path+"?limit=1", token, nil).decode(b, &page)
		if page.Total == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("list holds %d entries after a minute, want %d", page.Total, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reportQuantiles prints the p50 and p99 of lat in milliseconds.
func reportQuantiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

func benchOptions(b *testing.B) Options {
	b.Helper()
	opts := DefaultOptions()
	opts.ListenAddress = "127.0.0.1:0"
	opts.DataDir = b.TempDir()
	opts.BcryptCost = bcrypt.MinCost
	opts.AdminPassword = testAdminPassword
	opts.Licence = quota.Licence{TotalConnections: 1 << 30, MaxPerCluster: 1 << 20}
	return opts
}
