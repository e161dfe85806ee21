package collector

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ecpio/ecp/agent-exporter/emqx"
)

// ResourceStatuses are the aggregated statuses EMQX gives connectors,
// actions and sources; each is one series of the *_status state set.
var ResourceStatuses = []string{"connected", "connecting", "disconnected", "stopped", "inconsistent"}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descUp             = desc("emqx_up", "Whether the last collection reached EMQX's API and logged in (1) or not (0).")
	descCollectionTime = desc("emqx_last_collection_timestamp_seconds", "When the snapshot served here was collected, as a Unix time.")
	descDuration       = desc("emqx_scrape_collector_duration_seconds", "How long a sub-collector took in the last collection.", "collector")
	descSuccess        = desc("emqx_scrape_collector_success", "Whether a sub-collector succeeded in the last collection.", "collector")

	descNodeInfo        = desc("emqx_node_info", "EMQX node, with its version, edition and role; always 1.", "node", "version", "edition", "role")
	descNodeRunning     = desc("emqx_node_running", "Whether the node is running (1) or stopped (0).", "node")
	descNodeStart       = desc("emqx_node_start_time_seconds", "When the running node's VM started, as a Unix time.", "node")
	descNodeConns       = desc("emqx_node_connections", "Sessions on the node, including disconnected persistent sessions.", "node")
	descNodeLiveConns   = desc("emqx_node_live_connections", "Clients connected to the node.", "node")
	descLicenseMax      = desc("emqx_license_max_connections", "Effective connection limit of the licence (max_sessions from 5.8.5, else max_connections).")
	descLicenseExpiry   = desc("emqx_license_expiry_timestamp_seconds", "When the licence expires (00:00 UTC of expiry_at), as a Unix time.")
	descLicenseInfo     = desc("emqx_license_info", "Loaded licence, with its type and customer type; always 1.", "type", "customer_type")
	descLicenseDynamic  = desc("emqx_license_dynamic_max_connections", "dynamic_max_connections of a business-critical licence.")
	descRuleEnabled     = desc("emqx_rule_enabled", "Whether the rule is enabled (running) or not.", "id")
	descRuleMatched     = desc("emqx_rule_matched_total", "Messages the rule's SQL matched.", "id")
	descRulePassed      = desc("emqx_rule_passed_total", "Messages that passed the rule's SQL.", "id")
	descRuleFailed      = desc("emqx_rule_failed_total", "Messages the rule's SQL failed on.", "id")
	descRuleActOK       = desc("emqx_rule_actions_success_total", "Successful action runs of the rule.", "id")
	descRuleActFailed   = desc("emqx_rule_actions_failed_total", "Failed action runs of the rule.", "id")
	descConnectorStatus = desc("emqx_connector_status", "Aggregated status of the connector, one series per status.", "id", "status")
	descConnectorEnable = desc("emqx_connector_enabled", "Whether the connector is enabled.", "id")
	descActionStatus    = desc("emqx_action_status", "Aggregated status of the action, one series per status.", "id", "status")
	descActionEnable    = desc("emqx_action_enabled", "Whether the action is enabled.", "id")
	descSourceStatus    = desc("emqx_source_status", "Aggregated status of the source, one series per status.", "id", "status")
	descSourceEnable    = desc("emqx_source_enabled", "Whether the source is enabled.", "id")
)

// Exporter serves the latest snapshot as Prometheus metrics. A scrape never
// calls EMQX.
type Exporter struct {
	c *Collector
}

// NewExporter returns a prometheus.Collector over c's latest snapshot.
func NewExporter(c *Collector) *Exporter { return &Exporter{c: c} }

// Describe implements prometheus.Collector.
func (e *Exporter) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descUp, descCollectionTime, descDuration, descSuccess, descNodeInfo, descNodeRunning, descNodeStart,
		descNodeConns, descNodeLiveConns, descLicenseMax, descLicenseExpiry, descLicenseInfo, descLicenseDynamic,
		descRuleEnabled, descRuleMatched, descRulePassed, descRuleFailed, descRuleActOK, descRuleActFailed,
		descConnectorStatus, descConnectorEnable, descActionStatus, descActionEnable, descSourceStatus, descSourceEnable,
	} {
		ch <- d
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
	s := e.c.Latest()
	if s == nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
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
	resources := func(list []emqx.Resource, status, enabled *prometheus.Desc) {
		for _, r := range list {
			id := r.ID()
			gauge(enabled, b2f(r.Enable), id)
			for _, st := range ResourceStatuses {
				gauge(status, b2f(r.Status == st), id, st)
			}
		}
	}
	resources(s.Connectors, descConnectorStatus, descConnectorEnable)
	resources(s.Actions, descActionStatus, descActionEnable)
	resources(s.Sources, descSourceStatus, descSourceEnable)
}
