package quota_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// world is two organizations, o (projects p1, p2) and o2 (project q1).
type world struct {
	o, o2, p1, p2, q1 string
}

func newWorld(t *testing.T, cli *clientv3.Client) world {
	t.Helper()
	ctx := t.Context()
	st := tenancy.NewStore(cli)
	org := func(name string) string {
		o, err := st.CreateOrg(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	project := func(org, name string) string {
		p, err := st.CreateProject(ctx, org, name)
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	var w world
	w.o, w.o2 = org("o"), org("o2")
	w.p1, w.p2, w.q1 = project(w.o, "p1"), project(w.o, "p2"), project(w.o2, "q1")
	return w
}

func in(project, id string, n int) registry.Spec {
	s := spec(id, n)
	s.Project = project
	return s
}

func ptr(n int) *int { return &n }

// refusal fails the test unless err is a *quota.Refusal of the quota and
// scope given, with that remaining, and returns its message.
func refusal(t *testing.T, err error, q, scope string, remaining int) string {
	t.Helper()
	var r *quota.Refusal
	if !errors.As(err, &r) {
		t.Fatalf("err = %v, want a refusal of %s %s", err, q, scope)
	}
	if r.Quota != q || r.Scope != scope || r.Remaining != remaining {
		t.Fatalf("refusal %+v (%v), want quota %s %s with %d remaining", r, r, q, scope, remaining)
	}
	return r.Error()
}

// checkCounters recounts from the specs: every counter the ledger kept
// must already be right.
func checkCounters(t *testing.T, g ledger) {
	t.Helper()
	changed, err := g.Recount(t.Context())
	if err != nil || changed != 0 {
		t.Fatalf("Recount = %d changed, %v; the ledger's counters drifted from its specs", changed, err)
	}
}

// TestScopeQuotas walks the semantics: every level is checked, the
// tightest refusal is named with its exact figures, a lowered quota shows
// as over and refuses only increases, and transfers move allocations.
func TestScopeQuotas(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	g := newLedger(t, cli, quota.Licence{TotalConnections: 10000, MaxPerCluster: 5000})
	w := newWorld(t, cli)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(g.SetOrgQuota(ctx, w.o, ptr(100)))
	must(g.SetProjectQuota(ctx, w.p1, ptr(50)))
	must(g.Create(ctx, in(w.p1, "c1", 10)))
	_, err := g.SetMaxConnections(ctx, "c1", 50)
	must(err)
	_, err = g.SetMaxConnections(ctx, "c1", 51)
	msg := refusal(t, err, quota.QuotaProject, w.p1, 0)
	if want := "maxConnections 51 needs 1 more connections but project " + w.p1 + "'s connection quota has 0 remaining (quota 50, allocated 50)"; msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
	must(g.Create(ctx, in(w.p2, "c2", 10)))
	// p2 has no quota of its own: the organization's bounds it.
	_, err = g.SetMaxConnections(ctx, "c2", 60)
	refusal(t, err, quota.QuotaOrg, w.o, 40)
	_, err = g.SetMaxConnections(ctx, "c2", 50)
	must(err)
	// Both the project (5 left) and the organization (0 left) refuse: the
	// tighter one is named.
	must(g.SetProjectQuota(ctx, w.p2, ptr(55)))
	_, err = g.SetMaxConnections(ctx, "c2", 51)
	refusal(t, err, quota.QuotaOrg, w.o, 0)
	err = g.Create(ctx, in(w.p2, "c3", 10))
	refusal(t, err, quota.QuotaOrg, w.o, 0)

	// Transfers: into another organization its quota applies; within one
	// only the target project's.
	must(g.SetOrgQuota(ctx, w.o2, ptr(30)))
	move := func(id, to string) error {
		_, err := g.Update(ctx, id, func(s *registry.Spec) error { s.Project = to; return nil })
		return err
	}
	err = move("c1", w.q1)
	msg = refusal(t, err, quota.QuotaOrg, w.o2, 30)
	if want := "moving cluster c1 (maxConnections 50) needs 50 connections in organization " + w.o2 + "'s connection quota but it has 30 remaining (quota 30, allocated 0)"; msg != want {
		t.Fatalf("message %q, want %q", msg, want)
	}
	err = move("c1", w.p2)
	refusal(t, err, quota.QuotaProject, w.p2, 5)
	must(g.SetProjectQuota(ctx, w.p2, nil))
	must(move("c1", w.p2))
	checkCounters(t, g)

	// Lowering a quota under the allocation is allowed and shows as over;
	// lowering a cluster is still allowed, raising it is not.
	must(g.SetProjectQuota(ctx, w.p2, ptr(60)))
	u, err := g.ProjectUsage(ctx, w.o, w.p2)
	must(err)
	if u.MaxConnections == nil || *u.MaxConnections != 60 || u.Allocated != 100 || u.Remaining != 0 || u.OverBy != 40 || u.LimitedBy != quota.QuotaProject {
		t.Fatalf("usage of a lowered quota = %+v, want 60, allocated 100, remaining 0, overBy 40, limited by project", u)
	}
	_, err = g.SetMaxConnections(ctx, "c2", 10)
	must(err)
	_, err = g.SetMaxConnections(ctx, "c2", 11)
	refusal(t, err, quota.QuotaProject, w.p2, 0)

	// Unset quotas are bounded by the level above.
	must(g.SetProjectQuota(ctx, w.p2, nil))
	must(g.SetOrgQuota(ctx, w.o, nil))
	u, err = g.ProjectUsage(ctx, w.o, w.p2)
	must(err)
	if u.MaxConnections != nil || u.Allocated != 60 || u.Remaining != 10000-60 || u.LimitedBy != quota.QuotaLicence {
		t.Fatalf("usage without quotas = %+v, want allocated 60, the licence's remaining", u)
	}
	// Deleting gives back to every level.
	_, err = g.Delete(ctx, "c1")
	must(err)
	ou, err := g.OrgUsage(ctx, w.o)
	must(err)
	if ou.Allocated != 10 || ou.Project != "" || ou.Org != w.o {
		t.Fatalf("org usage after delete = %+v, want allocated 10", ou)
	}
	checkCounters(t, g)
}

// TestRecountFillsCounters: a deployment whose specs predate the counters
// (or were written around the ledger) gets them at start, and a stale
// counter goes.
func TestRecountFillsCounters(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	g := newLedger(t, cli, quota.Licence{TotalConnections: 1000, MaxPerCluster: 500})
	w := newWorld(t, cli)
	for i, n := range []int{10, 20, 30} {
		b, err := in(w.p1, "old"+strconv.Itoa(i), n).Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx, registry.Key("old"+strconv.Itoa(i)), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Put(ctx, quota.ProjectAllocatedPrefix+"gone", "99"); err != nil {
		t.Fatal(err)
	}
	changed, err := g.Recount(ctx)
	if err != nil || changed != 4 { // p1, o, the licence total, the stale key
		t.Fatalf("Recount = %d, %v; want 4 changes", changed, err)
	}
	if err := g.SetProjectQuota(ctx, w.p1, ptr(70)); err != nil {
		t.Fatal(err)
	}
	err = g.Create(ctx, in(w.p1, "new", 11))
	refusal(t, err, quota.QuotaProject, w.p1, 10)
	if resp, err := cli.Get(ctx, quota.ProjectAllocatedPrefix+"gone"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("stale counter still there: %v %v", resp, err)
	}
	checkCounters(t, g)
}

// TestScopeQuotasHoldUnderRaces: 200 concurrent changes (max connections,
// creations, transfers between the projects and organizations) from two
// ledgers (two replicas) on one etcd, while a third recounts: no project or
// organization ever ends over its quota, and every counter equals the sum
// of its specs.
func TestScopeQuotasHoldUnderRaces(t *testing.T) {
	srv := etcdtest.Start(t)
	cli1, cli2 := etcdtest.ClientOf(t, srv), etcdtest.ClientOf(t, srv)
	lic := quota.Licence{TotalConnections: 10000, MaxPerCluster: 400}
	g1, g2 := newLedger(t, cli1, lic), newLedger(t, cli2, lic)
	ctx := t.Context()
	w := newWorld(t, cli1)
	limits := map[string]int{w.p1: 200, w.o: 300, w.q1: 150}
	for _, err := range []error{g1.SetProjectQuota(ctx, w.p1, ptr(200)), g1.SetOrgQuota(ctx, w.o, ptr(300)), g1.SetProjectQuota(ctx, w.q1, ptr(150))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	projects := []string{w.p1, w.p2, w.q1}
	var ids []string
	for i := range 12 {
		id := "c" + strconv.Itoa(i)
		if err := g1.Create(ctx, in(projects[i%3], id, 10)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	var (
		wg      sync.WaitGroup
		applied atomic.Int64
		refused sync.Map // quota -> *atomic.Int64
	)
	errs := make(chan error, 300)
	for i := range 200 {
		g := g1
		if i%2 == 1 {
			g = g2
		}
		id := ids[rand.IntN(len(ids))]
		n := 1 + rand.IntN(120)
		to := projects[rand.IntN(len(projects))]
		kind := i % 5
		wg.Go(func() {
			var err error
			switch kind {
			case 0:
				_, err = g.Update(ctx, id, func(s *registry.Spec) error { s.Project = to; return nil })
			case 1:
				err = g.Create(ctx, in(to, fmt.Sprintf("n%d", n*1000+rand.IntN(1000)), n))
				if errors.Is(err, registry.ErrExists) {
					err = nil
				}
			default:
				_, err = g.SetMaxConnections(ctx, id, n)
			}
			var r *quota.Refusal
			switch {
			case err == nil:
				applied.Add(1)
			case errors.As(err, &r):
				c, _ := refused.LoadOrStore(r.Quota, new(atomic.Int64))
				c.(*atomic.Int64).Add(1)
			default:
				errs <- err
			}
		})
	}
	// A replica starting meanwhile recounts: its writes must not lose a
	// concurrent change.
	wg.Go(func() {
		if _, err := g2.Recount(context.WithoutCancel(ctx)); err != nil {
			errs <- err
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	specs, err := g1.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]int{}
	for _, s := range specs {
		sums[s.Project] += s.MaxConnections
		if s.Project != w.q1 {
			sums[w.o] += s.MaxConnections
		}
	}
	for scope, limit := range limits {
		if sums[scope] > limit {
			t.Errorf("%s holds %d connections, over its quota of %d", scope, sums[scope], limit)
		}
	}
	for _, p := range projects {
		u, err := g2.ProjectUsage(ctx, map[bool]string{true: w.o2, false: w.o}[p == w.q1], p)
		if err != nil {
			t.Fatal(err)
		}
		if u.Allocated != sums[p] {
			t.Errorf("project %s counter %d, sum of its specs %d", p, u.Allocated, sums[p])
		}
	}
	checkCounters(t, g1)
	var kinds []string
	refused.Range(func(k, v any) bool {
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	if applied.Load() == 0 || len(kinds) < 2 {
		t.Fatalf("applied %d, refused %v: want changes applied and refused by more than one quota", applied.Load(), kinds)
	}
	t.Logf("applied %d, refused %v; p1 %d/200, o %d/300, q1 %d/150", applied.Load(), kinds, sums[w.p1], sums[w.o], sums[w.q1])
}
