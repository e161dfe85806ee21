package collector

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/gather"
	"github.com/ecpio/ecp/agentproto/series"
)

// metricDesc is one metric's description, both as the client library's
// Desc (for Collect) and as package gather's (for the push's Gather).
type metricDesc struct {
	*prometheus.Desc
	g *gather.Desc
}

func desc(name, help string, labels ...string) *metricDesc {
	return &metricDesc{Desc: prometheus.NewDesc(name, help, labels, nil), g: gather.NewDesc(name, help, labels...)}
}

// The names come from agentproto/series, which ecp's rules and dashboards
// read too.
var (
	descUp             = desc(series.Up, "Whether the last collection reached EMQX's API and logged in (1) or not (0).")
	descCollectionTime = desc(series.CollectionTime, "When the snapshot served here was collected, as a Unix time.")
	descDuration       = desc(series.CollectorDuration, "How long a sub-collector took in the last collection.", series.LabelCollector)
	descSuccess        = desc(series.CollectorSuccess, "Whether a sub-collector succeeded in the last collection.", series.LabelCollector)

	descNodeInfo        = desc(series.NodeInfo, "EMQX node, with its version, edition and role; always 1.", series.LabelNode, series.LabelVersion, series.LabelEdition, series.LabelRole)
	descNodeRunning     = desc(series.NodeRunning, "Whether the node is running (1) or stopped (0).", series.LabelNode)
	descNodeStart       = desc(series.NodeStartTime, "When the running node's VM started, as a Unix time.", series.LabelNode)
	descNodeConns       = desc(series.NodeConnections, "Sessions on the node, including disconnected persistent sessions.", series.LabelNode)
	descNodeLiveConns   = desc(series.NodeLiveConnections, "Clients connected to the node.", series.LabelNode)
	descLicenseMax      = desc(series.LicenseMaxConnections, "Effective connection limit of the licence (max_sessions from 5.8.5, else max_connections).")
	descLicenseExpiry   = desc(series.LicenseExpiry, "When the licence expires (00:00 UTC of expiry_at), as a Unix time.")
	descLicenseInfo     = desc(series.LicenseInfo, "Loaded licence, with its type and customer type; always 1.", series.LabelType, series.LabelCustomerType)
	descLicenseDynamic  = desc(series.DynamicMaxConnections, "dynamic_max_connections of a business-critical licence.")
	descNodeLoad1       = desc(series.NodeLoad1, "OS load average over 1 minute of the running node's host.", series.LabelNode)
	descNodeLoad5       = desc(series.NodeLoad5, "OS load average over 5 minutes of the running node's host.", series.LabelNode)
	descNodeLoad15      = desc(series.NodeLoad15, "OS load average over 15 minutes of the running node's host.", series.LabelNode)
	descNodeCPU         = desc(series.NodeCPUUsage, "CPU usage of the running node's host, 0 to 1 (emqx_vm_cpu_use of /prometheus/stats, a percentage, over 100).", series.LabelNode)
	descNodeMemTotal    = desc(series.NodeMemoryTotal, "Memory of the running node's host (memory_total), in bytes.", series.LabelNode)
	descNodeMemUsed     = desc(series.NodeMemoryUsed, "Memory in use on the running node's host (memory_used), in bytes.", series.LabelNode)
	descConnectAuthErr  = desc(series.ConnectAuthFailures, "CONNECTs the cluster refused for failed authentication or authorization (packets.connack.auth_error).")
	descPublishAuthErr  = desc(series.PublishAuthFailures, "PUBLISHes the cluster's authorization denied (packets.publish.auth_error).")
	descSubAuthErr      = desc(series.SubscribeAuthFailures, "SUBSCRIBEs the cluster's authorization denied (packets.subscribe.auth_error).")
	descAuthnEnabled    = desc(series.AuthnEnabled, "Whether the authenticator is enabled.", series.LabelID)
	descAuthnConnected  = desc(series.AuthnConnected, "Whether the authenticator is connected on every node (1) or not (0).", series.LabelID)
	descAuthzEnabled    = desc(series.AuthzEnabled, "Whether the authorization source is enabled; id is its type.", series.LabelID)
	descAuthzConnected  = desc(series.AuthzConnected, "Whether the authorization source is connected on every node (1) or not (0); id is its type.", series.LabelID)
	descRuleEnabled     = desc(series.RuleEnabled, "Whether the rule is enabled (running) or not.", series.LabelID)
	descRuleMatched     = desc(series.RuleMatched, "Messages the rule's SQL matched.", series.LabelID)
	descRulePassed      = desc(series.RulePassed, "Messages that passed the rule's SQL.", series.LabelID)
	descRuleFailed      = desc(series.RuleFailed, "Messages the rule's SQL failed on.", series.LabelID)
	descRuleActOK       = desc(series.RuleActionsSuccess, "Successful action runs of the rule.", series.LabelID)
	descRuleActFailed   = desc(series.RuleActionsFailed, "Failed action runs of the rule.", series.LabelID)
	descConnectorStatus = desc(series.ConnectorStatus, "Aggregated status of the connector, one series per status.", series.LabelID, series.LabelStatus)
	descConnectorEnable = desc(series.ConnectorEnabled, "Whether the connector is enabled.", series.LabelID)
	descActionStatus    = desc(series.ActionStatus, "Aggregated status of the action, one series per status.", series.LabelID, series.LabelStatus)
	descActionEnable    = desc(series.ActionEnabled, "Whether the action is enabled.", series.LabelID)
	descSourceStatus    = desc(series.SourceStatus, "Aggregated status of the source, one series per status.", series.LabelID, series.LabelStatus)
	descSourceEnable    = desc(series.SourceEnabled, "Whether the source is enabled.", series.LabelID)
	descAlarmActive     = desc(series.AlarmActive, "An alarm EMQX holds active, by alarm name and node; always 1 (a cleared alarm disappears).", series.LabelName, series.LabelNode)
)

// Exporter serves the latest snapshot as Prometheus metrics. A scrape never
// calls EMQX.
type Exporter struct {
	c *Collector
}

// NewExporter returns a prometheus.Collector over c's latest snapshot. It
// is also a prometheus.Gatherer of the same series (see Gather).
func NewExporter(c *Collector) *Exporter { return &Exporter{c: c} }

var allDescs = []*metricDesc{
	descUp, descCollectionTime, descDuration, descSuccess, descNodeInfo, descNodeRunning, descNodeStart,
	descNodeConns, descNodeLiveConns, descLicenseMax, descLicenseExpiry, descLicenseInfo, descLicenseDynamic,
	descRuleEnabled, descRuleMatched, descRulePassed, descRuleFailed, descRuleActOK, descRuleActFailed,
	descConnectorStatus, descConnectorEnable, descActionStatus, descActionEnable, descSourceStatus, descSourceEnable,
	descAlarmActive, descNodeLoad1, descNodeLoad5, descNodeLoad15, descNodeCPU, descNodeMemTotal, descNodeMemUsed,
	descConnectAuthErr, descPublishAuthErr, descSubAuthErr,
	descAuthnEnabled, descAuthnConnected, descAuthzEnabled, descAuthzConnected,
}

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.Desc
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements prometheus.Collector.
func (e *Exporter) Collect(ch chan<- prometheus.Metric) {
	emit(e.c.Latest(), func(d *metricDesc, t prometheus.ValueType, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc, t, v, l...)
	})
}

// emit calls fn once per series of snapshot s (nil: none yet); Collect and
// Gather both build on it, so they cannot disagree. The labels fn gets are
// valid only during the call: they are copied into one scratch slice, as
// the slice of each call's labels would otherwise escape through fn to the
// heap, tens of thousands of allocations a gathering.
func emit(s *Snapshot, fn func(d *metricDesc, t prometheus.ValueType, v float64, labels ...string)) {
	if s == nil {
		fn(descUp, prometheus.GaugeValue, 0)
		return
	}
	scratch := make([]string, 0, 4)
	gauge := func(d *metricDesc, v float64, l ...string) {
		scratch = append(scratch[:0], l...)
		fn(d, prometheus.GaugeValue, v, scratch...)
	}
	counter := func(d *metricDesc, v float64, l ...string) {
		scratch = append(scratch[:0], l...)
		fn(d, prometheus.CounterValue, v, scratch...)
	}
	gauge(descUp, b2f(s.Up))
	gauge(descCollectionTime, float64(s.CollectedAt.UnixMilli())/1000)
	for _, r := range s.Results {
		gauge(descDuration, r.Duration.Seconds(), r.Name)
		gauge(descSuccess, b2f(r.Err == nil), r.Name)
	}
	for _, n := range s.Nodes {
		running := n.NodeStatus == "running"
		gauge(descNodeRunning, b2f(running), n.Node)
		if !running {
			continue
		}
		gauge(descNodeInfo, 1, n.Node, n.Version, n.Edition, n.Role)
		start := s.CollectedAt.Add(-time.Duration(n.Uptime) * time.Millisecond)
		gauge(descNodeStart, float64(start.Unix()), n.Node)
		gauge(descNodeConns, float64(n.Connections), n.Node)
		gauge(descNodeLiveConns, float64(n.LiveConnections), n.Node)
		gauge(descNodeLoad1, float64(n.Load1), n.Node)
		gauge(descNodeLoad5, float64(n.Load5), n.Node)
		gauge(descNodeLoad15, float64(n.Load15), n.Node)
		if cpu, ok := s.NodeCPU[n.Node]; ok {
			gauge(descNodeCPU, cpu/100, n.Node)
		}
		// "0" (non-Linux) is no reading: a total of 0 would make the
		// memory rule divide by zero, so both are left out.
		total, okT := emqx.MemoryBytes(n.MemoryTotal)
		used, okU := emqx.MemoryBytes(n.MemoryUsed)
		if okT && okU && total > 0 {
			gauge(descNodeMemTotal, total, n.Node)
			gauge(descNodeMemUsed, used, n.Node)
		}
	}
	if l := s.License; l != nil {
		gauge(descLicenseMax, float64(l.Limit()))
		gauge(descLicenseInfo, 1, l.Type, strconv.Itoa(l.CustomerType))
		if t, err := time.Parse(time.DateOnly, l.ExpiryAt); err == nil {
			gauge(descLicenseExpiry, float64(t.Unix()))
		}
	}
	if st := s.Setting; st != nil && st.DynamicMaxConnections != nil {
		gauge(descLicenseDynamic, float64(*st.DynamicMaxConnections))
	}
	for _, r := range s.Rules {
		gauge(descRuleEnabled, b2f(r.Enable), r.ID)
		if m := r.Metrics; m != nil {
			counter(descRuleMatched, m.Matched, r.ID)
			counter(descRulePassed, m.Passed, r.ID)
			counter(descRuleFailed, m.Failed, r.ID)
			counter(descRuleActOK, m.ActionsOK, r.ID)
			counter(descRuleActFailed, m.ActionsFailed, r.ID)
		}
	}
	resources := func(list []emqx.Resource, status, enabled *metricDesc) {
		for _, r := range list {
			id := r.ID()
			gauge(enabled, b2f(r.Enable), id)
			for _, st := range series.ResourceStatuses {
				gauge(status, b2f(r.Status == st), id, st)
			}
		}
	}
	resources(s.Connectors, descConnectorStatus, descConnectorEnable)
	resources(s.Actions, descActionStatus, descActionEnable)
	resources(s.Sources, descSourceStatus, descSourceEnable)
	for _, a := range s.Alarms {
		gauge(descAlarmActive, 1, a.Name, a.Node)
	}
	if f := s.AuthFailures; f != nil {
		counter(descConnectAuthErr, f.Connect)
		counter(descPublishAuthErr, f.Publish)
		counter(descSubAuthErr, f.Subscribe)
	}
	for _, b := range s.AuthBackends {
		enabled, connected := descAuthnEnabled, descAuthnConnected
		if b.Authorization {
			enabled, connected = descAuthzEnabled, descAuthzConnected
		}
		gauge(enabled, b2f(b.Enabled), b.ID)
		gauge(connected, b2f(b.Connected), b.ID)
	}
}

// Gather implements prometheus.Gatherer over the latest snapshot, building
// the families directly (package gather) rather than through a registry's
// checks and sorting. Families come in emission order and metrics in
// snapshot order. Each call builds afresh; the push gathers with a
// PushGatherer, which builds in the memory of its previous gathering.
func (e *Exporter) Gather() ([]*dto.MetricFamily, error) {
	var b gather.Builder
	return build(e.c.Latest(), &b), nil
}

// PushGatherer gathers the latest snapshot for the remote-write push as
// Exporter.Gather does, in the memory of its previous gathering: the
// families one Gather returns are valid until the next Gather. That suits
// one consumer done with them before it gathers again (the push encodes
// them at once), not a registry or a scrape.
type PushGatherer struct {
	c  *Collector
	mu sync.Mutex
	b  gather.Builder
}

// NewPushGatherer returns a PushGatherer over c's latest snapshot.
func NewPushGatherer(c *Collector) *PushGatherer { return &PushGatherer{c: c} }

// Gather implements prometheus.Gatherer; see PushGatherer for how long the
// families stay valid.
func (p *PushGatherer) Gather() ([]*dto.MetricFamily, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return build(p.c.Latest(), &p.b), nil
}

// build emits snapshot s (nil: none yet) into b.
func build(s *Snapshot, b *gather.Builder) []*dto.MetricFamily {
	hint := 16
	if s != nil {
		hint = seriesHint(s)
	}
	b.Reset(hint)
	emit(s, func(d *metricDesc, t prometheus.ValueType, v float64, l ...string) { b.Add(d.g, t, v, l...) })
	return b.Families()
}

// seriesHint estimates how many series a snapshot emits.
func seriesHint(s *Snapshot) int {
	return 19 + 2*len(s.Results) + 10*len(s.Nodes) + 6*len(s.Rules) +
		(1+len(series.ResourceStatuses))*(len(s.Connectors)+len(s.Actions)+len(s.Sources)) + len(s.Alarms) + 2*len(s.AuthBackends)
}
