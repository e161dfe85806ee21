package console_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/ecp/quota"
)

// BenchmarkClusterListPage10k measures the server time of the cluster list
// page (the first page, as a visitor sees it) of a project holding 10,000
// clusters, and the bytes a first visit transfers (the page and every
// asset it loads, raw and gzip-compressed).
//
//	go test -run '^$' -bench ClusterListPage10k -benchtime 200x ./ecp/console/
func BenchmarkClusterListPage10k(b *testing.B) {
	const n = 10000
	// Each entry starts with max connections 10: the licence must hold them.
	e := start(b, func(o *app.Options) { o.Licence = quota.Licence{TotalConnections: 10 * n, MaxPerCluster: 5000} })
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() { // 16 writers: creating 10,000 entries one by one takes a minute
			for i := w; i < n; i += 16 {
				body := strings.NewReader(`{"name": "edge-` + strconv.Itoa(i) + `"}`)
				req, _ := http.NewRequest(http.MethodPost, e.url+"/api/v1/projects/"+e.project+"/clusters", body)
				req.Header.Set("Authorization", "Bearer "+e.admin)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Errorf("create cluster: %s", resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
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

	// The API's own list, which the page calls in-process, for comparison.
	var apiLat []time.Duration
	for range 20 {
		t0 := time.Now()
		e.api(200, "GET", "/api/v1"+path, e.admin, nil)
		apiLat = append(apiLat, time.Since(t0))
	}
	slices.Sort(apiLat)

	var lat []time.Duration
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
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(apiLat[len(apiLat)/2])/float64(time.Millisecond), "api-list-p50-ms")
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
