package kv_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/kv"
)

// TestReconcileAppliesOnStartChangeAndRetry: the leader's loop applies at
// once (and runs Resynced), again when a watched key changes, and again
// after a failed apply, without waiting for the resync.
func TestReconcileAppliesOnStartChangeAndRetry(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	applied := make(chan int, 10)
	resynced := make(chan struct{}, 10)
	calls := 0
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- kv.Reconcile{
			Client:  cli,
			Watches: []kv.Watched{{Key: "/test/settings/", Prefix: true, What: "settings"}, {Key: "/test/policy", What: "policy"}},
			Resync:  time.Hour, Retry: 10 * time.Millisecond,
			Apply: func(context.Context) error {
				calls++
				applied <- calls
				if calls == 3 {
					return errors.New("backend down")
				}
				return nil
			},
			Resynced: func(context.Context) { resynced <- struct{}{} },
			Logger:   slog.New(slog.DiscardHandler), Name: "test",
		}.Run(ctx)
	}()
	next := func(what string) {
		t.Helper()
		select {
		case <-applied:
		case <-time.After(10 * time.Second):
			t.Fatalf("no apply %s", what)
		}
	}
	next("at start")
	select {
	case <-resynced:
	case <-time.After(10 * time.Second):
		t.Fatal("Resynced did not run at start")
	}
	if _, err := cli.Put(t.Context(), "/test/settings/p1", "x"); err != nil {
		t.Fatal(err)
	}
	next("after a change under the prefix")
	if _, err := cli.Put(t.Context(), "/test/policy", "y"); err != nil {
		t.Fatal(err)
	}
	next("after a change of the key (it fails)")
	next("retrying the failed apply")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after ctx ended = %v, want nil", err)
	}
	if len(resynced) != 0 {
		t.Fatal("Resynced ran again without a resync")
	}
}
