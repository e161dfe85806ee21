package registry_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
)

// newStore is one replica's writer of the records, guarded by a ledger
// enforcing l.
func newStore(t *testing.T, cli *clientv3.Client, l quota.Licence) *registry.Store {
	t.Helper()
	g, err := quota.NewLedger(cli, l, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return registry.NewStore(cli, g)
}

func spec(id string, maxConns int) registry.Spec {
	return registry.Spec{ID: id, Name: id, Project: "p", MaxConnections: maxConns, CreatedAt: time.Now()}
}

// TestNamesUniqueAcrossReplicas: creates, renames and moves to one name
// from two ledgers (two replicas, no lock in common) leave one holder.
func TestNamesUniqueAcrossReplicas(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	l := quota.Licence{TotalConnections: 100000, MaxPerCluster: 100}
	ledgers := []*registry.Store{newStore(t, cli, l), newStore(t, cli, l)}
	for round := range 10 {
		name := fmt.Sprint("n", round)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				s := spec(fmt.Sprintf("r%d-%d", round, i), 1)
				s.Name = name
				if i%2 == 1 {
					// Half arrive by rename of an entry made under
					// another name.
					s.Name = "tmp-" + s.ID
					if errs[i] = ledgers[i%2].Create(ctx, s); errs[i] != nil {
						return
					}
					_, errs[i] = ledgers[i%2].Update(ctx, s.ID, func(s *registry.Spec) error { s.Name = name; return nil })
					return
				}
				errs[i] = ledgers[i%2].Create(ctx, s)
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			var taken *registry.NameTaken
			switch {
			case err == nil:
				won++
			case !errors.As(err, &taken):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		specs, err := ledgers[0].List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		have := 0
		for _, s := range specs {
			if s.Project == "p" && s.Name == name {
				have++
			}
		}
		if won != 1 || have != 1 {
			t.Fatalf("round %d: %d changes to %q succeeded and %d entries have it, want 1 and 1", round, won, name, have)
		}
	}
}

// TestNamesKeepLegacyDuplicates: entries that shared a name before the
// index existed keep working; ReindexNames gives the name to the oldest,
// and a new entry with that name is refused.
func TestNamesKeepLegacyDuplicates(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	g := newStore(t, cli, quota.Licence{TotalConnections: 1000, MaxPerCluster: 100})
	for i, id := range []string{"young", "old"} {
		s := spec(id, 10)
		s.Name, s.CreatedAt = "twin", time.Date(2026, 1, 2-i, 0, 0, 0, 0, time.UTC)
		b, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, registry.Key(id), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	// A key left by an entry that is gone.
	if _, err := cli.Put(ctx, registry.NameKey("p", "ghost"), "gone"); err != nil {
		t.Fatal(err)
	}
	added, removed, err := g.ReindexNames(ctx)
	if err != nil || added != 1 || removed != 1 {
		t.Fatalf("ReindexNames = %d added, %d removed, %v; want 1, 1", added, removed, err)
	}
	if added, removed, err := g.ReindexNames(ctx); err != nil || added+removed != 0 {
		t.Fatalf("second ReindexNames = %d added, %d removed, %v; want nothing to do", added, removed, err)
	}
	var taken *registry.NameTaken
	s := spec("new", 10)
	s.Name = "twin"
	if err := g.Create(ctx, s); !errors.As(err, &taken) || taken.Holder != "old" {
		t.Fatalf("create of a third twin: %v, want NameTaken held by old", err)
	}
	// Both legacy twins keep working, name unchanged.
	for _, id := range []string{"young", "old"} {
		if _, err := g.Update(ctx, id, func(s *registry.Spec) error { s.ServiceURL = "http://x:18083"; return nil }); err != nil {
			t.Fatalf("update of legacy %s: %v", id, err)
		}
		if _, err := g.SetMaxConnections(ctx, id, 20); err != nil {
			t.Fatalf("max connections of legacy %s: %v", id, err)
		}
	}
	// Deleting the one that holds no key does not free the name.
	if _, err := g.Delete(ctx, "young"); err != nil {
		t.Fatal(err)
	}
	if err := g.Create(ctx, s); !errors.As(err, &taken) {
		t.Fatalf("create after deleting the twin without the key: %v, want NameTaken", err)
	}
	if _, err := g.Delete(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if err := g.Create(ctx, s); err != nil {
		t.Fatalf("create once no entry has the name: %v", err)
	}
}

// laggingKV answers the first fail transactions (the STM reads through
// transactions too) as an etcd member that has not applied the revision
// asked for yet.
type laggingKV struct {
	clientv3.KV
	mu   sync.Mutex
	fail int
}

func (k *laggingKV) Txn(ctx context.Context) clientv3.Txn {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail > 0 {
		k.fail--
		return futureRevTxn{}
	}
	return k.KV.Txn(ctx)
}

type futureRevTxn struct{ clientv3.Txn }

func (t futureRevTxn) If(...clientv3.Cmp) clientv3.Txn  { return t }
func (t futureRevTxn) Then(...clientv3.Op) clientv3.Txn { return t }
func (t futureRevTxn) Else(...clientv3.Op) clientv3.Txn { return t }
func (futureRevTxn) Commit() (*clientv3.TxnResponse, error) {
	return nil, rpctypes.ErrFutureRev
}

// TestWriteRidesOutLaggingMember: against several etcd members a read may
// land on one that lags and answers "future revision"; the write is run
// again instead of failing the user's request with a 500 (seen in
// e2e/faults against a 3-member cluster).
func TestWriteRidesOutLaggingMember(t *testing.T) {
	cli := etcdtest.Client(t)
	g, err := quota.NewLedger(cli, quota.Licence{TotalConnections: 100, MaxPerCluster: 10}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	lagging := clientv3.NewCtxClient(t.Context())
	lagging.KV = &laggingKV{KV: cli.KV, fail: 2}
	store := registry.NewStore(lagging, g)
	if err := store.Create(t.Context(), spec("c1", 10)); err != nil {
		t.Fatalf("create against a lagging member: %v", err)
	}
	got, err := registry.NewStore(cli, g).Get(t.Context(), "c1")
	if err != nil || got.MaxConnections != 10 {
		t.Fatalf("record after the create: %+v, %v", got, err)
	}
}
