package console_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/ecp/clusters/clusterstest"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
)

// BenchmarkClusterListPage10k measures the server time of the cluster list
// page (the first page, as a visitor sees it) of a project holding 10,000
// clusters, and the bytes a first visit transfers (the page and every
// asset it loads, raw and gzip-compressed).
//
//	go test -run '^$' -bench ClusterListPage10k -benchtime 200x ./ecp/console/
//
// etcd-reads/render is the etcd ranges served per render (the embedded
// etcd's etcd_mvcc_range_total); api-list-p50/p99-ms time the API's first
// page of the same list over HTTP, for comparison.
func BenchmarkClusterListPage10k(b *testing.B) {
	const n = 10000
	// Each entry starts with max connections 10: the licence must hold them.
	e := start(b, func(o *app.Options) { o.Licence = quota.Licence{TotalConnections: 10 * n, MaxPerCluster: 5000} })
	specs := make([]registry.Spec, n)
	for i := range specs {
		specs[i] = registry.Spec{ID: fmt.Sprintf("c%05d", i), Name: "edge-" + strconv.Itoa(i), Project: e.project, MaxConnections: 10}
	}
	// Straight into etcd as the ledger writes them: creating 10,000 entries
	// one API call at a time takes a minute, and this is about reading.
	if err := clusterstest.Seed(b.Context(), e.app.EtcdClient(), specs); err != nil {
		b.Fatal(err)
	}
	// They reach the list through the index's watch.
	for deadline := time.Now().Add(time.Minute); ; {
		var page struct{ Total int }
		if err := json.Unmarshal(e.api(200, "GET", "/api/v1/projects/"+e.project+"/clusters?limit=1", e.admin, nil), &page); err != nil {
			b.Fatal(err)
		}
		if page.Total == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("list holds %d entries after a minute, want %d", page.Total, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	br := e.browser()
	mustStatus(b, br.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/clusters"

	first := br.get(path)
	mustStatus(b, first, 200, "list")
	total, gz := len(first.body), gzipLen([]byte(first.body))
	for _, m := range regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(first.body, -1) {
		a := br.get(m[1])
		mustStatus(b, a, 200, m[1])
		total += len(a.body)
		gz += gzipLen([]byte(a.body))
	}

	// The API's own list, for comparison.
	var apiLat []time.Duration
	for range 200 {
		t0 := time.Now()
		e.api(200, "GET", "/api/v1"+path, e.admin, nil)
		apiLat = append(apiLat, time.Since(t0))
	}
	slices.Sort(apiLat)

	var lat []time.Duration
	reads0 := etcdtest.Ranges(b)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		p := br.get(path)
		lat = append(lat, time.Since(t0))
		if p.status != 200 {
			b.Fatalf("list: %d", p.status)
		}
	}
	b.StopTimer()
	reads := etcdtest.Ranges(b) - reads0
	slices.Sort(lat)
	q := func(lat []time.Duration, f float64) float64 {
		return float64(lat[int(f*float64(len(lat)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(lat, 0.5), "p50-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(apiLat, 0.5), "api-list-p50-ms")
	b.ReportMetric(q(apiLat, 0.99), "api-list-p99-ms")
	// Ranges the embedded etcd served while the pages rendered, per page
	// (background work of the replica, such as the leader's sweeps, counts
	// too: it can only make the figure look worse).
	b.ReportMetric(reads/float64(len(lat)), "etcd-reads/render")
	b.ReportMetric(float64(total)/1024, "first-visit-KiB")
	b.ReportMetric(float64(gz)/1024, "first-visit-gzip-KiB")
}

func gzipLen(b []byte) int {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Len()
}
