package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/logs"
	"github.com/ecpio/ecp/ecp/logstore"
	"github.com/ecpio/ecp/ecp/monitoring"
)

// registerOps mounts the monitoring, alert and log pages.
func (c *Console) registerOps(r *mux.Router) {
	p := "/projects/{project}"
	r.Handle(p+"/monitoring", c.page(c.monitoring)).Methods(http.MethodGet)
	r.Handle(p+"/alerts", c.page(c.alertList)).Methods(http.MethodGet)
	r.Handle(p+"/alerts/{id}/delete", c.page(c.audited(c.deleteAlert))).Methods(http.MethodPost)
	r.Handle(p+"/alert-settings", c.page(c.alertSettings)).Methods(http.MethodGet)
	r.Handle(p+"/alert-settings", c.page(c.audited(c.saveAlertSettings))).Methods(http.MethodPost)
	r.Handle(p+"/alert-settings/test", c.page(c.audited(c.testAlert))).Methods(http.MethodPost)
	r.Handle(p+"/alert-settings/webhook", c.page(c.audited(c.saveWebhook))).Methods(http.MethodPost)
	r.Handle(p+"/logs", c.page(c.logs)).Methods(http.MethodGet)
	r.Handle(p+"/alerts/history/clear", c.page(c.audited(c.clearHistory))).Methods(http.MethodPost)
	r.Handle(p+"/alerts/storm/clear", c.page(c.audited(c.clearStorm))).Methods(http.MethodPost)
	r.Handle(p+"/silences/new", c.page(c.newSilence)).Methods(http.MethodGet)
	r.Handle(p+"/silences", c.page(c.audited(c.createSilence))).Methods(http.MethodPost)
	r.Handle(p+"/silences/{id}/expire", c.page(c.audited(c.expireSilence))).Methods(http.MethodPost)
}

// clusterNames lists every cluster of the project for the filters, by
// name: the clusters API's name projection, read from memory.
func (c *Console) clusterNames(r *http.Request, project string) ([]clusters.Name, map[string]string, error) {
	ac, err := c.access(r)
	if err != nil {
		return nil, nil, err
	}
	all, err := c.opts.Clusters.Names(r.Context(), ac, project)
	if err != nil {
		return nil, nil, serviceError(err)
	}
	names := make(map[string]string, len(all))
	for _, cl := range all {
		names[cl.ID] = cl.Name
	}
	return all, names, nil
}

// --- monitoring ---

type monitoringData struct {
	base
	Cluster  string
	Clusters []clusters.Name
	Overview monitoring.Overview
}

func (c *Console) monitoring(w http.ResponseWriter, r *http.Request) error {
	part := r.Header.Get("HX-Target") == "monitoring-body"
	b, err := c.projectPage(r, "Monitoring", "monitoring", part)
	if err != nil {
		return err
	}
	d := monitoringData{base: b, Cluster: r.URL.Query().Get("cluster")}
	if d.Clusters, _, err = c.clusterNames(r, b.Project.ID); err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	if d.Overview, err = c.opts.Monitoring.Overview(r.Context(), ac, b.Project.ID, d.Cluster); err != nil {
		return serviceError(err)
	}
	if part {
		c.render(w, http.StatusOK, "monitoring", "monitoring-body", d)
		return nil
	}
	c.render(w, http.StatusOK, "monitoring", "", d)
	return nil
}

// --- alerts ---

type alertsData struct {
	base
	State      string
	Severity   string
	Cluster    string
	Severities []string
	Clusters   []clusters.Name
	Names      map[string]string
	Alerts     []alerts.Alert
	Error      string
	// Self is this list with its filters, which the table polls.
	Self string
	// History search (From and To as the datetime-local fields send
	// them, in UTC) and clear; Errors are beside those fields.
	From, To, Rule string
	RuleNames      []string
	Errors         fieldErrors
	Deleted        string
	// Storm, and the silences (silences.go).
	Storm alerts.StormStatus
	silencesView
}

func (c *Console) alertList(w http.ResponseWriter, r *http.Request) error {
	part := r.Header.Get("HX-Target") == "alerts-body"
	d, status, err := c.alertsPage(r, part)
	if err != nil {
		return err
	}
	if part {
		c.render(w, status, "alerts", "alerts-body", d)
		return nil
	}
	c.render(w, status, "alerts", "", d)
	return nil
}

// alertsPage reads the alert list with the filters in the URL, the storm
// state and, on the active list, the silences; a refused filter is shown
// beside its field with the status it got.
func (c *Console) alertsPage(r *http.Request, part bool) (alertsData, int, error) {
	b, err := c.projectPage(r, "Alerts", "alerts", part)
	if err != nil {
		return alertsData{}, 0, err
	}
	q := r.URL.Query()
	d := alertsData{base: b, State: q.Get("state"), Severity: q.Get("severity"), Cluster: q.Get("cluster"), Severities: alerting.Severities,
		From: q.Get("from"), To: q.Get("to"), Rule: q.Get("rule"), RuleNames: alertNames(), Errors: fieldErrors{}, Deleted: q.Get("deleted")}
	if d.State != alerts.StateHistory {
		d.State = alerts.StateActive
		d.From, d.To, d.Rule = "", "", ""
	}
	if d.Clusters, d.Names, err = c.clusterNames(r, b.Project.ID); err != nil {
		return d, 0, err
	}
	v := url.Values{"state": {d.State}}
	lq := alerts.ListQuery{State: d.State, Severity: d.Severity, Cluster: d.Cluster, Rule: d.Rule}
	for k, val := range map[string]string{"severity": d.Severity, "cluster": d.Cluster, "rule": d.Rule, "from": d.From, "to": d.To} {
		if val != "" {
			v.Set(k, val)
		}
	}
	lq.From, lq.To = timeRange(d.From, d.To, d.Errors)
	ac, err := c.access(r)
	if err != nil {
		return d, 0, err
	}
	status := http.StatusOK
	if len(d.Errors) > 0 {
		status = http.StatusBadRequest
	} else {
		d.Alerts, err = c.opts.Alerts.List(r.Context(), ac, b.Project.ID, lq)
		err = serviceError(err)
		var apiErr *APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest:
			d.Error = apiErr.Message
			if apiErr.Field != "" {
				d.Errors[apiErr.Field] = apiErr.Message
			}
		case err != nil:
			return d, 0, err
		}
	}
	if d.Storm, err = c.opts.Alerts.Storm(r.Context(), ac, b.Project.ID); err != nil {
		return d, 0, serviceError(err)
	}
	if d.State == alerts.StateActive {
		if d.silencesView, err = c.silences(r, b.Project.ID, d.Names); err != nil {
			return d, 0, err
		}
	}
	d.Self = "/projects/" + pathEscape(b.Project.ID) + "/alerts?" + v.Encode()
	return d, status, nil
}

func (c *Console) deleteAlert(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "Alerts", "alerts")
	if err != nil {
		return err
	}
	if asked, err := c.confirmFiringRemoval(w, r, b); asked || err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	if err := c.opts.Alerts.Delete(r.Context(), ac, mux.Vars(r)["id"]); err != nil {
		return serviceError(err)
	}
	back := "/projects/" + pathEscape(b.Project.ID) + "/alerts?done=alert-removed"
	if s := r.PostFormValue("state"); s == alerts.StateHistory {
		back += "&state=" + s
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}

// lines splits a textarea into its non-empty lines.
func lines(s string) []string {
	out, _ := textLines(s)
	return out
}

// --- logs ---

// Levels are EMQX's log levels, for the filter.
var Levels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

type logsData struct {
	base
	Cluster, Level, Q, From, To string
	Levels                      []string
	Clusters                    []clusters.Name
	Names                       map[string]string
	Page                        logstore.Page
	Next                        string
	Errors                      fieldErrors
}

// localForm is how <input type="datetime-local"> sends a time; the page
// labels the fields as UTC.
const localForm = "2006-01-02T15:04"

// utcTime reads a datetime-local field's value as UTC, in RFC 3339 as the
// APIs take times; ok is false when it is not one.
func utcTime(v string) (string, bool) {
	t, err := time.Parse(localForm, v)
	if err != nil {
		return "", false
	}
	return t.UTC().Format(time.RFC3339), true
}

// timeRange reads the from and to fields of a search, each in RFC 3339 or
// "" when empty, with an error beside a field that is not a time.
func timeRange(from, to string, errs fieldErrors) (string, string) {
	out := [2]string{}
	for i, f := range [2][2]string{{"from", from}, {"to", to}} {
		if f[1] == "" {
			continue
		}
		var ok bool
		if out[i], ok = utcTime(f[1]); !ok {
			errs[f[0]] = f[0] + " must be a date and time such as 2026-01-31T12:00 (UTC)"
		}
	}
	return out[0], out[1]
}

func (c *Console) logs(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "Logs", "logs")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	d := logsData{base: b, Cluster: q.Get("cluster"), Level: q.Get("level"), Q: q.Get("q"), From: q.Get("from"), To: q.Get("to"),
		Levels: Levels, Errors: fieldErrors{}}
	if d.Clusters, d.Names, err = c.clusterNames(r, b.Project.ID); err != nil {
		return err
	}
	f := logs.Filters{Cluster: d.Cluster, Level: d.Level, Q: d.Q, PageToken: q.Get("pageToken")}
	f.From, f.To = timeRange(d.From, d.To, d.Errors)
	status := http.StatusOK
	if len(d.Errors) == 0 {
		ac, err := c.access(r)
		if err != nil {
			return err
		}
		d.Page, err = c.opts.Logs.Lines(r.Context(), ac, b.Project.ID, f)
		err = serviceError(err)
		var apiErr *APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.Status != http.StatusUnauthorized && apiErr.Status != http.StatusNotFound && apiErr.Status < 500:
			// No receiver, a bad filter: say so on the page, keep the form.
			d.Errors[apiErr.Field] = apiErr.Message
			status = apiErr.Status
		case errors.As(err, &apiErr) && apiErr.Status >= 500:
			d.Errors[""] = apiErr.Message
			status = apiErr.Status
		case err != nil:
			return err
		}
	} else {
		status = http.StatusBadRequest
	}
	if d.Page.NextPageToken != "" {
		next := url.Values{}
		for k, val := range map[string]string{"cluster": d.Cluster, "level": d.Level, "q": d.Q, "from": d.From, "to": d.To, "pageToken": d.Page.NextPageToken} {
			if val != "" {
				next.Set(k, val)
			}
		}
		d.Next = "/projects/" + pathEscape(b.Project.ID) + "/logs?" + next.Encode()
	}
	if !slices.Contains(Levels, d.Level) {
		d.Level = ""
	}
	c.render(w, status, "logs", "", d)
	return nil
}
