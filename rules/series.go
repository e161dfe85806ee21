package rules

import "github.com/ecpio/ecp/agentproto/series"

// The series the generated rules read are named in agentproto/series, the
// one place the agent (which exports them), these rules and the dashboards
// take them from. TestRulesReadOnlyExportedSeries proves each appears in
// the agent's golden scrape against emqx-sim.
//
// Labels the rules and ecp's alert routing group and match on; project and
// cluster are stamped by ecp on every agent sample.
const (
	LabelProject  = series.LabelProject
	LabelCluster  = series.LabelCluster
	LabelSeverity = "severity"
)
