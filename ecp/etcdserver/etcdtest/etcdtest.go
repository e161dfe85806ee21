// Package etcdtest starts a real embedded etcd member for tests.
package etcdtest

import (
	"log/slog"
	"testing"

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
