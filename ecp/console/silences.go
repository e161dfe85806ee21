package console

// The alert list's silences, storm guard and history clean-up: forms that
// post to console routes calling the alerts service's typed methods
// (CreateSilence, ExpireSilence, ClearStorm, ClearHistory), which
// authorize, validate and annotate the audit record as the API's routes
// do. Viewers see silences and the storm, and get no forms.

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// silenceRow is one silence as the list shows it: what it mutes, in
// words.
type silenceRow struct {
	alerts.Silence
	Scope string
}

// silencesView is the silences part of the active alert list.
type silencesView struct {
	Silences    []silenceRow
	SilenceByID map[string]*silenceRow
	// SilencesOn: silences can be read (ecp has an Alertmanager);
	// SilencesNote says why not otherwise.
	SilencesOn   bool
	SilencesNote string
}

// silences reads project's unexpired silences; without a reachable
// Alertmanager the list says why instead of failing the page.
func (c *Console) silences(r *http.Request, project string, names map[string]string) (silencesView, error) {
	ac, err := c.access(r)
	if err != nil {
		return silencesView{}, err
	}
	list, err := c.opts.Alerts.Silences(r.Context(), ac, project, "")
	err = serviceError(err)
	var apiErr *APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusConflict || apiErr.Status == http.StatusBadGateway) {
		return silencesView{SilencesNote: apiErr.Message}, nil
	}
	if err != nil {
		return silencesView{}, err
	}
	v := silencesView{SilencesOn: true, SilenceByID: map[string]*silenceRow{}, Silences: make([]silenceRow, len(list))}
	for i, sl := range list {
		v.Silences[i] = silenceRow{Silence: sl, Scope: silenceScope(sl, names)}
		v.SilenceByID[sl.ID] = &v.Silences[i]
	}
	return v, nil
}

// silenceScope says what a silence mutes: its matchers but the project's,
// with cluster names and catalogue rules for their ids and patterns.
func silenceScope(sl alerts.Silence, names map[string]string) string {
	var parts []string
	for _, m := range sl.Matchers {
		switch {
		case m.Name == rules.LabelProject:
		case m.Name == rules.LabelCluster && m.IsEqual && !m.IsRegex:
			parts = append(parts, "cluster "+cmpOr(names[m.Value], m.Value))
		case m.Name == "alertname" && m.IsRegex:
			parts = append(parts, "rule "+cmpOr(ruleOfPattern(m.Value), m.Value))
		case m.Name == "alertname":
			parts = append(parts, "alert "+m.Value)
		default:
			op := "="
			if !m.IsEqual {
				op = "!="
			}
			if m.IsRegex {
				op += "~"
			}
			parts = append(parts, m.Name+op+m.Value)
		}
	}
	if len(parts) == 0 {
		return "every alert of the project"
	}
	return strings.Join(parts, ", ")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ruleOfPattern is the catalogue rule whose alerts a silence's alertname
// pattern names, as alerts.CreateSilence writes it; "" for another.
func ruleOfPattern(pattern string) string {
	for _, e := range rules.Catalogue {
		if e.AlertPattern() == pattern {
			return e.ID
		}
	}
	return ""
}

// ruleOfAlert is the catalogue rule that raises alerts named name, or "".
func ruleOfAlert(name string) string {
	for _, e := range rules.Catalogue {
		if slices.Contains(e.Alerts, name) {
			return e.ID
		}
	}
	return ""
}

// alertNames lists the alert names of the catalogue, which the history's
// alert filter suggests; it takes any other name too (a custom alarm's).
func alertNames() []string {
	var out []string
	for _, e := range rules.Catalogue {
		out = append(out, e.Alerts...)
	}
	return out
}

// silenceData is the new-silence form.
type silenceData struct {
	base
	// Alert is the alert the form was opened from, if any.
	Alert                                   *alerts.Alert
	AlertRule                               string
	Names                                   map[string]string
	Clusters                                []clusters.Name
	Rules                                   []string
	Scope, Cluster, Rule, Duration, Comment string
	Errors                                  formErrors
}

// silenceScopes are the form's choices: what a silence mutes.
const (
	scopeAlert   = "alert"
	scopeCluster = "cluster"
	scopeRule    = "rule"
)

func (c *Console) silenceForm(r *http.Request, alertID string) (silenceData, error) {
	b, err := c.projectBase(r, "New silence", "alerts")
	if err != nil {
		return silenceData{}, err
	}
	d := silenceData{base: b, Rules: rules.CatalogueIDs(), Duration: "2h", Errors: formErrors{}}
	if d.Clusters, d.Names, err = c.clusterNames(r, b.Project.ID); err != nil {
		return d, err
	}
	if alertID == "" {
		return d, nil
	}
	firing, _, err := c.firing(r, b.Project.ID)
	if err != nil {
		return d, err
	}
	for i := range firing {
		if firing[i].ID == alertID {
			d.Alert = &firing[i]
			d.AlertRule = ruleOfAlert(d.Alert.Name)
			d.Cluster, d.Rule = d.Alert.Cluster, d.AlertRule
		}
	}
	return d, nil
}

func (c *Console) newSilence(w http.ResponseWriter, r *http.Request) error {
	d, err := c.silenceForm(r, r.URL.Query().Get("alert"))
	if err != nil {
		return err
	}
	if !d.CanAdmin {
		return &APIError{Status: http.StatusForbidden, Code: "Forbidden", Message: "Only a project admin silences alerts."}
	}
	d.Scope = scopeCluster
	if d.Alert != nil {
		d.Scope = scopeAlert
	}
	c.render(w, http.StatusOK, "silence_new", "", d)
	return nil
}

func (c *Console) createSilence(w http.ResponseWriter, r *http.Request) error {
	d, err := c.silenceForm(r, r.PostFormValue("alert"))
	if err != nil {
		return err
	}
	d.Scope, d.Duration, d.Comment = r.PostFormValue("scope"), r.PostFormValue("duration"), r.PostFormValue("comment")
	d.Cluster, d.Rule = r.PostFormValue("cluster"), r.PostFormValue("rule")
	req := alerts.SilenceRequest{Duration: strings.TrimSpace(d.Duration), Comment: d.Comment}
	switch d.Scope {
	case scopeAlert:
		req.Alert = r.PostFormValue("alert")
	case scopeCluster:
		req.Cluster = d.Cluster
	case scopeRule:
		req.Rule = d.Rule
	default:
		d.Errors.add("scope", "Choose what to silence: this alert, a cluster or a rule.")
		c.render(w, http.StatusBadRequest, "silence_new", "", d)
		return nil
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	_, err = c.opts.Alerts.CreateSilence(r.Context(), ac, d.Project.ID, req)
	err = serviceError(err)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status != http.StatusUnauthorized && apiErr.Status != http.StatusNotFound && apiErr.Status < 500 ||
		errors.As(err, &apiErr) && apiErr.Status == http.StatusBadGateway {
		for _, fe := range apiErrors(apiErr) {
			field := fe[0]
			if field != "duration" && field != "comment" && field != "alert" && field != "cluster" && field != "rule" {
				field = ""
			}
			d.Errors.add(field, fe[1])
		}
		c.render(w, apiErr.Status, "silence_new", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/projects/"+pathEscape(d.Project.ID)+"/alerts?done=silenced", http.StatusSeeOther)
	return nil
}

func (c *Console) expireSilence(w http.ResponseWriter, r *http.Request) error {
	return c.alertsAction(w, r, "silence-ended", func(ac *tenancy.Access, _ string) error {
		return c.opts.Alerts.ExpireSilence(r.Context(), ac, mux.Vars(r)["id"])
	})
}

func (c *Console) clearStorm(w http.ResponseWriter, r *http.Request) error {
	return c.alertsAction(w, r, "storm-cleared", func(ac *tenancy.Access, project string) error {
		return c.opts.Alerts.ClearStorm(r.Context(), ac, project)
	})
}

// alertsAction runs a button's service call on the project in the path
// and goes back to the alert list saying done; a refusal gets the error
// page with the service's message.
func (c *Console) alertsAction(w http.ResponseWriter, r *http.Request, done string, do func(ac *tenancy.Access, project string) error) error {
	b, err := c.projectBase(r, "Alerts", "alerts")
	if err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	if err := do(ac, b.Project.ID); err != nil {
		return serviceError(err)
	}
	http.Redirect(w, r, "/projects/"+pathEscape(b.Project.ID)+"/alerts?done="+done, http.StatusSeeOther)
	return nil
}

// clearHistory removes history by time (before, as the datetime-local
// field sends it, in UTC) or by count; a refusal shows beside its field
// on the history list.
func (c *Console) clearHistory(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "Alerts", "alerts")
	if err != nil {
		return err
	}
	before, count := strings.TrimSpace(r.PostFormValue("before")), strings.TrimSpace(r.PostFormValue("count"))
	refuse := func(field, msg string, status int) error {
		r.URL.RawQuery = url.Values{"state": {alerts.StateHistory}}.Encode()
		d, _, err := c.alertsPage(r, false)
		if err != nil {
			return err
		}
		d.Errors["clear-"+field] = msg
		c.render(w, status, "alerts", "", d)
		return nil
	}
	apiBefore := ""
	if before != "" {
		var ok bool
		if apiBefore, ok = utcTime(before); !ok {
			return refuse("before", "Before must be a date and time such as 2026-01-31T12:00 (UTC), got "+before, http.StatusBadRequest)
		}
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	out, err := c.opts.Alerts.ClearHistory(r.Context(), ac, b.Project.ID, apiBefore, count)
	err = serviceError(err)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest {
		return refuse(apiErr.Field, apiErr.Message, apiErr.Status)
	}
	if err != nil {
		return err
	}
	v := url.Values{"state": {alerts.StateHistory}, "done": {"history-clear"}, "deleted": {strconv.Itoa(out.Deleted)}}
	http.Redirect(w, r, "/projects/"+pathEscape(b.Project.ID)+"/alerts?"+v.Encode(), http.StatusSeeOther)
	return nil
}
