package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/ecpio/ecp/agentproto/series"
)

// The series the dashboards read are named in agentproto/series, which the
// agent builds its metrics from; the tests check each appears in the agent's
// golden scrape against emqx-sim (or is ecp's own ecp_cluster_state).

// sel selects the chosen projects and clusters; every query uses it.
const sel = `project=~"$project", cluster=~"$cluster"`

func ptr[T any](v T) *T { return &v }

// datasource is the `datasource` variable every panel queries through.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}
}

// query is a range query drawn as time series.
func query(expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(datasource()).Expr(expr).LegendFormat(legend).Range()
}

// instant is an instant query shaped as a table.
func instant(expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(datasource()).Expr(expr).Instant().Format(prometheus.PromQueryFormatTable)
}

// maxConnections is each cluster's max connections: the dynamic one ecp
// applied, or the licence's own limit where there is none (the same
// choice as the EMQXConnectionsNearMax alert).
func maxConnections() string {
	return fmt.Sprintf("max by (project, cluster) (%s{%s} > 0)\n  or\nmax by (project, cluster) (%s{%s} > 0)",
		series.DynamicMaxConnections, sel, series.LicenseMaxConnections, sel)
}

// notConnected lists the enabled objects of one kind whose status is not
// connected (the same condition as the connector and action alerts).
func notConnected(status, enabled string) string {
	return fmt.Sprintf("max without (status) (%s{%s, status=\"connected\"}) == 0\nunless on (project, cluster, id) (%s{%s} == 0)",
		status, sel, enabled, sel)
}

// failingRules lists the enabled rules whose SQL or actions failed within
// the window (the same condition as the rule alert).
func failingRules(window string) string {
	return fmt.Sprintf("(\n  increase(%s{%s}[%s]) > 0\n    or\n  increase(%s{%s}[%s]) > 0\n)\nunless on (project, cluster, id) (%s{%s} == 0)",
		series.RuleFailed, sel, window, series.RuleActionsFailed, sel, window, series.RuleEnabled, sel)
}

func thresholds(steps ...dashboard.Threshold) *dashboard.ThresholdsConfigBuilder {
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(steps)
}

func step(v *float64, color string) dashboard.Threshold {
	return dashboard.Threshold{Value: v, Color: color}
}

// badAbove is green, then red from n on.
func badAbove(n float64) *dashboard.ThresholdsConfigBuilder {
	return thresholds(step(nil, "green"), step(ptr(n), "red"))
}

func statPanel(id uint32, title, desc string, w uint32, targets ...cog.Builder[variants.Dataquery]) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().Id(id).Title(title).Description(desc).Datasource(datasource()).
		Height(4).Span(w).GraphMode(common.BigValueGraphModeNone).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func seriesPanel(id uint32, title, desc, unit string, w uint32, targets ...cog.Builder[variants.Dataquery]) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Id(id).Title(title).Description(desc).Datasource(datasource()).
		Height(8).Span(w).Unit(unit).Min(0).FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().DisplayMode(common.LegendDisplayModeTable).Placement(common.LegendPlacementBottom).ShowLegend(true).Calcs([]string{"lastNotNull", "max"}))
	for _, t := range targets {
		p.WithTarget(t)
	}
	return p
}

func tablePanel(id uint32, title, desc string, w uint32, expr string) *table.PanelBuilder {
	return table.NewPanelBuilder().Id(id).Title(title).Description(desc).Datasource(datasource()).
		Height(8).Span(w).WithTarget(instant(expr)).
		// Instant tables carry a Time column and the value; the labels are
		// what the operator reads.
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true, "__name__": true, "job": true, "instance": true},
		}})
}

func row(id uint32, title string) *dashboard.RowBuilder {
	return dashboard.NewRowBuilder(title).Id(id)
}

// clusterLink opens a cluster's detail dashboard from a table row.
func clusterLink(p Params) []cog.Builder[dashboard.DashboardLink] {
	url := fmt.Sprintf("/d/%s?var-project=${__data.fields.project}&var-cluster=${__data.fields.cluster}&${datasource:queryparam}&${__url_time_range}",
		uidFor(uidCluster, p))
	return []cog.Builder[dashboard.DashboardLink]{dashboard.NewDashboardLinkBuilder("Cluster detail").Url(url)}
}
