package quota_test

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
)

// BenchmarkSetMaxConnections measures allocation changes on one embedded
// etcd, with every goroutine contending for the one allocation counter;
// it reports the transaction retries that contention costs per change.
func BenchmarkSetMaxConnections(b *testing.B) {
	for _, parallel := range []int{1, 16} {
		b.Run("goroutines="+strconv.Itoa(parallel), func(b *testing.B) {
			cli := etcdtest.Client(b)
			reg := prometheus.NewRegistry()
			ledger, err := quota.NewLedger(cli, quota.Licence{TotalConnections: 1 << 30, MaxPerCluster: 1 << 20}, reg)
			if err != nil {
				b.Fatal(err)
			}
			g := registry.NewStore(cli, ledger)
			const clusters = 32
			for i := range clusters {
				if err := g.Create(b.Context(), spec("c"+strconv.Itoa(i), 10)); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(parallel)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					if _, err := g.SetMaxConnections(b.Context(), "c"+strconv.Itoa(int(i%clusters)), int(i%1000)+1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			mfs, err := reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() == "ecp_quota_transaction_retries_total" {
					b.ReportMetric(mf.GetMetric()[0].GetCounter().GetValue()/float64(b.N), "retries/op")
				}
			}
		})
	}
}
