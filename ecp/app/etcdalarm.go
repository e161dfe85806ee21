package app

import (
	"context"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// noSpaceReason is what /-/ready answers while etcd reports NOSPACE.
const noSpaceReason = "etcd reports NOSPACE: its backend quota (--etcd.quota-backend-bytes for the embedded member) is used up and it refuses every write. Free space (compact, defragment), or raise the quota, then disarm the alarm (etcdctl alarm disarm)."

// etcdAlarms exports the alarms etcd has raised as ecp_etcd_alarm, from the
// maintenance API's alarm list, which embedded and external etcd answer
// alike, and keeps NOSPACE for readiness.
type etcdAlarms struct {
	gauge   *prometheus.GaugeVec
	noSpace atomic.Bool
	// failing notes that the alarm list could not be read (an external
	// etcd may refuse it to a non-root user), so that is logged once.
	failing atomic.Bool
}

func newEtcdAlarms(reg prometheus.Registerer) *etcdAlarms {
	e := &etcdAlarms{gauge: promauto.With(reg).NewGaugeVec(prometheus.GaugeOpts{
		Name: "ecp_etcd_alarm",
		Help: "Whether etcd has raised the alarm (1) or not (0): NOSPACE when its backend quota is used up and it refuses writes, CORRUPT when a member's data differs.",
	}, []string{"alarm"})}
	for v, name := range etcdserverpb.AlarmType_name {
		if v != int32(etcdserverpb.AlarmType_NONE) {
			e.gauge.WithLabelValues(name)
		}
	}
	return e
}

// check reads etcd's alarms into the gauge and the NOSPACE flag.
func (e *etcdAlarms) check(ctx context.Context, cli *clientv3.Client, logger *slog.Logger) {
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		if !e.failing.Swap(true) {
			logger.Warn("cannot read etcd's alarms; ecp_etcd_alarm is not current", "err", err)
		}
		return
	}
	e.failing.Store(false)
	raised := map[etcdserverpb.AlarmType]bool{}
	for _, m := range resp.Alarms {
		raised[m.Alarm] = true
	}
	for v, name := range etcdserverpb.AlarmType_name {
		if at := etcdserverpb.AlarmType(v); at != etcdserverpb.AlarmType_NONE {
			value := 0.0
			if raised[at] {
				value = 1
			}
			e.gauge.WithLabelValues(name).Set(value)
		}
	}
	noSpace := raised[etcdserverpb.AlarmType_NOSPACE]
	if noSpace != e.noSpace.Swap(noSpace) {
		if noSpace {
			logger.Error("etcd reports NOSPACE: its backend quota is used up and it refuses writes; reporting not ready")
		} else {
			logger.Info("etcd's NOSPACE alarm is cleared; reporting ready")
		}
	}
}
