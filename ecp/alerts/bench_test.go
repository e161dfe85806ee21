package alerts

import (
	"flag"
	"fmt"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
)

// BenchmarkWebhook measures how many alert notifications one replica stores
// per second on embedded etcd: firing then resolved, each a new episode (two
// etcd transactions after a read each).
func BenchmarkWebhook(b *testing.B) {
	cli := etcdtest.Client(b)
	w := newWorld(b, cli)
	a := newService(b, w, Options{})
	start := time.Now()
	for i := range b.N {
		al := connectorAlert(w.project.ID, t0.Add(time.Duration(i)*time.Second))
		al.Fingerprint = fmt.Sprintf("fp-%d", i)
		a.notify("firing", al)
		al.Status, al.EndsAt = "resolved", al.StartsAt.Add(time.Minute)
		a.notify("resolved", al)
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "notifications/s")
}

// BenchmarkClusterCreate measures what one new cluster costs the alert
// leader once a fleet holds clusters already: each op puts one spec, and
// the clock stops when the leader has applied the last one. ns/op and
// B/op (the whole process: the embedded etcd serves the leader's reads)
// should not grow with the fleet; they did while every change read every
// spec (issue #14). With -alerts.bench-settings the project's alerts are
// on, so each apply also renders the project's rule file, which names
// every cluster of the project.
//
//	go test -run '^$' -bench ClusterCreate -benchtime 300x ./ecp/alerts/
func BenchmarkClusterCreate(b *testing.B) {
	for _, fleet := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("fleet=%d", fleet), func(b *testing.B) {
			cli := etcdtest.Client(b)
			w := newWorld(b, cli)
			o := Options{}
			if *benchSettings {
				o, _ = fakeStackOptions(b)
			}
			a := newService(b, w, o)
			defer run(b, a.svc)()
			if *benchSettings {
				a.must(200, "padmin", http.MethodPut, "/api/v1/projects/"+w.project.ID+"/alert-settings", map[string]any{"enabled": true,
					"triggerCount": 1, "recoveryCount": 1, "severity": "critical"})
			}
			put := func(i int) int64 {
				id := fmt.Sprintf("c%06d", i)
				v, err := registry.Spec{ID: id, Name: "plant " + id, Project: w.project.ID}.Encode()
				if err != nil {
					b.Fatal(err)
				}
				resp, err := cli.Put(b.Context(), registry.Key(id), string(v))
				if err != nil {
					b.Fatal(err)
				}
				return resp.Header.Revision
			}
			var rev int64
			for i := range fleet {
				rev = put(i)
			}
			waitApplied(b, cli, rev)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				rev = put(fleet + i)
			}
			waitApplied(b, cli, rev)
		})
	}
}

var benchSettings = flag.Bool("alerts.bench-settings", false, "BenchmarkClusterCreate: turn the project's alerts on")

// waitApplied waits until the leader's status is of revision rev or later.
func waitApplied(b *testing.B, cli *clientv3.Client, rev int64) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var st applyStatus
		if _, err := kv.Get(b.Context(), cli, statusKey, &st); err == nil && st.Revision >= rev {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the leader has not applied revision %d within 5 minutes", rev)
		}
		time.Sleep(time.Millisecond)
	}
}
