// Package etcdtest starts a real embedded etcd member for tests.
package etcdtest

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver"
)

// Start runs a fresh member in t.TempDir() and stops it when t ends.
func Start(t testing.TB) *etcdserver.Server {
	t.Helper()
	srv, err := etcdserver.Start(t.Context(), etcdserver.Options{Dir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// Client starts a member (or uses srv when given) and returns a client to it,
// closed when t ends.
func Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return ClientOf(t, Start(t))
}

// ClientOf returns a new client to srv, closed when t ends.
func ClientOf(t testing.TB, srv *etcdserver.Server) *clientv3.Client {
	t.Helper()
	cli, err := etcdserver.NewClient([]string{srv.Endpoint()}, srv.ClientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Ranges is the number of range reads the process's embedded members have
// served (etcd_mvcc_range_total), for tests that count a call's reads.
func Ranges(t testing.TB) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_mvcc_range_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("the embedded etcd exports no etcd_mvcc_range_total")
	return 0
}
