package rules

// Series the generated rules read. This is the one place their names live:
// the agent, ecp's own metrics and these rules must agree on them.
//
// Agent-exported series keep EMQX's own names and labels from
// /api/v5/prometheus/data_integration and /api/v5/prometheus/stats (see
// shared/emqx-api.md), so a dashboard built on EMQX's endpoints reads them
// unchanged. ecp stamps every agent sample with `project` and `cluster` on
// remote write (overwriting whatever the agent sent); a `node` label may be
// present when the agent exports per-node values. The rules never depend on
// `job` or `instance`, which differ between pull and push.
//
//	emqx_rule_enable{id}               gauge 1/0: the rule is enabled
//	emqx_rule_failed{id}               counter: failed executions (exception + no result)
//	emqx_rule_actions_failed{id}       counter: failed actions of the rule
//	emqx_connector_enable{id}          gauge 1/0, id = "type:name"
//	emqx_connector_status{id}          gauge: 1 connected, 0 anything else
//	emqx_action_enable{id}             gauge 1/0, id = "type:name"
//	emqx_action_status{id}             gauge: 1 connected, 0 anything else
//	emqx_cluster_nodes_stopped         gauge: nodes the cluster sees as stopped
//	emqx_connections_count             gauge: connections (sessions), per node or per cluster, not both
//	emqx_alarm_active{name}            gauge 1 while EMQX's own alarm `name` is active (/api/v5/alarms)
//
// ecp's own series (scraped from ecp's /metrics; one per cluster, carrying
// `project` and `cluster` because ecp is the one that knows them; with
// several ecp replicas the rules take the max across instances):
//
//	ecp_cluster_state{project,cluster,state}      gauge: 1 for the cluster's current state, 0 for the others
//	ecp_cluster_max_connections{project,cluster}  gauge: max connections ecp assigned to the cluster
const (
	SeriesRuleEnable          = "emqx_rule_enable"
	SeriesRuleFailed          = "emqx_rule_failed"
	SeriesRuleActionsFailed   = "emqx_rule_actions_failed"
	SeriesConnectorEnable     = "emqx_connector_enable"
	SeriesConnectorStatus     = "emqx_connector_status"
	SeriesActionEnable        = "emqx_action_enable"
	SeriesActionStatus        = "emqx_action_status"
	SeriesClusterNodesStopped = "emqx_cluster_nodes_stopped"
	SeriesConnections         = "emqx_connections_count"
	SeriesAlarmActive         = "emqx_alarm_active"
	SeriesClusterState        = "ecp_cluster_state"
	SeriesMaxConnections      = "ecp_cluster_max_connections"
)

// Labels the rules match and group on.
const (
	LabelProject  = "project"
	LabelCluster  = "cluster"
	LabelID       = "id"
	LabelState    = "state"
	LabelSeverity = "severity"
	// StateAbnormal is the value of ecp_cluster_state's state label that
	// makes EMQXClusterAbnormal fire.
	StateAbnormal = "abnormal"
)
