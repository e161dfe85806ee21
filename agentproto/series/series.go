// Package series names the Prometheus series that cross from agent-exporter
// to ecp: what the agent exports (at /metrics and by remote write through
// ecp) and what ecp's alert rules (rules/) and Grafana dashboards
// (dashboards/) read. It is the one place these names live; the agent
// builds its metrics from them and the readers select on them, so a rename
// is a compile-time change on both sides. It imports nothing, like the rest
// of the wire contract.
//
// ecp stamps every agent sample with LabelProject and LabelCluster on remote
// write (overwriting whatever the agent sent); the agent never exports them.
// Nothing reads `job` or `instance`, which differ between pull and push.
// The collector's golden /metrics output against emqx-sim
// (agent-exporter/collector/testdata) is the proof: the rules' and
// dashboards' tests check every series they read appears there.
package series

// The agent's own health, per collection.
const (
	// Up is 1 when the last collection reached EMQX's API and logged in.
	Up = "emqx_up"
	// CollectionTime is when the served snapshot was collected.
	CollectionTime = "emqx_last_collection_timestamp_seconds"
	// CollectorDuration and CollectorSuccess are per sub-collector
	// (LabelCollector).
	CollectorDuration = "emqx_scrape_collector_duration_seconds"
	CollectorSuccess  = "emqx_scrape_collector_success"
)

// Nodes and licence.
const (
	NodeInfo            = "emqx_node_info"    // {node, version, edition, role} always 1
	NodeRunning         = "emqx_node_running" // {node} 1 running, 0 stopped
	NodeStartTime       = "emqx_node_start_time_seconds"
	NodeConnections     = "emqx_node_connections" // {node} sessions: what the licence limit counts
	NodeLiveConnections = "emqx_node_live_connections"
	// NodeLoad1, NodeLoad5 and NodeLoad15 are the running node's OS
	// load averages (GET /api/v5/nodes load1, load5, load15).
	NodeLoad1  = "emqx_node_load1"
	NodeLoad5  = "emqx_node_load5"
	NodeLoad15 = "emqx_node_load15"
	// NodeCPUUsage is the running node's CPU usage as a ratio, 0 to 1:
	// EMQX's emqx_vm_cpu_use (a percentage) of GET
	// /api/v5/prometheus/stats, divided by 100.
	NodeCPUUsage = "emqx_node_cpu_usage_ratio"
	// NodeMemoryTotal and NodeMemoryUsed are the running node's memory
	// (memory_total, memory_used), read from EMQX's "15.52G" strings.
	NodeMemoryTotal = "emqx_node_memory_total_bytes"
	NodeMemoryUsed  = "emqx_node_memory_used_bytes"
	// LicenseMaxConnections is the licence's effective limit, used when
	// there is no dynamic one.
	LicenseMaxConnections = "emqx_license_max_connections"
	LicenseExpiry         = "emqx_license_expiry_timestamp_seconds"
	LicenseInfo           = "emqx_license_info" // {type, customer_type} always 1
	// DynamicMaxConnections is the max connections ecp applied
	// (business-critical licences).
	DynamicMaxConnections = "emqx_license_dynamic_max_connections"
)

// Per-object series; an object is one LabelID under one of the prefixes
// below, which is how the agent's push selection tells objects apart.
const (
	PrefixRule      = "emqx_rule_"
	PrefixConnector = "emqx_connector_"
	PrefixAction    = "emqx_action_"
	PrefixSource    = "emqx_source_"

	RuleEnabled        = PrefixRule + "enabled" // gauge 1/0: the rule runs
	RuleMatched        = PrefixRule + "matched_total"
	RulePassed         = PrefixRule + "passed_total"
	RuleFailed         = PrefixRule + "failed_total" // messages the rule's SQL failed on
	RuleActionsSuccess = PrefixRule + "actions_success_total"
	RuleActionsFailed  = PrefixRule + "actions_failed_total"

	// *Status are state sets: {id, status} is 1 on the current status
	// (one of ResourceStatuses); *Enabled are 1/0. Connector and action
	// ids are "type:name".
	ConnectorStatus  = PrefixConnector + "status"
	ConnectorEnabled = PrefixConnector + "enabled"
	ActionStatus     = PrefixAction + "status"
	ActionEnabled    = PrefixAction + "enabled"
	SourceStatus     = PrefixSource + "status"
	SourceEnabled    = PrefixSource + "enabled"
)

// Authentication and authorization refusals, cluster-wide counters (GET
// /api/v5/metrics?aggregate=true, named as EMQX's own Prometheus
// endpoint names them): CONNECTs refused for bad credentials or
// authorization (packets.connack.auth_error), PUBLISHes and SUBSCRIBEs
// denied by authorization (packets.publish.auth_error,
// packets.subscribe.auth_error).
const (
	ConnectAuthFailures   = "emqx_packets_connack_auth_error_total"
	PublishAuthFailures   = "emqx_packets_publish_auth_error_total"
	SubscribeAuthFailures = "emqx_packets_subscribe_auth_error_total"
)

// Authenticators and authorization sources (GET /api/v5/prometheus/auth),
// by LabelID: an authenticator's "mechanism:backend" id, an authorization
// source's type. *Enabled is 1/0; *Connected is 1 when the backend is
// connected on every node, 0 otherwise.
const (
	AuthnEnabled   = "emqx_authn_enabled"
	AuthnConnected = "emqx_authn_connected"
	AuthzEnabled   = "emqx_authz_enabled"
	AuthzConnected = "emqx_authz_connected"
)

// AlarmActive is 1 for each alarm EMQX holds active (GET /api/v5/alarms),
// labelled LabelName and LabelNode; an alarm that clears disappears. The
// "EMQX alert push" switch turns on the alert that reads it.
const AlarmActive = "emqx_alarm_active"

// MaxAlarms bounds the AlarmActive series of one collection: EMQX names its
// alarms itself (some carry a resource id), so their number is not ours to
// trust. Alarms past the bound are dropped, the first ones kept.
const MaxAlarms = 100

// ClusterState is ecp's own series (ecp's /metrics, not the agent's):
// {project, cluster, state} is 1 on the cluster's current state. Every ecp
// replica exports the same value.
const ClusterState = "ecp_cluster_state"

// Label names.
const (
	LabelProject      = "project" // stamped by ecp
	LabelCluster      = "cluster" // stamped by ecp
	LabelID           = "id"
	LabelNode         = "node"
	LabelName         = "name"
	LabelStatus       = "status"
	LabelState        = "state"
	LabelCollector    = "collector"
	LabelVersion      = "version"
	LabelEdition      = "edition"
	LabelRole         = "role"
	LabelType         = "type"
	LabelCustomerType = "customer_type"
)

// Label values readers match on.
const (
	// StatusConnected is the one healthy status of connectors, actions
	// and sources.
	StatusConnected = "connected"
	// StateAbnormal is the ClusterState state that makes the cluster
	// alert fire.
	StateAbnormal = "abnormal"
)

// ResourceStatuses are the aggregated statuses EMQX gives connectors,
// actions and sources; each is one series of the *Status state sets.
var ResourceStatuses = []string{StatusConnected, "connecting", "disconnected", "stopped", "inconsistent"}
