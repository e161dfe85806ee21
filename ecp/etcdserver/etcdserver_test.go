package etcdserver_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	put := func(ctx context.Context, key, value string) {
		srv, err := etcdserver.Start(ctx, etcdserver.Options{Dir: dir}, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli := etcdtest.ClientOf(t, srv)
		if value != "" {
			if _, err := cli.Put(ctx, key, value); err != nil {
				t.Fatal(err)
			}
			return
		}
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
			t.Fatalf("after restart got %v, want v1", resp.Kvs)
		}
	}
	put(t.Context(), "/k", "v1")
	put(t.Context(), "/k", "")
}
