package quota_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
)

// ledger is one replica's quota side: the guards and the licence
// (quota.Ledger), and the registry's writer whose transactions call them.
type ledger struct {
	*quota.Ledger
	*registry.Store
}

func newLedger(t *testing.T, cli *clientv3.Client, l quota.Licence) ledger {
	t.Helper()
	g, err := quota.NewLedger(cli, l, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return ledger{g, registry.NewStore(cli, g)}
}

func spec(id string, maxConns int) registry.Spec {
	return registry.Spec{ID: id, Name: id, Project: "p", MaxConnections: maxConns, CreatedAt: time.Now()}
}

func TestLicenceValidate(t *testing.T) {
	tests := []struct {
		name string
		l    quota.Licence
		want string
	}{
		{"ok", quota.Licence{TotalConnections: 10, MaxPerCluster: 10}, ""},
		{"zero total", quota.Licence{TotalConnections: 0, MaxPerCluster: 1}, "licence.totalConnections must be at least 1"},
		{"zero ceiling", quota.Licence{TotalConnections: 10, MaxPerCluster: 0}, "licence.maxPerCluster must be at least 1"},
		{"ceiling over total", quota.Licence{TotalConnections: 10, MaxPerCluster: 11}, "licence.maxPerCluster (11) must not exceed licence.totalConnections (10)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want && (tc.want == "" || len(got) < len(tc.want) || got[:len(tc.want)] != tc.want) {
				t.Fatalf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	g := newLedger(t, cli, quota.Licence{TotalConnections: 100, MaxPerCluster: 60})
	for _, id := range []string{"a", "b"} {
		if err := g.Create(ctx, spec(id, 10)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name        string
		id          string
		n           int
		overCeiling bool
		refused     bool
		remaining   int
	}{
		{name: "within", id: "a", n: 60}, // allocated 70
		{name: "over ceiling", id: "b", n: 61, refused: true, overCeiling: true, remaining: 30},
		{name: "over remaining", id: "b", n: 41, refused: true, remaining: 30}, // needs 31
		{name: "exactly remaining", id: "b", n: 40},                            // allocated 100
		{name: "lowering always allowed", id: "a", n: 1},                       // allocated 41
		{name: "raise back", id: "a", n: 60},                                   // allocated 100
		{name: "full: one more refused", id: "b", n: 41, refused: true, remaining: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := g.SetMaxConnections(ctx, tc.id, tc.n)
			var r *quota.Refusal
			if tc.refused != errors.As(err, &r) {
				t.Fatalf("SetMaxConnections(%s, %d) = %v, refused want %v", tc.id, tc.n, err, tc.refused)
			}
			if !tc.refused {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if r.OverCeiling != tc.overCeiling || r.Ceiling != 60 {
				t.Fatalf("refusal %+v, want overCeiling %v ceiling 60", r, tc.overCeiling)
			}
			if !tc.overCeiling && r.Remaining != tc.remaining {
				t.Fatalf("remaining %d, want %d", r.Remaining, tc.remaining)
			}
		})
	}
	// A new entry needs its 10 too: the licence is full.
	var r *quota.Refusal
	if err := g.Create(ctx, spec("c", 10)); !errors.As(err, &r) || r.Remaining != 0 {
		t.Fatalf("Create on a full licence = %v, want a refusal with 0 remaining", err)
	}
	if _, err := g.SetMaxConnections(ctx, "missing", 5); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("SetMaxConnections(missing) = %v, want ErrNotFound", err)
	}
	// Deleting returns the allocation.
	if _, err := g.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	u, err := g.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Allocated != 40 || u.Remaining != 60 {
		t.Fatalf("after delete usage = %+v, want allocated 40, remaining 60", u)
	}
	// Shrinking the licence below the allocation takes nothing away and
	// refuses increases only.
	if err := g.SetLicence(quota.Licence{TotalConnections: 30, MaxPerCluster: 30}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.SetMaxConnections(ctx, "b", 41); !errors.As(err, &r) {
		t.Fatalf("raise over a shrunk licence = %v, want refusal", err)
	}
	if _, err := g.SetMaxConnections(ctx, "b", 20); err != nil {
		t.Fatalf("lowering under a shrunk licence = %v, want ok", err)
	}
}

// TestConcurrentChangesNeverOverAllocate runs 200 concurrent changes from
// two ledgers (two replicas) on one etcd: the counter always equals the sum
// of the specs and never exceeds the total.
func TestConcurrentChangesNeverOverAllocate(t *testing.T) {
	srv := etcdtest.Start(t)
	cli1, cli2 := etcdtest.ClientOf(t, srv), etcdtest.ClientOf(t, srv)
	lic := quota.Licence{TotalConnections: 1000, MaxPerCluster: 400}
	g1, g2 := newLedger(t, cli1, lic), newLedger(t, cli2, lic)
	ctx := t.Context()
	const clusters = 20
	for i := range clusters {
		if err := g1.Create(ctx, spec("c"+strconv.Itoa(i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg                 sync.WaitGroup
		refused, succeeded atomic.Int64
	)
	errs := make(chan error, 200)
	for i := range 200 {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		id := "c" + strconv.Itoa(i%clusters)
		n := 1 + rand.IntN(450) // some over the ceiling, many over the remaining
		wg.Go(func() {
			_, err := g.SetMaxConnections(ctx, id, n)
			var r *quota.Refusal
			switch {
			case err == nil:
				succeeded.Add(1)
			case errors.As(err, &r):
				refused.Add(1)
			default:
				errs <- fmt.Errorf("set %s to %d: %w", id, n, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	sum := 0
	for i := range clusters {
		s, err := g1.Get(ctx, "c"+strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if s.MaxConnections > lic.MaxPerCluster {
			t.Errorf("cluster %s has %d, over the ceiling", s.ID, s.MaxConnections)
		}
		sum += s.MaxConnections
	}
	u, err := g2.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Allocated != sum {
		t.Fatalf("counter %d != sum of allocations %d", u.Allocated, sum)
	}
	if sum > lic.TotalConnections {
		t.Fatalf("over-allocated: %d > %d", sum, lic.TotalConnections)
	}
	// Both outcomes must occur, or the test did not exercise the limit.
	if refused.Load() == 0 || succeeded.Load() == 0 {
		t.Fatalf("refused %d, succeeded %d: want both", refused.Load(), succeeded.Load())
	}
	t.Logf("sum of allocations %d of %d; %d changes applied, %d refused", sum, lic.TotalConnections, succeeded.Load(), refused.Load())
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := quota.NewLedger(etcdtest.Client(t), quota.Licence{TotalConnections: 1, MaxPerCluster: 1}, reg); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestDropProjectIndex: the retired project index (nothing reads it; the
// lists answer from registry.Mirror) is dropped at start, and the entries
// it pointed at stay.
func TestDropProjectIndex(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	g := newLedger(t, cli, quota.Licence{TotalConnections: 1000, MaxPerCluster: 100})
	if err := g.Create(ctx, spec("c0", 10)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/ecp/project-clusters/p/c0", "/ecp/project-clusters/p/ghost"} {
		if _, err := cli.Put(ctx, k, ""); err != nil {
			t.Fatal(err)
		}
	}
	dropped, err := g.DropProjectIndex(ctx)
	if err != nil || dropped != 2 {
		t.Fatalf("DropProjectIndex = %d, %v; want 2 keys dropped", dropped, err)
	}
	left, err := cli.Get(ctx, "/ecp/project-clusters/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if left.Count != 0 {
		t.Fatalf("%d project index keys left", left.Count)
	}
	if _, err := g.Get(ctx, "c0"); err != nil {
		t.Fatalf("entry c0 after the drop: %v", err)
	}
}
