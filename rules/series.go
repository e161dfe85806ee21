package rules

// Series the generated rules read. This is the one place their names live:
// the agent (agent-exporter/collector/metrics.go), ecp's own metrics
// (ecp/fleet) and these rules must agree on them.
//
// ecp stamps every agent sample with `project` and `cluster` on remote write
// (overwriting whatever the agent sent). The rules never depend on `job` or
// `instance`, which differ between pull and push.
//
//	emqx_rule_enabled{id}                    gauge 1/0: the rule is enabled
//	emqx_rule_failed_total{id}               counter: messages the rule's SQL failed on
//	emqx_rule_actions_failed_total{id}       counter: failed action runs of the rule
//	emqx_connector_enabled{id}               gauge 1/0, id = "type:name"
//	emqx_connector_status{id,status}         state set: 1 on the current status (connected, connecting, disconnected, stopped, inconsistent)
//	emqx_action_enabled{id}                  gauge 1/0
//	emqx_action_status{id,status}            state set, as for connectors
//	emqx_node_running{node}                  gauge: 1 running, 0 stopped
//	emqx_node_connections{node}              gauge: sessions on the node (what the licence limit counts)
//	emqx_license_dynamic_max_connections     gauge: the max connections ecp applied (business-critical licences)
//	emqx_license_max_connections             gauge: the licence's effective limit, used when there is no dynamic one
//	emqx_alarm_active{name}                  gauge 1 while EMQX's own alarm `name` is active (/api/v5/alarms); EMQXAlarm only
//
// ecp's own series, scraped from ecp's /metrics (every replica exports the
// same value, so the rule takes the max across instances):
//
//	ecp_cluster_state{project,cluster,state}  gauge: 1 on the cluster's current state
const (
	SeriesRuleEnabled           = "emqx_rule_enabled"
	SeriesRuleFailed            = "emqx_rule_failed_total"
	SeriesRuleActionsFailed     = "emqx_rule_actions_failed_total"
	SeriesConnectorEnabled      = "emqx_connector_enabled"
	SeriesConnectorStatus       = "emqx_connector_status"
	SeriesActionEnabled         = "emqx_action_enabled"
	SeriesActionStatus          = "emqx_action_status"
	SeriesNodeRunning           = "emqx_node_running"
	SeriesNodeConnections       = "emqx_node_connections"
	SeriesDynamicMaxConnections = "emqx_license_dynamic_max_connections"
	SeriesLicenseMaxConnections = "emqx_license_max_connections"
	SeriesAlarmActive           = "emqx_alarm_active"
	SeriesClusterState          = "ecp_cluster_state"
)

// Labels and values the rules match and group on.
const (
	LabelProject  = "project"
	LabelCluster  = "cluster"
	LabelID       = "id"
	LabelNode     = "node"
	LabelState    = "state"
	LabelStatus   = "status"
	LabelSeverity = "severity"
	// StateAbnormal is the value of ecp_cluster_state's state label that
	// makes EMQXClusterAbnormal fire.
	StateAbnormal = "abnormal"
	// StatusConnected is the one healthy status of connectors and actions.
	StatusConnected = "connected"
)
