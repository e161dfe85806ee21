package alerts

import (
	"fmt"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
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
