package console

import (
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// BenchmarkRenderClusterTable renders the cluster list's polled fragment
// (a full page of 50 rows) alone, without a server: its allocations per
// render do not depend on the machine's load, unlike the end-to-end
// BenchmarkClusterListPage10k.
//
//	go test -run '^$' -bench RenderClusterTable -benchmem ./ecp/console/
func BenchmarkRenderClusterTable(b *testing.B) {
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	c := &Console{opts: Options{Now: func() time.Time { return now }}, logger: slog.New(slog.DiscardHandler)}
	if err := c.parse(); err != nil {
		b.Fatal(err)
	}
	items := make([]clusters.Cluster, DefaultPageSize)
	for i := range items {
		t := now.Add(-time.Duration(i) * time.Minute)
		items[i] = clusters.Cluster{ID: "c" + strconv.Itoa(i), Name: "edge-" + strconv.Itoa(i), State: "running", Version: "5.8.9",
			Nodes: 3, NodesRunning: 3, Connections: 9, LiveConnections: 8, MaxConnections: 10, StartedAt: &t, ManagedSince: &t, LastReportAt: &t}
	}
	d := listData{base: base{Project: &tenancy.Project{ID: "p1", Name: "prod"}, RefreshMs: 5000}, Page: 1, Pages: 200, From: 1, To: 50, Total: 10000, NextToken: "tok", Updated: now}
	b.ReportAllocs()
	for b.Loop() {
		d.Clusters = c.clusterRows(items)
		c.render(discardWriter{}, http.StatusOK, "clusters", "cluster-table", d)
	}
}

// discardWriter is a ResponseWriter that keeps nothing.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}
