package kv_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/kv"
)

// TestMirrorLoadsThenFollowsInOrder: the load hands over the range at one
// revision, then every later change in the range arrives once and in
// revision order, and keys outside the range never do.
func TestMirrorLoadsThenFollowsInOrder(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	for _, k := range []string{"/m/a", "/m/b", "/n/outside"} {
		if _, err := cli.Put(ctx, k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	loaded := make(chan []string, 1)
	events := make(chan string, 16)
	m := &kv.Mirror{Client: cli, From: "/m/", Name: "test",
		Reset: func(kvs []*mvccpb.KeyValue, _ int64) {
			var keys []string
			for _, p := range kvs {
				keys = append(keys, string(p.Key))
			}
			loaded <- keys
		},
		Apply: func(evs []*clientv3.Event) {
			for _, ev := range evs {
				events <- ev.Type.String() + " " + string(ev.Kv.Key)
			}
		}}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { m.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	if got := <-loaded; !slices.Equal(got, []string{"/m/a", "/m/b"}) {
		t.Fatalf("loaded %v, want /m/a /m/b", got)
	}
	if _, err := cli.Put(ctx, "/n/outside", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/m/c", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/m/a"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 2 {
		select {
		case e := <-events:
			got = append(got, e)
		case <-time.After(10 * time.Second):
			t.Fatalf("events so far %v, want two", got)
		}
	}
	if want := []string{"PUT /m/c", "DELETE /m/a"}; !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}
