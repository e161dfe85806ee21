package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/ecpio/ecp/agentproto/series"
)

// base is what every dashboard shares: time, refresh, tags, the links to
// the other ecp dashboards and the variables datasource, project and
// cluster (several clusters at once unless singleCluster).
func base(p Params, singleCluster bool) *dashboard.DashboardBuilder { //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	b := dashboard.NewDashboardBuilder("") //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	return b.
		Tags([]string{Tag}).
		Editable().
		Refresh("30s").
		Time("now-3h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Link(dashboard.NewDashboardLinkBuilder("ecp dashboards").Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{Tag}).AsDropdown(true).IncludeVars(true).KeepTime(true)).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(projectVariable(p)).
		WithVariable(clusterVariable(singleCluster))
}

// projectVariable lists the projects ecp reports clusters of. In a
// project's copy it offers that project only, preset and hidden.
func projectVariable(p Params) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder("project").Label("Project").
		Datasource(datasource()).
		Refresh(dashboard.VariableRefreshOnDashboardLoad).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if p.Project == "" {
		q := fmt.Sprintf("label_values(%s, project)", series.ClusterState)
		return v.Query(dashboard.StringOrMap{String: ptr(q)}).Definition(q).
			Multi(true).IncludeAll(true).AllValue(".*")
	}
	q := fmt.Sprintf("label_values(%s{project=%q}, project)", series.ClusterState, p.Project)
	opt := dashboard.VariableOption{Selected: ptr(true),
		Text: dashboard.StringOrArrayOfString{String: ptr(p.Project)}, Value: dashboard.StringOrArrayOfString{String: ptr(p.Project)}}
	return v.Query(dashboard.StringOrMap{String: ptr(q)}).Definition(q).
		Current(opt).Options([]dashboard.VariableOption{opt}).Hide(dashboard.VariableHideHideVariable)
}

// clusterVariable lists the clusters of the chosen projects (their ids:
// the value of the `cluster` label ecp stamps).
func clusterVariable(single bool) *dashboard.QueryVariableBuilder {
	q := fmt.Sprintf(`label_values(%s{project=~"$project"}, cluster)`, series.ClusterState)
	v := dashboard.NewQueryVariableBuilder("cluster").Label("Cluster").
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: ptr(q)}).Definition(q).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if single {
		return v
	}
	return v.Multi(true).IncludeAll(true).AllValue(".*")
}

// fleet is the overview of every chosen cluster: states, connections
// against max connections, and what is abnormal in data integration.
func fleet(p Params) *dashboard.DashboardBuilder { //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	byState := fmt.Sprintf("sum by (state) (max by (project, cluster, state) (%s{%s}))", series.ClusterState, sel)
	abnormal := fmt.Sprintf(`count(max by (project, cluster) (%s{%s, state="abnormal"})) or vector(0)`, series.ClusterState, sel)
	conns := fmt.Sprintf("sum by (project, cluster) (%s{%s})", series.NodeConnections, sel)
	return base(p, false).
		Description("Every managed EMQX cluster of the chosen projects: state as ecp sees it, connections against max connections, abnormal rules, connectors and actions.").
		WithRow(row(100, "Clusters")).
		WithPanel(statPanel(1, "Clusters by state", "Managed clusters in each state (created, registering, running, abnormal), from ecp's own ecp_cluster_state.", 12,
			query(byState, "{{state}}")).TextMode(common.BigValueTextModeValueAndName)).
		WithPanel(statPanel(2, "Abnormal clusters", "Clusters whose agent stopped reporting or cannot reach EMQX.", 4,
			query(abnormal, "abnormal")).Thresholds(badAbove(1)).ColorMode(common.BigValueColorModeBackground)).
		WithPanel(statPanel(3, "Connections", "Sessions on every chosen cluster (what the licence limit counts).", 4,
			query(fmt.Sprintf("sum(%s{%s})", series.NodeConnections, sel), "connections"))).
		WithPanel(statPanel(4, "Live connections", "Clients connected now on every chosen cluster.", 4,
			query(fmt.Sprintf("sum(%s{%s})", series.NodeLiveConnections, sel), "live"))).
		WithPanel(tablePanel(5, "Clusters not running", "Clusters in any state but running; the state reason is on the cluster's page in ecp.", 24,
			fmt.Sprintf(`max by (project, cluster, state) (%s{%s, state!="running"})`, series.ClusterState, sel)).
			DataLinks(clusterLink(p))).
		WithRow(row(101, "Connections")).
		WithPanel(seriesPanel(6, "Connections per cluster", "Sessions per cluster.", "short", 12,
			query(conns, "{{cluster}}"))).
		WithPanel(seriesPanel(7, "Share of max connections", "Sessions over each cluster's max connections (the dynamic limit ecp applied, else the licence's); new clients are refused at 100%.", "percentunit", 12,
			query(fmt.Sprintf("%s\n  / on (project, cluster)\n(\n%s\n)", conns, maxConnections()), "{{cluster}}")).
			Max(1).Thresholds(thresholds(step(nil, "green"), step(ptr(0.9), "orange"), step(ptr(1.0), "red"))).
			ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed))).
		WithPanel(tablePanel(8, "Connections and max connections", "Per cluster: sessions now and the max connections in force.", 24,
			fmt.Sprintf("label_replace(%s, \"what\", \"connections\", \"\", \"\")\n  or\nlabel_replace(%s, \"what\", \"max connections\", \"\", \"\")",
				conns, "("+maxConnections()+")")).
			DataLinks(clusterLink(p))).
		WithRow(row(102, "Data integration")).
		WithPanel(statPanel(9, "Rules stopped", "Rules that are disabled.", 6,
			query(fmt.Sprintf("count(%s{%s} == 0) or vector(0)", series.RuleEnabled, sel), "stopped"))).
		WithPanel(statPanel(10, "Rules failing", "Enabled rules whose SQL or actions failed in the last 5 minutes.", 6,
			query("count(\n"+failingRules("5m")+"\n) or vector(0)", "failing")).Thresholds(badAbove(1)).ColorMode(common.BigValueColorModeBackground)).
		WithPanel(statPanel(11, "Connectors not connected", "Enabled connectors whose status is not connected.", 6,
			query("count(\n"+notConnected(series.ConnectorStatus, series.ConnectorEnabled)+"\n) or vector(0)", "connectors")).Thresholds(badAbove(1)).ColorMode(common.BigValueColorModeBackground)).
		WithPanel(statPanel(12, "Actions not connected", "Enabled actions whose status is not connected.", 6,
			query("count(\n"+notConnected(series.ActionStatus, series.ActionEnabled)+"\n) or vector(0)", "actions")).Thresholds(badAbove(1)).ColorMode(common.BigValueColorModeBackground)).
		WithPanel(tablePanel(13, "Abnormal connectors", "Enabled connectors not connected, with their status.", 12,
			fmt.Sprintf("(%s{%s, status!=\"connected\"} == 1)\nunless on (project, cluster, id) (%s{%s} == 0)", series.ConnectorStatus, sel, series.ConnectorEnabled, sel)).
			DataLinks(clusterLink(p))).
		WithPanel(tablePanel(14, "Abnormal actions", "Enabled actions not connected, with their status.", 12,
			fmt.Sprintf("(%s{%s, status!=\"connected\"} == 1)\nunless on (project, cluster, id) (%s{%s} == 0)", series.ActionStatus, sel, series.ActionEnabled, sel)).
			DataLinks(clusterLink(p)))
}

// cluster is one cluster in detail: nodes, connections against max
// connections, licence, rule rates and the status of every connector,
// action and source.
func cluster(p Params) *dashboard.DashboardBuilder { //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	return base(p, true).
		Description("One managed EMQX cluster: nodes, connections and max connections, licence, rule rates, connectors, actions and sources, and the agent's own collection.").
		WithRow(row(100, "Cluster")).
		WithPanel(statPanel(1, "State", "The cluster's state in ecp.", 4,
			query(fmt.Sprintf("max by (state) (%s{%s})", series.ClusterState, sel), "{{state}}")).TextMode(common.BigValueTextModeName)).
		WithPanel(statPanel(2, "EMQX reachable", "Whether the agent's last collection reached EMQX's API and logged in.", 4,
			query(fmt.Sprintf("min(%s{%s})", series.Up, sel), "up")).Thresholds(thresholds(step(nil, "red"), step(ptr(1.0), "green"))).ColorMode(common.BigValueColorModeBackground)).
		WithPanel(statPanel(3, "Nodes running", "Running nodes of the cluster.", 4,
			query(fmt.Sprintf("sum(%s{%s})", series.NodeRunning, sel), "running"))).
		WithPanel(statPanel(4, "Nodes stopped", "Stopped nodes of the cluster.", 4,
			query(fmt.Sprintf("count(%s{%s} == 0) or vector(0)", series.NodeRunning, sel), "stopped")).Thresholds(badAbove(1)).ColorMode(common.BigValueColorModeBackground)).
		WithPanel(statPanel(5, "Max connections", "The dynamic max connections ecp applied, else the licence's limit.", 4,
			query(maxConnections(), "max"))).
		WithPanel(statPanel(6, "Licence expires in", "Time left before the licence expires.", 4,
			query(fmt.Sprintf("max(%s{%s}) - time()", series.LicenseExpiry, sel), "expires")).Unit("s").
			Thresholds(thresholds(step(nil, "red"), step(ptr(7*86400.0), "orange"), step(ptr(30*86400.0), "green")))).
		WithPanel(tablePanel(7, "Nodes", "Running nodes with version, edition and role.", 12,
			fmt.Sprintf("max by (node, version, edition, role) (%s{%s})", series.NodeInfo, sel))).
		WithPanel(tablePanel(8, "Node uptime", "Since when each running node's VM runs.", 12,
			fmt.Sprintf("time() - max by (node) (%s{%s})", series.NodeStartTime, sel)).Unit("s")).
		WithPanel(tablePanel(18, "EMQX alarms", "Alarms EMQX holds active, by name and node; the \"EMQX alert push\" switch alerts on them.", 24,
			fmt.Sprintf("max by (name, node) (%s{%s})", series.AlarmActive, sel))).
		WithRow(row(101, "Connections")).
		WithPanel(seriesPanel(9, "Connections", "Sessions and live connections of the cluster, and its max connections.", "short", 12,
			query(fmt.Sprintf("sum(%s{%s})", series.NodeConnections, sel), "sessions"),
			query(fmt.Sprintf("sum(%s{%s})", series.NodeLiveConnections, sel), "live"),
			query("max(\n"+maxConnections()+"\n)", "max connections"))).
		WithPanel(seriesPanel(10, "Connections per node", "Sessions per node.", "short", 12,
			query(fmt.Sprintf("sum by (node) (%s{%s})", series.NodeConnections, sel), "{{node}}"),
			query(fmt.Sprintf("sum by (node) (%s{%s})", series.NodeLiveConnections, sel), "{{node}} live"))).
		WithRow(row(105, "Node hosts")).
		WithPanel(seriesPanel(24, "CPU used per node", "CPU in use on each running node (EMQX's emqx_vm_cpu_use).", "percentunit", 8,
			query(fmt.Sprintf("max by (node) (%s{%s})", series.NodeCPUUsage, sel), "{{node}}")).Max(1)).
		WithPanel(seriesPanel(19, "Memory used per node", "Memory in use on each running node's host (memory_used over memory_total).", "percentunit", 8,
			query(fmt.Sprintf("max by (node) (%s{%s})\n  / on (node)\nmax by (node) (%s{%s})", series.NodeMemoryUsed, sel, series.NodeMemoryTotal, sel), "{{node}}")).Max(1)).
		WithPanel(seriesPanel(20, "Load per node", "OS load averages of each running node's host over 1, 5 and 15 minutes.", "short", 8,
			query(fmt.Sprintf("max by (node) (%s{%s})", series.NodeLoad1, sel), "{{node}} 1m"),
			query(fmt.Sprintf("max by (node) (%s{%s})", series.NodeLoad5, sel), "{{node}} 5m"),
			query(fmt.Sprintf("max by (node) (%s{%s})", series.NodeLoad15, sel), "{{node}} 15m"))).
		WithRow(row(106, "Authentication and authorization")).
		WithPanel(seriesPanel(21, "Refused by authentication or authorization", "CONNECTs refused, and PUBLISHes and SUBSCRIBEs denied, per second.", "ops", 24,
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.ConnectAuthFailures, sel), "connect"),
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.PublishAuthFailures, sel), "publish"),
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.SubscribeAuthFailures, sel), "subscribe"))).
		WithPanel(tablePanel(22, "Authenticators", "Every authenticator: 1 when connected on every node.", 12,
			fmt.Sprintf("max by (id) (%s{%s})", series.AuthnConnected, sel))).
		WithPanel(tablePanel(23, "Authorization sources", "Every authorization source (by type): 1 when connected on every node.", 12,
			fmt.Sprintf("max by (id) (%s{%s})", series.AuthzConnected, sel))).
		WithRow(row(102, "Rules")).
		WithPanel(seriesPanel(11, "Rule messages", "Messages matched, passed and failed by every rule of the cluster.", "ops", 12,
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.RuleMatched, sel), "matched"),
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.RulePassed, sel), "passed"),
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.RuleFailed, sel), "failed"))).
		WithPanel(seriesPanel(12, "Rule actions", "Action runs of every rule of the cluster, successful and failed.", "ops", 12,
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.RuleActionsSuccess, sel), "success"),
			query(fmt.Sprintf("sum(rate(%s{%s}[$__rate_interval]))", series.RuleActionsFailed, sel), "failed"))).
		WithRow(row(103, "Connectors, actions and sources")).
		WithPanel(tablePanel(13, "Connectors", "Every connector's status and whether it is enabled.", 8,
			fmt.Sprintf("max by (id, status) (%s{%s} == 1)", series.ConnectorStatus, sel))).
		WithPanel(tablePanel(14, "Actions", "Every action's status.", 8,
			fmt.Sprintf("max by (id, status) (%s{%s} == 1)", series.ActionStatus, sel))).
		WithPanel(tablePanel(15, "Sources", "Every source's status.", 8,
			fmt.Sprintf("max by (id, status) (%s{%s} == 1)", series.SourceStatus, sel))).
		WithRow(row(104, "Agent")).
		WithPanel(seriesPanel(16, "Collection success", "Whether each of the agent's sub-collectors succeeded in its last collection.", "short", 12,
			query(fmt.Sprintf("min by (collector) (%s{%s})", series.CollectorSuccess, sel), "{{collector}}")).Max(1)).
		WithPanel(seriesPanel(17, "Collection duration", "How long each of the agent's sub-collectors took.", "s", 12,
			query(fmt.Sprintf("max by (collector) (%s{%s})", series.CollectorDuration, sel), "{{collector}}")))
}

// dataIntegration shows rules, connectors and actions one by one. //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
func dataIntegration(p Params) *dashboard.DashboardBuilder { //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	perRule := func(series string) string {
		return fmt.Sprintf("sum by (cluster, id) (rate(%s{%s}[$__rate_interval]))", series, sel)
	}
	return base(p, false).
		Description("Rules, connectors, actions and sources of the chosen clusters, one by one.").
		WithRow(row(100, "Rules")).
		WithPanel(seriesPanel(1, "Matched per rule", "Messages each rule's SQL matched.", "ops", 12, query(perRule(series.RuleMatched), "{{cluster}} {{id}}"))).
		WithPanel(seriesPanel(2, "Failed per rule", "Messages each rule's SQL failed on.", "ops", 12, query(perRule(series.RuleFailed), "{{cluster}} {{id}}"))).
		WithPanel(seriesPanel(3, "Passed per rule", "Messages that passed each rule's SQL.", "ops", 12, query(perRule(series.RulePassed), "{{cluster}} {{id}}"))).
		WithPanel(seriesPanel(4, "Action failures per rule", "Failed action runs of each rule.", "ops", 12, query(perRule(series.RuleActionsFailed), "{{cluster}} {{id}}"))).
		WithPanel(tablePanel(5, "Rules failing", "Enabled rules whose SQL or actions failed in the last 5 minutes, with the count.", 12,
			"sum by (project, cluster, id) (\n"+failingRules("5m")+"\n)").DataLinks(clusterLink(p))).
		WithPanel(tablePanel(6, "Rules stopped", "Rules that are disabled.", 12,
			fmt.Sprintf("max by (project, cluster, id) (%s{%s} == 0)", series.RuleEnabled, sel)).DataLinks(clusterLink(p))).
		WithRow(row(101, "Connectors")).
		WithPanel(seriesPanel(7, "Connectors not connected", "Enabled connectors whose status is not connected, per cluster.", "short", 12,
			query("count by (cluster) (\n"+notConnected(series.ConnectorStatus, series.ConnectorEnabled)+"\n)", "{{cluster}}"))).
		WithPanel(tablePanel(8, "Connector status", "Every connector of the chosen clusters with its status.", 12,
			fmt.Sprintf("max by (project, cluster, id, status) (%s{%s} == 1)", series.ConnectorStatus, sel)).DataLinks(clusterLink(p))).
		WithRow(row(102, "Actions")).
		WithPanel(seriesPanel(9, "Actions not connected", "Enabled actions whose status is not connected, per cluster.", "short", 12,
			query("count by (cluster) (\n"+notConnected(series.ActionStatus, series.ActionEnabled)+"\n)", "{{cluster}}"))).
		WithPanel(tablePanel(10, "Action status", "Every action of the chosen clusters with its status.", 12,
			fmt.Sprintf("max by (project, cluster, id, status) (%s{%s} == 1)", series.ActionStatus, sel)).DataLinks(clusterLink(p))).
		WithRow(row(103, "Sources")).
		WithPanel(tablePanel(11, "Source status", "Every source of the chosen clusters with its status.", 24,
			fmt.Sprintf("max by (project, cluster, id, status) (%s{%s} == 1)", series.SourceStatus, sel)).DataLinks(clusterLink(p)))
}
