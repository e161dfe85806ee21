// Package rules holds, as code, the Prometheus alerting rules ecp generates
// for each project: the alert kinds, their PromQL, labels and annotations,
// and the file shape Prometheus 2.42 loads.
//
// Trigger and recovery counts become durations: an alert fires on the N-th
// consecutive bad evaluation (`for: (N-1)×interval`) and resolves on the
// M-th consecutive good one (`keep_firing_for: (M-1)×interval`); a count of
// 1 leaves the field out (shared/research/prom-stack.md verified both on
// 2.42). testdata/ holds a `promtool test rules` case per alert kind that
// shows it with counts 1 and 3.
//
// The shape is Prometheus 2.42's: no group `labels`, no `query_offset`,
// classic label names. File has exactly the fields 2.42's rulefmt knows.
package rules

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/agentproto/series"
)

// Alert names, one per kind. CamelCase with a shared EMQX prefix, as the
// monitoring-mixins style guide asks.
const (
	AlertRuleAbnormal      = "EMQXRuleAbnormal"
	AlertConnectorAbnormal = "EMQXConnectorAbnormal"
	AlertActionAbnormal    = "EMQXActionAbnormal"
	AlertClusterAbnormal   = "EMQXClusterAbnormal"
	AlertNodeDown          = "EMQXNodeDown"
	AlertConnectionsNear   = "EMQXConnectionsNearMax"
	AlertEMQXAlarm         = "EMQXAlarm"
	AlertLicenseExpiring   = "EMQXLicenseExpiring"
	AlertLicenseUsageHigh  = "EMQXLicenseUsageHigh"
	AlertRuleFailures      = "EMQXRuleFailuresIncreasing"
	AlertActionFailures    = "EMQXActionFailuresIncreasing"

	AlertNodeCPUHigh           = "EMQXNodeCPUHigh"
	AlertNodeMemoryHigh        = "EMQXNodeMemoryHigh"
	AlertNodeLoadHigh          = "EMQXNodeLoadHigh"
	AlertRuleRateDrop          = "EMQXRuleRateDropped"
	AlertConnectAuthFailures   = "EMQXConnectAuthFailuresIncreasing"
	AlertPublishAuthFailures   = "EMQXPublishAuthFailuresIncreasing"
	AlertSubscribeAuthFailures = "EMQXSubscribeAuthFailuresIncreasing"
	AlertAuthnAbnormal         = "EMQXAuthenticatorAbnormal"
	AlertAuthzAbnormal         = "EMQXAuthorizationSourceAbnormal"
)

// Annotation keys every generated alert carries.
const (
	AnnotationSummary     = "summary"
	AnnotationDescription = "description"
	// AnnotationLink points back to the cluster's page in ecp's console.
	AnnotationLink = "link"
	// AnnotationClusterName, AnnotationProjectName and
	// AnnotationOrganizationName are the names people gave the cluster,
	// its project and their organization: what an on-call person reads.
	// They are annotations, not labels, so that a rename changes what the
	// next notification says without making the alert a new one (labels
	// are its identity). The ids stay labels, for routing and links.
	AnnotationClusterName      = "cluster_name"
	AnnotationProjectName      = "project_name"
	AnnotationOrganizationName = "organization_name"
)

// ClusterLinkPath is the console path of a cluster's page, appended to the
// external URL; %s is the cluster id (a template reading $labels.cluster).
const ClusterLinkPath = "/clusters/%s"

// DefaultInterval is the evaluation interval when Params.Interval is zero.
const DefaultInterval = 15 * time.Second

// MaxCount bounds trigger and recovery counts.
const MaxCount = 100

// projectIDPattern keeps a project id safe as a PromQL string, a label
// value, a YAML scalar and a file name.
var projectIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidProjectID reports whether id can name a project in rules, routes and
// file names.
func ValidProjectID(id string) bool { return projectIDPattern.MatchString(id) }

// Params are what one project's rule group is rendered from.
type Params struct {
	// Project is the project id every rule selects on.
	Project string
	// Interval is the group's evaluation interval; the agent's collection
	// interval is the natural choice, so that each evaluation sees a new
	// sample. Zero means DefaultInterval.
	Interval time.Duration
	// TriggerCount and RecoveryCount are the consecutive bad and good
	// evaluations needed to fire and to resolve (1..MaxCount), for every
	// entry of Rules that sets none of its own.
	TriggerCount  int
	RecoveryCount int
	// Severity is the severity label of the alerts of every entry of Rules
	// that sets none of its own.
	Severity string
	// Rules are the catalogue entries switched on, by id (see Catalogue);
	// an entry not in the map renders nothing.
	Rules map[string]RuleParams
	// ExternalURL is ecp's own URL as users reach it, for the link back.
	ExternalURL string
	// ProjectName and OrganizationName are the names the alerts carry;
	// an empty ProjectName falls back to the id, an empty
	// OrganizationName leaves its annotation out.
	ProjectName      string
	OrganizationName string
	// Clusters are the project's clusters now. Every rule selects only
	// these, so that a cluster deleted or transferred away stops alerting
	// in this project at the next evaluation after the file is rewritten,
	// rather than when its last samples leave Prometheus' five-minute
	// lookback; and each alert names its cluster from this list. None
	// means the project has no cluster, and nothing can fire.
	Clusters []Cluster
}

// Cluster is one managed cluster of a project: its id (the cluster label)
// and the name people gave it.
type Cluster struct {
	ID   string
	Name string
}

// File is a Prometheus rule file.
type File struct {
	Groups []Group `yaml:"groups"`
}

// Group is a rule group with exactly the fields Prometheus 2.42 accepts.
type Group struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval"`
	Rules    []Rule `yaml:"rules"`
}

// Rule is an alerting rule with exactly the fields Prometheus 2.42 accepts.
type Rule struct {
	Alert         string            `yaml:"alert"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for,omitempty"`
	KeepFiringFor string            `yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// kind is one alert kind: its name, what it says and how it selects.
type kind struct {
	// entry is the catalogue entry that switches the kind on.
	entry       string
	alert       string
	summary     string
	description string
	expr        func(sel string, p Params, rp RuleParams) string
}

// kinds lists every alert kind in the order they appear in a file.
var kinds = []kind{
	{
		entry:   CatalogueClusterStatus,
		alert:   AlertClusterAbnormal,
		summary: "EMQX cluster {{ $labels.cluster }} is abnormal.",
		description: "Cluster {{ $labels.cluster }} of project {{ $labels.project }} is abnormal: " +
			"its agent stopped reporting or cannot reach EMQX. The cluster page shows the reason.",
		expr: func(sel string, _ Params, _ RuleParams) string {
			// max across ecp replicas, which all export the same state.
			return fmt.Sprintf(`max by (%s, %s) (%s{%s, %s=%q}) == 1`,
				LabelProject, LabelCluster, series.ClusterState, sel, series.LabelState, series.StateAbnormal)
		},
	},
	{
		entry:   CatalogueNodeDown,
		alert:   AlertNodeDown,
		summary: "EMQX node {{ $labels.node }} is down in cluster {{ $labels.cluster }}.",
		description: "EMQX node {{ $labels.node }} of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"is stopped.",
		expr: func(sel string, _ Params, _ RuleParams) string {
			return fmt.Sprintf(`%s{%s} == 0`, series.NodeRunning, sel)
		},
	},
	{
		entry:   CatalogueLicenseExpiry,
		alert:   AlertLicenseExpiring,
		summary: "The EMQX licence of cluster {{ $labels.cluster }} expires soon.",
		description: "The EMQX licence of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"expires in {{ $value | humanizeDuration }}" + thresholdToken + ".",
		expr: func(sel string, _ Params, rp RuleParams) string {
			// Seconds left; an expiry of 0 is one the agent could not
			// read, not a licence that expired in 1970.
			return fmt.Sprintf(`(%s{%s} > 0) - time() <= %s`,
				series.LicenseExpiry, sel, number(rp.Threshold*86400))
		},
	},
	{
		entry:   CatalogueLicenseUsage,
		alert:   AlertLicenseUsageHigh,
		summary: "EMQX cluster {{ $labels.cluster }} uses most of its licence's connections.",
		description: "Cluster {{ $labels.cluster }} in project {{ $labels.project }} uses " +
			"{{ $value | humanizePercentage }} of the connections its licence allows" + thresholdToken + ".",
		expr: func(sel string, _ Params, rp RuleParams) string {
			return fmt.Sprintf("sum by (%[1]s, %[2]s) (%[3]s{%[5]s})\n"+
				"  / on (%[1]s, %[2]s)\n"+
				"max by (%[1]s, %[2]s) (%[4]s{%[5]s} > 0)\n"+
				"  > %[6]s",
				LabelProject, LabelCluster, series.NodeConnections, series.LicenseMaxConnections, sel, number(rp.Threshold/100))
		},
	},
	{
		entry:   CatalogueConnections,
		alert:   AlertConnectionsNear,
		summary: "EMQX cluster {{ $labels.cluster }} is near its max connections.",
		description: "Cluster {{ $labels.cluster }} in project {{ $labels.project }} uses " +
			"{{ $value | humanizePercentage }} of its max connections; " +
			"new clients are refused at 100%.",
		expr: func(sel string, _ Params, rp RuleParams) string {
			// The dynamic max connections is what ecp applied; without
			// one (other licence types) the licence's own limit counts.
			return fmt.Sprintf("sum by (%[1]s, %[2]s) (%[3]s{%[6]s})\n"+
				"  / on (%[1]s, %[2]s)\n"+
				"(\n"+
				"  max by (%[1]s, %[2]s) (%[4]s{%[6]s} > 0)\n"+
				"    or\n"+
				"  max by (%[1]s, %[2]s) (%[5]s{%[6]s} > 0)\n"+
				")\n"+
				"  > %[7]s",
				LabelProject, LabelCluster, series.NodeConnections, series.DynamicMaxConnections,
				series.LicenseMaxConnections, sel, number(rp.Threshold/100))
		},
	},
	{
		entry:   CatalogueRuleAbnormal,
		alert:   AlertRuleAbnormal,
		summary: "EMQX rule {{ $labels.id }} is failing in cluster {{ $labels.cluster }}.",
		description: "Rule {{ $labels.id }} on cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			`had {{ $value | printf "%.0f" }} failed executions or actions in the last ` + windowToken + ".",
		expr: func(sel string, p Params, _ RuleParams) string {
			return fmt.Sprintf("(\n"+
				"  increase(%[1]s{%[4]s}[%[5]s]) > 0\n"+
				"    or\n"+
				"  increase(%[2]s{%[4]s}[%[5]s]) > 0\n"+
				")\n"+
				"unless on (%[6]s, %[7]s, %[8]s) (%[3]s{%[4]s} == 0)",
				series.RuleFailed, series.RuleActionsFailed, series.RuleEnabled, sel, window(p),
				LabelProject, LabelCluster, series.LabelID)
		},
	},
	{
		entry:   CatalogueConnectorAbnormal,
		alert:   AlertConnectorAbnormal,
		summary: "EMQX connector {{ $labels.id }} is not connected in cluster {{ $labels.cluster }}.",
		description: "Connector {{ $labels.id }} on cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"is enabled but not connected.",
		expr: statusExpr(series.ConnectorStatus, series.ConnectorEnabled),
	},
	{
		entry:   CatalogueConnectorAbnormal,
		alert:   AlertActionAbnormal,
		summary: "EMQX action {{ $labels.id }} is not connected in cluster {{ $labels.cluster }}.",
		description: "Action {{ $labels.id }} on cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"is enabled but not connected.",
		expr: statusExpr(series.ActionStatus, series.ActionEnabled),
	},
	{
		entry:   CatalogueRuleFailures,
		alert:   AlertRuleFailures,
		summary: "EMQX rule {{ $labels.id }} fails more often in cluster {{ $labels.cluster }}.",
		description: "Rule {{ $labels.id }} on cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			`failed {{ $value | printf "%.1f" }} executions per minute over the last ` + windowToken + thresholdToken + ".",
		expr: failuresExpr(series.RuleFailed),
	},
	{
		entry:   CatalogueActionFailures,
		alert:   AlertActionFailures,
		summary: "The actions of EMQX rule {{ $labels.id }} fail more often in cluster {{ $labels.cluster }}.",
		description: "The actions of rule {{ $labels.id }} on cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			`failed {{ $value | printf "%.1f" }} times per minute over the last ` + windowToken + thresholdToken + ".",
		expr: failuresExpr(series.RuleActionsFailed),
	},
	{
		entry:   CatalogueEMQXAlarm,
		alert:   AlertEMQXAlarm,
		summary: "EMQX alarm {{ $labels.name }} is active in cluster {{ $labels.cluster }}.",
		description: "EMQX raised its alarm {{ $labels.name }} on cluster {{ $labels.cluster }}" +
			"{{ with $labels.node }} (node {{ . }}){{ end }} in project {{ $labels.project }}.",
		expr: func(sel string, _ Params, _ RuleParams) string {
			return fmt.Sprintf(`%s{%s} == 1`, series.AlarmActive, sel)
		},
	},
	{
		entry:   CatalogueNodeCPU,
		alert:   AlertNodeCPUHigh,
		summary: "EMQX node {{ $labels.node }} is short of CPU in cluster {{ $labels.cluster }}.",
		description: "The host of EMQX node {{ $labels.node }} of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"uses {{ $value | humanizePercentage }} of its CPU" + thresholdToken + ".",
		expr: func(sel string, _ Params, rp RuleParams) string {
			return fmt.Sprintf("%s{%s} > %s", series.NodeCPUUsage, sel, number(rp.Threshold/100))
		},
	},
	{
		entry:   CatalogueNodeMemory,
		alert:   AlertNodeMemoryHigh,
		summary: "EMQX node {{ $labels.node }} is short of memory in cluster {{ $labels.cluster }}.",
		description: "The host of EMQX node {{ $labels.node }} of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"uses {{ $value | humanizePercentage }} of its memory" + thresholdToken + ".",
		expr: func(sel string, _ Params, rp RuleParams) string {
			return fmt.Sprintf("%s{%s}\n  / %s{%s}\n  > %s",
				series.NodeMemoryUsed, sel, series.NodeMemoryTotal, sel, number(rp.Threshold/100))
		},
	},
	{
		entry:   CatalogueNodeLoad,
		alert:   AlertNodeLoadHigh,
		summary: "EMQX node {{ $labels.node }} is under high load in cluster {{ $labels.cluster }}.",
		description: "The host of EMQX node {{ $labels.node }} of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			`has a 5-minute load average of {{ $value | printf "%.2f" }}` + thresholdToken + ".",
		expr: func(sel string, _ Params, rp RuleParams) string {
			return fmt.Sprintf(`%s{%s} > %s`, series.NodeLoad5, sel, number(rp.Threshold))
		},
	},
	{
		entry:   CatalogueRuleRateDrop,
		alert:   AlertRuleRateDrop,
		summary: "EMQX rule {{ $labels.id }} runs less often in cluster {{ $labels.cluster }}.",
		description: "Rule {{ $labels.id }} on cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			`matched {{ $value | printf "%.1f" }} messages per minute over the last ` + windowToken +
			", a drop of more than THRESHOLD_PERCENT% against the same time an hour before.",
		expr: func(sel string, p Params, rp RuleParams) string {
			// The rule's match rate now against an hour ago, both over
			// the window of the failure rules. A rule that matched
			// nothing an hour ago cannot drop; a disabled rule is
			// expected to.
			return fmt.Sprintf("rate(%[1]s{%[2]s}[%[3]s]) * 60\n"+
				"  < %[4]s * rate(%[1]s{%[2]s}[%[3]s] offset 1h) * 60\n"+
				"unless on (%[5]s, %[6]s, %[7]s) (%[8]s{%[2]s} == 0)",
				series.RuleMatched, sel, window(p), number(1-rp.Threshold/100),
				LabelProject, LabelCluster, series.LabelID, series.RuleEnabled)
		},
	},
	{
		entry:   CatalogueConnectAuth,
		alert:   AlertConnectAuthFailures,
		summary: "EMQX cluster {{ $labels.cluster }} refuses more client connections for authentication or authorization.",
		description: "Cluster {{ $labels.cluster }} in project {{ $labels.project }} refused " +
			`{{ $value | printf "%.1f" }} CONNECTs per minute for failed authentication or authorization over the last ` +
			windowToken + thresholdToken + ".",
		expr: clusterRateExpr(series.ConnectAuthFailures),
	},
	{
		entry:   CataloguePublishAuth,
		alert:   AlertPublishAuthFailures,
		summary: "EMQX cluster {{ $labels.cluster }} denies more publishes.",
		description: "Cluster {{ $labels.cluster }} in project {{ $labels.project }} denied " +
			`{{ $value | printf "%.1f" }} PUBLISHes per minute by authorization over the last ` + windowToken + thresholdToken + ".",
		expr: clusterRateExpr(series.PublishAuthFailures),
	},
	{
		entry:   CatalogueSubscribeAuth,
		alert:   AlertSubscribeAuthFailures,
		summary: "EMQX cluster {{ $labels.cluster }} denies more subscriptions.",
		description: "Cluster {{ $labels.cluster }} in project {{ $labels.project }} denied " +
			`{{ $value | printf "%.1f" }} SUBSCRIBEs per minute by authorization over the last ` + windowToken + thresholdToken + ".",
		expr: clusterRateExpr(series.SubscribeAuthFailures),
	},
	{
		entry:   CatalogueAuthnResource,
		alert:   AlertAuthnAbnormal,
		summary: "EMQX authenticator {{ $labels.id }} is not connected in cluster {{ $labels.cluster }}.",
		description: "Authenticator {{ $labels.id }} of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"is enabled but not connected on every node: clients it should check cannot log in.",
		expr: connectedExpr(series.AuthnConnected, series.AuthnEnabled),
	},
	{
		entry:   CatalogueAuthzResource,
		alert:   AlertAuthzAbnormal,
		summary: "EMQX authorization source {{ $labels.id }} is not connected in cluster {{ $labels.cluster }}.",
		description: "Authorization source {{ $labels.id }} of cluster {{ $labels.cluster }} in project {{ $labels.project }} " +
			"is enabled but not connected on every node.",
		expr: connectedExpr(series.AuthzConnected, series.AuthzEnabled),
	},
}

// connectedExpr fires for a backend that is not connected, unless it is
// disabled; as statusExpr, a missing enabled series hides nothing.
func connectedExpr(connected, enabled string) func(sel string, p Params, rp RuleParams) string {
	return func(sel string, _ Params, _ RuleParams) string {
		return fmt.Sprintf("%[1]s{%[3]s} == 0\n"+
			"unless on (%[4]s, %[5]s, %[6]s) (%[2]s{%[3]s} == 0)",
			connected, enabled, sel, LabelProject, LabelCluster, series.LabelID)
	}
}

// clusterRateExpr fires when a cluster-wide counter grew faster than the
// threshold, per minute over the window (as failuresExpr).
func clusterRateExpr(counter string) func(sel string, p Params, rp RuleParams) string {
	return func(sel string, p Params, rp RuleParams) string {
		return fmt.Sprintf("rate(%s{%s}[%s]) * 60 > %s", counter, sel, window(p), number(rp.Threshold))
	}
}

// failuresExpr fires for an enabled rule whose counter grew faster than the
// threshold, in failures per minute over the window.
func failuresExpr(counter string) func(sel string, p Params, rp RuleParams) string {
	return func(sel string, p Params, rp RuleParams) string {
		return fmt.Sprintf("rate(%[1]s{%[2]s}[%[3]s]) * 60 > %[4]s\n"+
			"unless on (%[5]s, %[6]s, %[7]s) (%[8]s{%[2]s} == 0)",
			counter, sel, window(p), number(rp.Threshold), LabelProject, LabelCluster, series.LabelID, series.RuleEnabled)
	}
}

// number prints a threshold as PromQL reads it back: the shortest
// representation of the same float64.
func number(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// statusExpr fires for an object whose status is not connected, unless it
// is disabled (a disabled connector reports "stopped"). A missing enabled
// series does not hide a broken status. The status label is dropped: an
// object going from connecting to disconnected is still the same alert, and
// its trigger count must not start again.
func statusExpr(status, enabled string) func(sel string, p Params, rp RuleParams) string {
	return func(sel string, _ Params, _ RuleParams) string {
		return fmt.Sprintf("max without (%[4]s) (%[1]s{%[3]s, %[4]s=%[5]q}) == 0\n"+
			"unless on (%[6]s, %[7]s, %[8]s) (%[2]s{%[3]s} == 0)",
			status, enabled, sel, series.LabelStatus, series.StatusConnected, LabelProject, LabelCluster, series.LabelID)
	}
}

// windowToken in a description stands for the window's duration, and
// thresholdToken for ", more than <threshold> <unit>" (or the entry's
// wording of it).
const (
	windowToken    = "WINDOW"
	thresholdToken = "THRESHOLD"
	// thresholdPercentToken is the bare threshold number.
	thresholdPercentToken = "THRESHOLD_PERCENT"
)

// thresholdText is what thresholdToken becomes for an entry.
func thresholdText(e Entry, rp RuleParams) string {
	if e.Threshold == nil {
		return ""
	}
	switch e.Threshold.Unit {
	case UnitDays:
		return ", within the " + number(rp.Threshold) + " days the project alerts at"
	case UnitPercent:
		return ", above the project's " + number(rp.Threshold) + "%"
	case UnitLoad:
		return ", above the project's " + number(rp.Threshold)
	}
	return ", above the project's " + number(rp.Threshold)
}

// window is the range every counter kind takes its rate() or increase()
// over: three intervals, so that every evaluation has two samples that have
// arrived. The agent collects once an interval and the group evaluates once
// an interval, in a fixed phase to each other, and a sample reaches
// Prometheus some time after its timestamp (the agent's push, ecp's
// batching, a busy host). Over two intervals, an evaluation that falls
// between the newest sample's timestamp and its arrival holds one sample,
// rate() and increase() give nothing, and as the phase holds so does every
// later evaluation: a condition true all along never fired. Three intervals
// allow up to an interval in flight; a longer window would smooth a rate
// further and count one burst of failures at more evaluations still.
func window(p Params) string { return model.Duration(3 * p.Interval).String() }

// Alerts returns the names of every alert kind, in file order.
func Alerts() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.alert
	}
	return names
}

// withDefaults fills zero fields.
func (p Params) withDefaults() Params {
	if p.Interval == 0 {
		p.Interval = DefaultInterval
	}
	return p
}

// effective is an entry's parameters with the project's filled in.
func (p Params) effective(id string) RuleParams {
	rp := p.Rules[id]
	if rp.Severity == "" {
		rp.Severity = p.Severity
	}
	if rp.TriggerCount == 0 {
		rp.TriggerCount = p.TriggerCount
	}
	if rp.RecoveryCount == 0 {
		rp.RecoveryCount = p.RecoveryCount
	}
	return rp
}

// Validate reports the first parameter a rule file cannot be built from.
func (p Params) Validate() error {
	p = p.withDefaults()
	switch {
	case !ValidProjectID(p.Project):
		return fmt.Errorf("project id %q: want 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit", p.Project)
	case p.Interval < time.Second || p.Interval%time.Second != 0:
		return fmt.Errorf("interval %s: want whole seconds, at least 1s", p.Interval)
	case p.TriggerCount < 1 || p.TriggerCount > MaxCount:
		return fmt.Errorf("trigger count %d: want 1 to %d", p.TriggerCount, MaxCount)
	case p.RecoveryCount < 1 || p.RecoveryCount > MaxCount:
		return fmt.Errorf("recovery count %d: want 1 to %d", p.RecoveryCount, MaxCount)
	case !model.LegacyValidation.IsValidLabelName(p.Severity) || p.Severity == "":
		return fmt.Errorf("severity %q: want a word of letters, digits and '_'", p.Severity)
	}
	for _, id := range slices.Sorted(maps.Keys(p.Rules)) {
		if err := p.validateRule(id); err != nil {
			return fmt.Errorf("rule %s: %w", id, err)
		}
	}
	for _, c := range p.Clusters {
		// Cluster ids are label values and sit in the selector: the
		// same alphabet as project ids keeps them plain.
		if !ValidProjectID(c.ID) {
			return fmt.Errorf("cluster id %q: want 1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit", c.ID)
		}
	}
	return ValidExternalURL(p.ExternalURL)
}

func (p Params) validateRule(id string) error {
	e, ok := CatalogueEntry(id)
	if !ok {
		return errors.New("not in the catalogue")
	}
	rp := p.effective(id)
	switch t := e.Threshold; {
	case t == nil && rp.Threshold != 0:
		return fmt.Errorf("threshold %v: the rule has none", rp.Threshold)
	case t != nil && !(rp.Threshold >= t.Min && rp.Threshold <= t.Max):
		return fmt.Errorf("threshold %v: want %v to %v (%s)", rp.Threshold, t.Min, t.Max, t.Unit)
	case rp.TriggerCount < 1 || rp.TriggerCount > MaxCount:
		return fmt.Errorf("trigger count %d: want 1 to %d", rp.TriggerCount, MaxCount)
	case rp.RecoveryCount < 1 || rp.RecoveryCount > MaxCount:
		return fmt.Errorf("recovery count %d: want 1 to %d", rp.RecoveryCount, MaxCount)
	case !model.LegacyValidation.IsValidLabelName(rp.Severity):
		return fmt.Errorf("severity %q: want a word of letters, digits and '_'", rp.Severity)
	}
	return nil
}

// ValidExternalURL checks the URL the link annotations start with.
func ValidExternalURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("external URL %q: want an absolute http or https URL", s)
	}
	if strings.ContainsAny(s, "{}") {
		// The link is a Go template: braces would change its meaning.
		return errors.New("external URL must not contain '{' or '}'")
	}
	return nil
}

// GroupName is the name of a project's rule group.
func GroupName(project string) string { return "ecp-project-" + project }

// Project returns the rule file of one project.
func Project(p Params) (File, error) {
	p = p.withDefaults()
	if err := p.Validate(); err != nil {
		return File{}, fmt.Errorf("rendering rules: %w", err)
	}
	sel := fmt.Sprintf("%s=%q, %s=~%q", LabelProject, p.Project, LabelCluster, clusterRegexp(p.Clusters))
	link := strings.TrimRight(p.ExternalURL, "/") + fmt.Sprintf(ClusterLinkPath, "{{ $labels.cluster }}")
	clusterName, projectName := clusterNameTemplate(p.Clusters), projectIDTemplate
	if p.ProjectName != "" {
		projectName = literal(p.ProjectName)
	}
	// The kinds' texts name cluster and project by label; the alert says
	// their names instead.
	named := strings.NewReplacer(clusterIDTemplate, clusterName, projectIDTemplate, projectName)
	g := Group{Name: GroupName(p.Project), Interval: model.Duration(p.Interval).String()}
	for _, k := range kinds {
		if _, on := p.Rules[k.entry]; !on {
			continue
		}
		e, _ := CatalogueEntry(k.entry)
		rp := p.effective(k.entry)
		desc := named.Replace(strings.NewReplacer(windowToken, window(p), thresholdPercentToken, number(rp.Threshold),
			thresholdToken, thresholdText(e, rp)).Replace(k.description))
		annotations := map[string]string{
			AnnotationSummary:     named.Replace(k.summary),
			AnnotationDescription: desc,
			AnnotationLink:        link,
			AnnotationClusterName: clusterName,
			AnnotationProjectName: projectName,
		}
		if p.OrganizationName != "" {
			annotations[AnnotationOrganizationName] = literal(p.OrganizationName)
		}
		g.Rules = append(g.Rules, Rule{
			Alert:         k.alert,
			Expr:          k.expr(sel, p, rp),
			For:           countDuration(rp.TriggerCount, p.Interval),
			KeepFiringFor: countDuration(rp.RecoveryCount, p.Interval),
			Labels: map[string]string{
				LabelSeverity: rp.Severity,
				// Set even though every selector keeps it, so that the
				// Alertmanager route for the project always matches.
				LabelProject: p.Project,
			},
			Annotations: annotations,
		})
	}
	return File{Groups: []Group{g}}, nil
}

// Templates of the kinds' texts that the rendered rules replace by names.
const (
	clusterIDTemplate = "{{ $labels.cluster }}"
	projectIDTemplate = "{{ $labels.project }}"
)

// literal is a Prometheus template that prints s exactly: a Go string
// literal inside an action. Names are tenants' input, and "{{", "$labels"
// or quotes in them must print as themselves, never run as template code;
// strconv.Quote leaves no unescaped quote or newline for the template lexer
// to stop at.
func literal(s string) string { return "{{ " + strconv.Quote(s) + " }}" }

// clusterNameTemplate prints the name of the alert's cluster, or its id
// for a cluster the list does not hold (which the selector keeps out).
// Prometheus templates have no map literal, so the lookup is a chain of
// comparisons; it is expanded only for firing alerts.
func clusterNameTemplate(clusters []Cluster) string {
	if len(clusters) == 0 {
		return clusterIDTemplate
	}
	var b strings.Builder
	for i, c := range clusters {
		if i > 0 {
			b.WriteString("{{ else if")
		} else {
			b.WriteString("{{ if")
		}
		fmt.Fprintf(&b, " eq $labels.%s %s }}%s", LabelCluster, strconv.Quote(c.ID), literal(c.Name))
	}
	b.WriteString("{{ else }}" + clusterIDTemplate + "{{ end }}")
	return b.String()
}

// clusterRegexp matches exactly the given cluster ids; with none it matches
// only an absent label, which no series of a project has.
func clusterRegexp(clusters []Cluster) string {
	ids := make([]string, len(clusters))
	for i, c := range clusters {
		ids[i] = regexp.QuoteMeta(c.ID)
	}
	return strings.Join(ids, "|")
}

// countDuration turns a count of consecutive evaluations into the duration
// Prometheus waits: (n-1)×interval, or "" (field left out) for 1.
func countDuration(n int, interval time.Duration) string {
	if n <= 1 {
		return ""
	}
	return model.Duration(time.Duration(n-1) * interval).String()
}

// header opens every generated file, so that an operator who finds it
// knows not to edit it by hand.
const header = "# Generated by ecp from the project's alert settings. Do not edit: ecp rewrites this file.\n"

// Marshal renders a rule file as YAML.
func Marshal(f File) ([]byte, error) {
	var b strings.Builder
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encoding rule file: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding rule file: %w", err)
	}
	return []byte(b.String()), nil
}
