package monitoring

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/registry"
)

// waitUntil polls cond: the other replica learns through an etcd watch.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestShareAcrossReplicas(t *testing.T) {
	cli := etcdtest.Client(t)
	a, b := NewStore(nil), NewStore(nil)
	a.Share(cli, "a", nil)
	b.Share(cli, "b", nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{}, 2)
	for _, s := range []*Store{a, b} {
		go func() { _ = s.Run(ctx); done <- struct{}{} }()
	}
	defer func() { cancel(); <-done; <-done }()

	// Snapshots are shared only while their entry exists.
	if _, err := cli.Put(t.Context(), registry.Key("c1"), "{}"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	report := func(at time.Time, status string) *agentproto.ReportRequest {
		return &agentproto.ReportRequest{CollectedAt: at, EMQX: agentproto.EMQXStatus{Reachable: true,
			Connectors: agentproto.ResourceCounts{Total: 1, Unhealthy: 1},
			Abnormal:   []agentproto.Resource{{Kind: agentproto.KindConnector, ID: "http:c", Status: status}}}}
	}
	a.Observe("c1", report(at, "disconnected"))
	waitUntil(t, "replica b to see a's report", func() bool {
		sn, ok := b.Snapshot("c1")
		return ok && len(sn.Abnormal) == 1 && sn.Abnormal[0].Status == "disconnected"
	})
	resp, err := cli.Get(t.Context(), Prefix+"c1")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("stored snapshot: %v %v", resp, err)
	}
	firstRev := resp.Kvs[0].ModRevision

	// The same content again, later: no write.
	a.Observe("c1", report(at.Add(time.Second), "disconnected"))
	// A change on the other replica: written, and seen by a.
	b.Observe("c1", report(at.Add(2*time.Second), "connecting"))
	waitUntil(t, "replica a to see b's change", func() bool {
		sn, _ := a.Snapshot("c1")
		return len(sn.Abnormal) == 1 && sn.Abnormal[0].Status == "connecting"
	})
	resp, err = cli.Get(t.Context(), Prefix+"c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Kvs[0].Version; got != 2 {
		t.Fatalf("snapshot key written %d times (first at revision %d), want 2: once per change", got, firstRev)
	}
	// An older snapshot never replaces a newer one.
	a.apply(Prefix+"c1", []byte(`{"CollectedAt":"2026-11-27T11:00:00Z","Reachable":true,"replica":"z"}`))
	if sn, _ := a.Snapshot("c1"); len(sn.Abnormal) != 1 {
		t.Fatalf("an older snapshot replaced a newer one: %+v", sn)
	}
}

// TestScaleMovingCountersWriteNothing: a cluster with a failing rule
// reports growing counters in the rule's reason every collection; only the
// rule going abnormal and recovering may reach etcd.
func TestScaleMovingCountersWriteNothing(t *testing.T) {
	cli := etcdtest.Client(t)
	s := NewStore(nil)
	s.Share(cli, "a", nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Snapshots are shared only while their entry exists.
	for _, id := range []string{"c1", "marker"} {
		if _, err := cli.Put(t.Context(), registry.Key(id), "{}"); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	report := func(i int, abnormal ...agentproto.Resource) *agentproto.ReportRequest {
		return &agentproto.ReportRequest{CollectedAt: at.Add(time.Duration(i) * 15 * time.Second), EMQX: agentproto.EMQXStatus{
			Reachable: true, Rules: agentproto.ResourceCounts{Total: 2, Healthy: 2 - len(abnormal), Unhealthy: len(abnormal)},
			Abnormal: abnormal}}
	}
	failing := func(n int) agentproto.Resource {
		return agentproto.Resource{Kind: agentproto.KindRule, ID: "rule_1", Status: "failing",
			Reason: fmt.Sprintf("failed %d, actions failed %d", n, n)}
	}
	// flushed waits until everything queued before it was written: the
	// writer takes its queue in batches, one after the other, so once a
	// second change of a marker cluster is stored, every earlier one is.
	marker := 0
	flushed := func() {
		for range 2 {
			marker++
			s.Observe("marker", report(marker, agentproto.Resource{Kind: agentproto.KindRule, ID: fmt.Sprintf("m%d", marker), Status: "stopped"}))
			want := int64(marker)
			waitUntil(t, "the marker write", func() bool {
				resp, err := cli.Get(t.Context(), Prefix+"marker")
				return err == nil && len(resp.Kvs) == 1 && resp.Kvs[0].Version == want
			})
		}
	}
	writes := func() int64 {
		resp, err := cli.Get(t.Context(), Prefix+"c1")
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("stored snapshot of c1: %v %v", resp, err)
		}
		return resp.Kvs[0].Version
	}

	// Each report is flushed before the next, as reports 15 s apart are.
	s.Observe("c1", report(0, failing(12)))
	flushed()
	for i := 1; i <= 5; i++ {
		s.Observe("c1", report(i, failing(12+3*i)))
		flushed()
	}
	if got := writes(); got != 1 {
		t.Fatalf("c1's snapshot was written %d times over 6 reports whose only change was the failing rule's counters, want 1", got)
	}
	if sn, _ := s.Snapshot("c1"); sn.Abnormal[0].Reason != "failed 27, actions failed 27" {
		t.Fatalf("this replica shows reason %q, want the latest report's counters", sn.Abnormal[0].Reason)
	}
	s.Observe("c1", report(21))
	flushed()
	if got := writes(); got != 2 {
		t.Fatalf("c1's snapshot was written %d times, want 2: the rule recovering is one write", got)
	}
}

// TestScaleFirstSnapshotsBatched: after a burst of registrations every
// cluster's first snapshot is queued at once; they are written a
// transaction of putsPerTxn at a time, not one each (at 20,000 agents the
// writes drained for minutes, one etcd round trip and revision apiece),
// and a cluster deleted meanwhile still gets no key.
func TestScaleFirstSnapshotsBatched(t *testing.T) {
	cli := etcdtest.Client(t)
	s := NewStore(nil)
	s.Share(cli, "a", nil)
	const clusters = 200
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	report := func(rules int) *agentproto.ReportRequest {
		return &agentproto.ReportRequest{CollectedAt: at, EMQX: agentproto.EMQXStatus{Reachable: true,
			Rules: agentproto.ResourceCounts{Total: rules, Healthy: rules}}}
	}
	for i := range clusters {
		id := fmt.Sprintf("c%03d", i)
		if _, err := cli.Put(t.Context(), registry.Key(id), "{}"); err != nil {
			t.Fatal(err)
		}
		s.Observe(id, report(1))
	}
	stored := func(want int) int64 {
		t.Helper()
		var rev int64
		waitUntil(t, fmt.Sprintf("%d snapshots stored", want), func() bool {
			resp, err := cli.Get(t.Context(), Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			rev = resp.Header.Revision
			return err == nil && resp.Count == int64(want)
		})
		return rev
	}
	before, err := cli.Get(t.Context(), "none")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if got, want := stored(clusters)-before.Header.Revision, int64((clusters+putsPerTxn-1)/putsPerTxn); got != want {
		t.Fatalf("%d first snapshots took %d etcd revisions, want %d: %d per transaction", clusters, got, want, putsPerTxn)
	}

	// c005 is deleted before its change is written: the other changes of
	// its transaction are still written, c005's is not.
	if _, err := cli.Delete(t.Context(), registry.Key("c005")); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(t.Context(), Key("c005")); err != nil {
		t.Fatal(err)
	}
	s.Forget("c005")
	for i := range 10 {
		s.Observe(fmt.Sprintf("c%03d", i), report(2))
	}
	waitUntil(t, "the changes of c000-c009 but c005 stored", func() bool {
		resp, err := cli.Get(t.Context(), Prefix+"c00", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		changed := 0
		for _, kv := range resp.Kvs {
			if string(kv.Key) == Key("c005") {
				t.Fatalf("c005's snapshot was written after its entry was deleted: %s", kv.Value)
			}
			if kv.Version == 2 {
				changed++
			}
		}
		return changed == 9
	})
}
