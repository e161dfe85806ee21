package fleet

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agentproto/series"
)

type metrics struct {
	reports       prometheus.Counter
	registrations *prometheus.CounterVec
	tokens        prometheus.Counter
	transitions   *prometheus.CounterVec
	etcdWrites    *prometheus.CounterVec
	waiters       prometheus.Gauge
	throttled     prometheus.Counter
	refused       prometheus.Counter
	leader        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, f *Fleet) *metrics {
	auto := promauto.With(reg)
	m := &metrics{
		reports: auto.NewCounter(prometheus.CounterOpts{
			Name: "ecp_agent_reports_total",
			Help: "Agent reports accepted by this replica.",
		}),
		registrations: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_agent_registrations_total",
			Help: "Agent registrations by this replica, by result (attempt, ok, TokenInvalid, TokenExpired).",
		}, []string{"result"}),
		tokens: auto.NewCounter(prometheus.CounterOpts{
			Name: "ecp_registration_tokens_issued_total",
			Help: "Registration tokens issued by this replica.",
		}),
		transitions: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_cluster_state_transitions_total",
			Help: "Managed-cluster state changes written by this replica, by the state entered.",
		}, []string{"state"}),
		etcdWrites: auto.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_fleet_etcd_writes_total",
			Help: "Successful write transactions fleet made in etcd, by reason.",
		}, []string{"reason"}),
		waiters: auto.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_agent_desired_waiters",
			Help: "Desired-state long-polls currently held open.",
		}),
		throttled: auto.NewCounter(prometheus.CounterOpts{
			Name: "ecp_agent_requests_throttled_total",
			Help: "Agent requests answered 429 because too many were in flight.",
		}),
		refused: auto.NewCounter(prometheus.CounterOpts{
			Name: "ecp_agent_credentials_refused_total",
			Help: "Agent requests refused because the credential is not bound to a cluster.",
		}),
		leader: auto.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_fleet_leader",
			Help: "1 while this replica runs the liveness sweeper.",
		}),
	}
	reg.MustRegister(&stateCollector{f: f})
	for _, s := range []string{StateCreated, StateRegistering, StateRunning, StateAbnormal} {
		m.transitions.WithLabelValues(s)
	}
	return m
}

var (
	clusterStateDesc = prometheus.NewDesc(series.ClusterState,
		"State of each managed cluster: 1 for its current state (one series per cluster). "+
			"The state is the same on every replica.",
		[]string{series.LabelCluster, series.LabelProject, series.LabelState}, nil)
	clustersDesc = prometheus.NewDesc("ecp_clusters",
		"Managed clusters by state.", []string{"state"}, nil)
)

// stateCollector reads the states from memory at scrape time, so reports
// never touch a metric per cluster.
type stateCollector struct{ f *Fleet }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- clusterStateDesc
	ch <- clustersDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.f
	counts := map[string]int{StateCreated: 0, StateRegistering: 0, StateRunning: 0, StateAbnormal: 0}
	type row struct{ id, project, state string }
	f.mu.Lock()
	now := f.now()
	rows := make([]row, 0, len(f.entries))
	for _, e := range f.entries {
		if !e.hasSpec {
			continue
		}
		st := f.statusLocked(e, now)
		rows = append(rows, row{e.id, e.spec.Project, st.State})
		counts[st.State]++
	}
	f.mu.Unlock()
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(clusterStateDesc, prometheus.GaugeValue, 1, r.id, r.project, r.state)
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(clustersDesc, prometheus.GaugeValue, float64(n), s)
	}
}
