package kv_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
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

// TestReconcileCoalescesABurst: changes that arrive while an apply runs
// are covered by one more apply, not one apply each.
func TestReconcileCoalescesABurst(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	var applies atomic.Int64
	started, release := make(chan struct{}, 1), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- kv.Reconcile{
			Client:  cli,
			Watches: []kv.Watched{{Key: "/test/clusters/", Prefix: true, What: "clusters"}},
			Resync:  time.Hour, Retry: time.Hour,
			Apply: func(context.Context) error {
				if applies.Add(1) == 2 {
					started <- struct{}{}
					<-release // the first change's apply runs through the burst
				}
				time.Sleep(20 * time.Millisecond) // an apply takes time: it renders and reloads
				return nil
			},
			Logger: slog.New(slog.DiscardHandler), Name: "test",
		}.Run(ctx)
	}()
	const burst = 200
	for i := range burst {
		if _, err := cli.Put(t.Context(), fmt.Sprintf("/test/clusters/c%d", i), "x"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("no apply after the first change")
			}
		}
	}
	close(release)
	// Let the backlog reach the loop; one more apply covers all of it.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && applies.Load() < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// At start, the first change, then the rest of the burst in as many
	// applies as the watch takes to hand its backlog over: 3 here, where
	// one apply per watch response made 27 (201 with instant applies).
	t.Logf("%d applies for %d changes", applies.Load(), burst)
	if n := applies.Load(); n > burst/20 {
		t.Fatalf("%d applies for a burst of %d changes, want at most %d", n, burst, burst/20)
	}
}
