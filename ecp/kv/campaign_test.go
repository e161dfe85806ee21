package kv_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/kv"
)

// TestCampaignReturnsWhenEtcdIsGone: a candidate waiting for leadership
// must stop when its context ends even though etcd went away meanwhile;
// etcd's own Campaign would then hang in its resignation until the client
// is closed, and so would every shutdown waiting for it.
func TestCampaignReturnsWhenEtcdIsGone(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	leaderSess, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	if err := concurrency.NewElection(leaderSess, "/test/election").Campaign(t.Context(), "leader"); err != nil {
		t.Fatal(err)
	}
	waiterSess, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	returned := make(chan error, 1)
	go func() {
		returned <- kv.Campaign(ctx, concurrency.NewElection(waiterSess, "/test/election"), "waiter")
	}()
	srv.Close()
	cancel()
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Campaign = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Campaign did not return after its context ended with etcd gone")
	}
}
