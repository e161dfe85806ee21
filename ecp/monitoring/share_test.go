package monitoring

import (
	"context"
	"fmt"
	"testing"
	"time"

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
