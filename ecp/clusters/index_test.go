package clusters

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/registry"
)

// TestMain fails the package when a test leaves goroutines behind: every
// index a test runs must stop with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func putSpec(t *testing.T, cli *clientv3.Client, s registry.Spec) int64 {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(t.Context(), registry.Key(s.ID), string(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// projectIDs lists the ids the index holds for project ("" for all), in
// order.
func projectIDs(x *Index, project string) []string {
	var out []string
	for _, it := range x.appendSnapshot(nil, project, nil) {
		out = append(out, it.spec.ID)
	}
	return out
}

// runIndex runs an index on cli until the test ends.
func runIndex(t *testing.T, cli *clientv3.Client) *Index {
	t.Helper()
	x := NewIndex(cli, nil)
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
	if err := x.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	return x
}

// waitIDs waits until the index lists want for project.
func waitIDs(t *testing.T, x *Index, project string, want ...string) {
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
			got = append(got, it.spec.ID)
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

	if _, err := cli.Delete(t.Context(), registry.Key("c")); err != nil {
		t.Fatal(err)
	}
	waitIDs(t, x, "q", "a")
	if x.Len() != 2 {
		t.Fatalf("index holds %d entries, want 2", x.Len())
	}
	// Keys beside the specs (another package's, or deeper) are not specs.
	if _, err := cli.Put(t.Context(), registry.Key("x/y"), "{}"); err != nil {
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
	x := NewIndex(cli, nil) // loaded, but its watch never runs
	loadRev, err := x.load(t.Context())
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
	if got := x.appendSnapshot(nil, "p", nil); len(got) != 1 || got[0].spec.Name != "new-name" || got[0].rev != second {
		t.Fatalf("a late event undid a newer write: %+v", got[0])
	}

	if _, err := cli.Delete(t.Context(), registry.Key("a")); err != nil {
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
	if _, err := x.load(t.Context()); err != nil {
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
