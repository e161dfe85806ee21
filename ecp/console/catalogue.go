package console

// The alert settings page shows the rule catalogue (rules.Catalogue) as a
// table, one row per rule, and the storm guard's threshold; both go into
// the one alerting.Settings the page saves, so they take the API's
// validation, and its errors show beside the cell that caused them.

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/rules"
)

// catalogueRow is one rule of the table as the form shows it: the saved
// settings, or what the user typed when it was refused.
type catalogueRow struct {
	ID       string
	Messages []string
	// Unit is the threshold's unit, "" for a rule without a threshold.
	Unit     string
	Min, Max string
	Enabled  bool
	// FollowsPush: on and off with "EMQX alert push" (emqxAlarm).
	FollowsPush                            bool
	Threshold, Trigger, Recovery, Severity string
}

// catalogueField is the form field of one cell of rule id's row.
func catalogueField(id, cell string) string { return "rules." + id + "." + cell }

// catalogueRows shows st's catalogue as saved.
func catalogueRows(st alerting.Settings) []catalogueRow {
	resolved := st.Catalogue()
	out := make([]catalogueRow, 0, len(rules.Catalogue))
	for _, e := range rules.Catalogue {
		r := resolved[e.ID]
		row := newCatalogueRow(e)
		row.Enabled, row.Severity = r.Enabled, r.Severity
		if r.Threshold != nil {
			row.Threshold = strconv.FormatFloat(*r.Threshold, 'f', -1, 64)
		}
		if r.TriggerCount > 0 {
			row.Trigger = strconv.Itoa(r.TriggerCount)
		}
		if r.RecoveryCount > 0 {
			row.Recovery = strconv.Itoa(r.RecoveryCount)
		}
		out = append(out, row)
	}
	return out
}

func newCatalogueRow(e rules.Entry) catalogueRow {
	row := catalogueRow{ID: e.ID, Messages: e.Messages(), FollowsPush: e.ID == rules.CatalogueEMQXAlarm}
	if t := e.Threshold; t != nil {
		row.Unit = t.Unit
		row.Min, row.Max = strconv.FormatFloat(t.Min, 'f', -1, 64), strconv.FormatFloat(t.Max, 'f', -1, 64)
	}
	return row
}

// catalogueFromForm reads the table and the storm threshold of the posted
// form into st, and returns the rows as typed. A cell that is not a
// number gets the console's own message in notNumber, and a value the
// API refuses, so the API still names every other wrong field.
func catalogueFromForm(r *http.Request, st *alerting.Settings, notNumber map[string]string) ([]catalogueRow, string) {
	st.Rules = make(map[string]alerting.RuleSettings, len(rules.Catalogue))
	rows := make([]catalogueRow, 0, len(rules.Catalogue))
	for _, e := range rules.Catalogue {
		row := newCatalogueRow(e)
		val := func(cell string) string { return strings.TrimSpace(r.PostFormValue(catalogueField(e.ID, cell))) }
		row.Enabled = val("enabled") == "on"
		row.Threshold, row.Trigger, row.Recovery, row.Severity = val("threshold"), val("triggerCount"), val("recoveryCount"), val("severity")
		rs := alerting.RuleSettings{Enabled: row.Enabled, Severity: row.Severity}
		if row.FollowsPush {
			rs.Enabled, row.Enabled = st.EMQXAlertPush, st.EMQXAlertPush
		}
		if e.Threshold != nil && row.Threshold != "" {
			t, err := strconv.ParseFloat(row.Threshold, 64)
			if err != nil {
				t = -1 // below every range: refused
				notNumber[catalogueField(e.ID, "threshold")] = fmt.Sprintf("Threshold must be a number, got %q", row.Threshold)
			}
			rs.Threshold = &t
		}
		for _, c := range []struct {
			cell, raw string
			into      *int
		}{{"triggerCount", row.Trigger, &rs.TriggerCount}, {"recoveryCount", row.Recovery, &rs.RecoveryCount}} {
			if c.raw == "" {
				continue // the project's
			}
			n, err := strconv.Atoi(c.raw)
			if err != nil {
				n = -1
				notNumber[catalogueField(e.ID, c.cell)] = fmt.Sprintf("Must be a whole number, or empty for the project's, got %q", c.raw)
			}
			*c.into = n
		}
		st.Rules[e.ID] = rs
		rows = append(rows, row)
	}
	storm := strings.TrimSpace(r.PostFormValue("stormThreshold"))
	if storm != "" {
		n, err := strconv.Atoi(storm)
		if err != nil {
			n = -1
			notNumber["stormThreshold"] = fmt.Sprintf("Storm threshold must be a whole number, got %q", storm)
		}
		st.StormThreshold = n
	}
	return rows, storm
}

// catalogueAPIField is a catalogue cell as the API names it.
var catalogueAPIField = regexp.MustCompile(`^rules\.([a-zA-Z]+)\.(threshold|severity|triggerCount|recoveryCount)$`)

// catalogueCellWords are the table's words for a cell in a message.
var catalogueCellWords = map[string]string{
	"threshold": "Threshold", "severity": "Severity", "triggerCount": "Trigger count", "recoveryCount": "Recovery count",
}

// catalogueError places an API error about a catalogue cell (or the storm
// threshold) beside it, in the table's words; ok is false for any other
// field.
func catalogueError(apiField, msg string) (field, shown string, ok bool) {
	if apiField == "stormThreshold" {
		return apiField, strings.Replace(msg, apiField, "Storm threshold", 1), true
	}
	m := catalogueAPIField.FindStringSubmatch(apiField)
	if m == nil {
		return "", "", false
	}
	return apiField, strings.Replace(msg, apiField, catalogueCellWords[m[2]], 1), true
}
