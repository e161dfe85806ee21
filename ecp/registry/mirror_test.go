package registry

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/quota"
)

// TestMain fails the package when a test leaves goroutines behind: every
// mirror a test runs must stop with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func spec(id, name, project string) Spec {
	return Spec{ID: id, Name: name, Project: project, MaxConnections: 10}
}

func putSpec(t *testing.T, cli *clientv3.Client, s Spec) int64 {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(t.Context(), Key(s.ID), string(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// projectIDs lists the ids the index holds for project ("" for all), in
// order.
func projectIDs(x *Mirror, project string) []string {
	var out []string
	for _, it := range x.AppendSnapshot(nil, project, nil) {
		out = append(out, it.Spec.ID)
	}
	return out
}

// runIndex runs an index on cli until the test ends.
func runIndex(t *testing.T, cli *clientv3.Client) *Mirror {
	t.Helper()
	x := NewMirror(cli, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := x.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	return x
}

// waitIDs waits until the index lists want for project.
func waitIDs(t *testing.T, x *Mirror, project string, want ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var got []string
	err := x.waitFor(ctx, func() bool {
		items := x.byProject[project]
		if project == "" {
			items = x.all
		}
		got = got[:0]
		for _, it := range items {
			got = append(got, it.Spec.ID)
		}
		return slices.Equal(got, want)
	})
	if err != nil {
		t.Fatalf("index lists %v for project %q, want %v", got, project, want)
	}
}

// TestIndexFollowsEtcd: specs written by anyone (another replica, the
// ledger) reach the index through its watch, in order, per project.
func TestIndexFollowsEtcd(t *testing.T) {
	cli := etcdtest.Client(t)
	putSpec(t, cli, spec("a", "beta", "p"))
	x := runIndex(t, cli)
	waitIDs(t, x, "p", "a") // from the load

	putSpec(t, cli, spec("b", "alpha", "p"))
	putSpec(t, cli, spec("c", "gamma", "q"))
	waitIDs(t, x, "p", "b", "a")
	waitIDs(t, x, "", "b", "a", "c")

	putSpec(t, cli, spec("a", "delta", "q")) // renamed and transferred
	waitIDs(t, x, "p", "b")
	waitIDs(t, x, "q", "a", "c")

	if _, err := cli.Delete(t.Context(), Key("c")); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, x, "q", "a")
	if x.Len() != 2 {
		t.Fatalf("index holds %d entries, want 2", x.Len())
	}
	// Keys beside the specs (another package's, or deeper) are not specs.
	if _, err := cli.Put(t.Context(), Key("x/y"), "{}"); err != nil {
		t.Fatal(err)
	}
	putSpec(t, cli, spec("d", "omega", "q"))
	waitIDs(t, x, "q", "a", "d")
	if x.Len() != 3 {
		t.Fatalf("index holds %d entries, want 3", x.Len())
	}
}

// TestIndexRefreshReadsYourWrites: a write read back with Refresh is
// listed at once, even with no watch running, and no older event undoes
// it afterwards.
func TestIndexRefreshReadsYourWrites(t *testing.T) {
	cli := etcdtest.Client(t)
	x := NewMirror(cli, nil) // loaded, but its watch never runs
	loadRev, err := x.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	first := putSpec(t, cli, spec("a", "old-name", "p"))
	if got := projectIDs(x, "p"); len(got) != 0 {
		t.Fatalf("index lists %v before the write reached it", got)
	}
	if err := x.Refresh(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if got := projectIDs(x, "p"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after Refresh the index lists %v, want [a]", got)
	}

	second := putSpec(t, cli, spec("a", "new-name", "p"))
	if err := x.Refresh(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	// The watch delivers the first write late: it must not undo the second.
	b, _ := spec("a", "old-name", "p").Encode()
	x.mu.Lock()
	x.putLocked("a", b, first)
	x.mu.Unlock()
	if got := x.AppendSnapshot(nil, "p", nil); len(got) != 1 || got[0].Spec.Name != "new-name" || got[0].rev != second {
		t.Fatalf("a late event undid a newer write: %+v", got[0])
	}

	if _, err := cli.Delete(t.Context(), Key("a")); err != nil {
		t.Fatal(err)
	}
	if err := x.Refresh(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	if got := projectIDs(x, "p"); len(got) != 0 {
		t.Fatalf("after deleting, the index lists %v", got)
	}
	// Nor does a late put resurrect a deleted entry.
	b, _ = spec("a", "new-name", "p").Encode()
	x.mu.Lock()
	x.putLocked("a", b, second)
	x.mu.Unlock()
	if got := projectIDs(x, "p"); len(got) != 0 {
		t.Fatalf("a late event resurrected a deleted entry: %v", got)
	}

	// A reload at a revision older than what Refresh applied keeps the
	// newer knowledge; one after it drops the tombstone.
	putSpec(t, cli, spec("b", "b", "p"))
	if err := x.Refresh(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	x.deleteLocked("b", loadRev) // as a load at loadRev that lacked b would
	x.mu.Unlock()
	if got := projectIDs(x, "p"); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("an older snapshot dropped a newer entry: %v", got)
	}
	if _, err := x.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	x.mu.RLock()
	tombstones := len(x.gone)
	x.mu.RUnlock()
	if got := projectIDs(x, "p"); !slices.Equal(got, []string{"b"}) || tombstones != 0 {
		t.Fatalf("after a reload: %v, %d tombstones", got, tombstones)
	}
}

// TestIndexListProject: the one answer to "which clusters are in project
// p?" is the mirror's, in (name, id) order, with no other project's.
func TestIndexListProject(t *testing.T) {
	cli := etcdtest.Client(t)
	putSpec(t, cli, spec("a", "beta", "p"))
	putSpec(t, cli, spec("b", "alpha", "p"))
	putSpec(t, cli, spec("c", "alpha", "q"))
	x := runIndex(t, cli)
	specs, err := x.ListProject(t.Context(), "p")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		got = append(got, s.ID+"="+s.Name)
	}
	if want := []string{"b=alpha", "a=beta"}; !slices.Equal(got, want) {
		t.Fatalf("project p lists %v, want %v", got, want)
	}
}

// TestDeleteTellsSubscribers: a deletion reaches the subscribers of the
// deleting replica's mirror before Delete returns (its watch need not
// run), and those of another replica's mirror through its watch, each
// once, with the record as it was; the lists of both drop it.
func TestDeleteTellsSubscribers(t *testing.T) {
	cli := etcdtest.Client(t)
	ledger, err := quota.NewLedger(cli, quota.Licence{TotalConnections: 100, MaxPerCluster: 50}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore(cli, ledger)
	for _, s := range []Spec{spec("a", "alpha", "p"), spec("b", "beta", "p")} {
		if err := store.Create(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	here := NewMirror(cli, nil) // loaded, but its watch never runs
	if _, err := here.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	there := runIndex(t, cli)
	waitIDs(t, there, "p", "a", "b")

	var mu sync.Mutex
	heard := map[string][]string{}
	listen := func(name string, x *Mirror) {
		x.Subscribe(func(c Change) {
			mu.Lock()
			defer mu.Unlock()
			if c.New == nil {
				heard[name] = append(heard[name], "deleted "+c.Old.ID+" of "+c.Old.Project)
				return
			}
			heard[name] = append(heard[name], "changed "+c.New.ID)
		})
	}
	listen("here", here)
	listen("there", there)
	thereHeard := make(chan struct{}, 1)
	there.Subscribe(func(Change) {
		select {
		case thereHeard <- struct{}{}:
		default:
		}
	})

	if _, err := New(store, here, nil).Delete(t.Context(), "a"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(heard["here"])
	mu.Unlock()
	if want := []string{"deleted a of p"}; !slices.Equal(got, want) {
		t.Fatalf("deleting replica's subscribers heard %v when Delete returned, want %v", got, want)
	}
	if ids := projectIDs(here, "p"); !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("deleting replica lists %v, want [b]", ids)
	}
	waitIDs(t, there, "p", "b")
	// The subscribers hear of a change just after the lists show it.
	select {
	case <-thereHeard:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	got = slices.Clone(heard["there"])
	mu.Unlock()
	if want := []string{"deleted a of p"}; !slices.Equal(got, want) {
		t.Fatalf("other replica's subscribers heard %v, want %v", got, want)
	}
}

// TestFollowCarriesAnotherRangeInOneOrder: a follower (fleet) gets the
// records and its own keys from the mirror's one load and one watch, every
// event in revision order, the records' included; the mirror lists only
// the records.
func TestFollowCarriesAnotherRangeInOneOrder(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	const own = "/ecp/fleet/"
	putSpec(t, cli, spec("c1", "one", "p1"))
	if _, err := cli.Put(t.Context(), own+"agents/c1", "a1"); err != nil {
		t.Fatal(err)
	}
	x := NewMirror(cli, nil)
	var loaded []string
	resets := make(chan struct{}, 2)
	events := make(chan *clientv3.Event, 16)
	x.Follow("test keys", own, clientv3.GetPrefixRangeEnd(own), func(kvs []*mvccpb.KeyValue, _ int64) {
		loaded = loaded[:0]
		for _, kv := range kvs {
			loaded = append(loaded, string(kv.Key))
		}
		select {
		case resets <- struct{}{}:
		default: // a reload after a broken watch
		}
	}, func(evs []*clientv3.Event) {
		for _, ev := range evs {
			events <- ev
		}
	})
	if _, err := x.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	<-resets
	if want := []string{Key("c1"), own + "agents/c1"}; !slices.Equal(loaded, want) {
		t.Fatalf("the follower loaded %v, want %v", loaded, want)
	}
	if got := projectIDs(x, ""); !slices.Equal(got, []string{"c1"}) {
		t.Fatalf("the mirror lists %v, want only the record c1", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// Written after Run's own load: these come through the watch.
	select {
	case <-resets:
	case <-time.After(20 * time.Second):
		t.Fatal("the mirror did not load")
	}
	putSpec(t, cli, spec("c2", "two", "p1"))
	if _, err := cli.Put(t.Context(), own+"agents/c2", "a2"); err != nil {
		t.Fatal(err)
	}
	putSpec(t, cli, spec("c2", "two renamed", "p1"))
	if _, err := cli.Delete(t.Context(), own+"agents/c1"); err != nil {
		t.Fatal(err)
	}
	want := []string{Key("c2"), own + "agents/c2", Key("c2"), own + "agents/c1"}
	var got []string
	last := int64(0)
	timeout := time.After(20 * time.Second)
	for len(got) < len(want) {
		select {
		case ev := <-events:
			if ev.Kv.ModRevision <= last {
				t.Fatalf("event %s at revision %d after one at %d", ev.Kv.Key, ev.Kv.ModRevision, last)
			}
			last = ev.Kv.ModRevision
			got = append(got, string(ev.Kv.Key))
		case <-timeout:
			t.Fatalf("the follower got %v, want %v", got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the follower got %v, want %v", got, want)
	}
	waitIDs(t, x, "p1", "c1", "c2")
}
