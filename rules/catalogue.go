package rules

import (
	"regexp"
	"strings"
)

// The catalogue is what a project switches on, one entry per check an
// operator knows from ECP's alarm rules. An entry renders one alert kind,
// or two for connectorAbnormal (connectors and actions are one check in
// ECP). Each entry may carry a threshold in its own unit; severity and the
// counts are per entry too, falling back to the project's.
//
// Ids are the keys of the "rules" member of the alert settings API, so they
// are camelCase and never change.
const (
	CatalogueClusterStatus     = "clusterStatus"
	CatalogueNodeDown          = "nodeDown"
	CatalogueLicenseExpiry     = "licenseExpiry"
	CatalogueLicenseUsage      = "licenseUsage"
	CatalogueConnections       = "connections"
	CatalogueRuleAbnormal      = "ruleAbnormal"
	CatalogueConnectorAbnormal = "connectorAbnormal"
	CatalogueRuleFailures      = "ruleFailures"
	CatalogueActionFailures    = "actionFailures"
	CatalogueEMQXAlarm         = "emqxAlarm"
	CatalogueNodeCPU           = "nodeCPU"
	CatalogueNodeMemory        = "nodeMemory"
	CatalogueNodeLoad          = "nodeLoad"
	CatalogueRuleRateDrop      = "ruleRateDrop"
	CatalogueConnectAuth       = "connectAuthFailures"
	CataloguePublishAuth       = "publishAuthFailures"
	CatalogueSubscribeAuth     = "subscribeAuthFailures"
	CatalogueAuthnResource     = "authnResource"
	CatalogueAuthzResource     = "authzResource"
)

// Threshold units, as the API documents them.
const (
	UnitPercent           = "percent"
	UnitDays              = "days"
	UnitFailuresPerMinute = "failures per minute"
	UnitLoad              = "load average"
)

// Threshold is the range and default of an entry's threshold.
type Threshold struct {
	Unit     string
	Min, Max float64
	Default  float64
}

// Entry is one check of the catalogue.
type Entry struct {
	ID string
	// Alerts are the alert kinds the entry renders.
	Alerts []string
	// Threshold is nil for a check without one.
	Threshold *Threshold
	// DefaultOn is the entry's state in a project's new settings: on for
	// the two checks ECP 2.3 had (rule, connector and action exceptions).
	DefaultOn bool
	// Legacy is the entry's state in settings saved before the catalogue
	// existed, which rendered every kind then known: on for those.
	Legacy bool
}

// Catalogue lists every entry, in the order the console and the rule file
// show them.
var Catalogue = []Entry{
	{ID: CatalogueClusterStatus, Alerts: []string{AlertClusterAbnormal}, Legacy: true},
	{ID: CatalogueNodeDown, Alerts: []string{AlertNodeDown}, Legacy: true},
	{ID: CatalogueLicenseExpiry, Alerts: []string{AlertLicenseExpiring},
		Threshold: &Threshold{Unit: UnitDays, Min: 1, Max: 365, Default: 30}},
	{ID: CatalogueLicenseUsage, Alerts: []string{AlertLicenseUsageHigh},
		Threshold: &Threshold{Unit: UnitPercent, Min: 1, Max: 100, Default: 80}},
	// 90 % is what the connections check used before it had a threshold.
	{ID: CatalogueConnections, Alerts: []string{AlertConnectionsNear}, Legacy: true,
		Threshold: &Threshold{Unit: UnitPercent, Min: 1, Max: 100, Default: 90}},
	{ID: CatalogueRuleAbnormal, Alerts: []string{AlertRuleAbnormal}, DefaultOn: true, Legacy: true},
	{ID: CatalogueConnectorAbnormal, Alerts: []string{AlertConnectorAbnormal, AlertActionAbnormal}, DefaultOn: true, Legacy: true},
	{ID: CatalogueRuleFailures, Alerts: []string{AlertRuleFailures},
		Threshold: &Threshold{Unit: UnitFailuresPerMinute, Min: 0, Max: 1e6, Default: 10}},
	{ID: CatalogueActionFailures, Alerts: []string{AlertActionFailures},
		Threshold: &Threshold{Unit: UnitFailuresPerMinute, Min: 0, Max: 1e6, Default: 10}},
	// On and off with the project's "EMQX alert push" switch.
	{ID: CatalogueEMQXAlarm, Alerts: []string{AlertEMQXAlarm}},
	{ID: CatalogueNodeCPU, Alerts: []string{AlertNodeCPUHigh},
		Threshold: &Threshold{Unit: UnitPercent, Min: 1, Max: 100, Default: 80}},
	{ID: CatalogueNodeMemory, Alerts: []string{AlertNodeMemoryHigh},
		Threshold: &Threshold{Unit: UnitPercent, Min: 1, Max: 100, Default: 80}},
	// The host's 5-minute load average: the load a node keeps, not a
	// passing spike. It counts runnable tasks, so the right value depends
	// on the host's cores, which EMQX's API does not give.
	{ID: CatalogueNodeLoad, Alerts: []string{AlertNodeLoadHigh},
		Threshold: &Threshold{Unit: UnitLoad, Min: 0, Max: 10000, Default: 8}},
	{ID: CatalogueRuleRateDrop, Alerts: []string{AlertRuleRateDrop},
		Threshold: &Threshold{Unit: UnitPercent, Min: 1, Max: 100, Default: 50}},
	{ID: CatalogueConnectAuth, Alerts: []string{AlertConnectAuthFailures},
		Threshold: &Threshold{Unit: UnitFailuresPerMinute, Min: 0, Max: 1e6, Default: 10}},
	{ID: CataloguePublishAuth, Alerts: []string{AlertPublishAuthFailures},
		Threshold: &Threshold{Unit: UnitFailuresPerMinute, Min: 0, Max: 1e6, Default: 10}},
	{ID: CatalogueSubscribeAuth, Alerts: []string{AlertSubscribeAuthFailures},
		Threshold: &Threshold{Unit: UnitFailuresPerMinute, Min: 0, Max: 1e6, Default: 10}},
	{ID: CatalogueAuthnResource, Alerts: []string{AlertAuthnAbnormal}},
	{ID: CatalogueAuthzResource, Alerts: []string{AlertAuthzAbnormal}},
}

// CatalogueEntry returns the entry with id, or false.
func CatalogueEntry(id string) (Entry, bool) {
	for _, e := range Catalogue {
		if e.ID == id {
			return e, true
		}
	}
	return Entry{}, false
}

// CatalogueIDs lists every entry's id, in catalogue order.
func CatalogueIDs() []string {
	ids := make([]string, len(Catalogue))
	for i, e := range Catalogue {
		ids[i] = e.ID
	}
	return ids
}

// RuleParams are one switched-on entry's parameters. Zero Severity and
// counts mean the project's (Params); Threshold must be within the entry's
// range, and zero for an entry without one.
type RuleParams struct {
	Threshold     float64
	Severity      string
	TriggerCount  int
	RecoveryCount int
}

// AlertPattern is a regular expression that matches exactly the entry's
// alert names, as a silence of the entry matches alertname.
func (e Entry) AlertPattern() string {
	quoted := make([]string, len(e.Alerts))
	for i, a := range e.Alerts {
		quoted[i] = regexp.QuoteMeta(a)
	}
	return strings.Join(quoted, "|")
}

// labelPlaceholder is a label reference in an alert kind's text.
var labelPlaceholder = regexp.MustCompile(`\{\{ \$labels\.([a-zA-Z_][a-zA-Z0-9_]*) \}\}`)

// Messages are what the entry's alerts say (their summaries), one per
// alert kind, with each label shown as a placeholder such as <cluster>:
// the console shows them beside the entry.
func (e Entry) Messages() []string {
	var out []string
	for _, k := range kinds {
		if k.entry == e.ID {
			out = append(out, labelPlaceholder.ReplaceAllString(k.summary, "<$1>"))
		}
	}
	return out
}
