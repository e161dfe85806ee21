package console

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// formErrors maps a form field to the messages shown beside it; "" holds
// messages about the whole form.
type formErrors map[string][]string

func (e formErrors) add(field, msg string) { e[field] = append(e[field], msg) }

type settingsData struct {
	base
	Settings alerts.SettingsReply
	// Catalogue and StormThreshold are the rule table and the storm
	// guard's threshold as shown (catalogue.go).
	Catalogue      []catalogueRow
	StormThreshold string
	// Trigger, Recovery, Emails and Webhooks are the form's text as shown:
	// the saved settings, or what the user typed when it was refused.
	Trigger, Recovery string
	Emails, Webhooks  string
	Severities        []string
	Errors            formErrors
	// Rejected: the form shows input that was not saved, so the page must
	// not show the saved settings' delivery status over it.
	Rejected bool
	// Firing lists the active alerts switching alerting off would end; the
	// form asks to confirm before it does.
	Firing []alerts.Alert
	Names  map[string]string
	// Hooks are the saved webhooks' header and template forms.
	Hooks []hookForm
}

// hookForm is one saved webhook's headers and template as its form shows
// them: a header per line, "Name:" for a saved one (values are never
// shown; left empty, the saved value stays).
type hookForm struct {
	Index             int
	URL               string
	Headers, Template string
}

func (c *Console) alertSettingsData(r *http.Request) (settingsData, error) {
	b, err := c.projectBase(r, "Alert settings", "alerts")
	if err != nil {
		return settingsData{}, err
	}
	d := settingsData{base: b, Severities: alerting.Severities, Errors: formErrors{}}
	ac, err := c.access(r)
	if err != nil {
		return d, err
	}
	if d.Settings, err = c.opts.Alerts.Settings(r.Context(), ac, b.Project.ID); err != nil {
		return d, serviceError(err)
	}
	d.Catalogue, d.StormThreshold = catalogueRows(d.Settings.Settings), strconv.Itoa(d.Settings.StormThreshold)
	d.Trigger, d.Recovery = strconv.Itoa(d.Settings.TriggerCount), strconv.Itoa(d.Settings.RecoveryCount)
	d.Emails = strings.Join(d.Settings.Emails, "\n")
	hooks := make([]string, 0, len(d.Settings.Webhooks))
	for _, h := range d.Settings.Webhooks {
		hooks = append(hooks, h.URL)
	}
	d.Webhooks = strings.Join(hooks, "\n")
	for i, h := range d.Settings.Webhooks {
		var lines []string
		for _, hd := range h.Headers {
			lines = append(lines, hd.Name+":")
		}
		d.Hooks = append(d.Hooks, hookForm{Index: i, URL: h.URL, Headers: strings.Join(lines, "\n"), Template: h.Template})
	}
	return d, nil
}

func (c *Console) alertSettings(w http.ResponseWriter, r *http.Request) error {
	d, err := c.alertSettingsData(r)
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "alert_settings", "", d)
	return nil
}

// textLines splits a textarea into its non-empty lines and the number (from
// 1) of each line in the textarea, so an error about the API's n-th entry
// names the line the user sees.
func textLines(s string) (vals []string, lineNo []int) {
	vals = []string{}
	n := 0
	for l := range strings.Lines(s) {
		n++
		if l = strings.TrimSpace(l); l != "" {
			vals = append(vals, l)
			lineNo = append(lineNo, n)
		}
	}
	return vals, lineNo
}

// settingsFields is the one place that maps the API's alert-settings
// fields to the form: the form field an error shows beside and the form's
// words for it, which replace the API's name in the message. A %d in the
// words is the textarea's line of the API's list index.
var settingsFields = []struct {
	api   *regexp.Regexp
	field string
	words string
}{
	{regexp.MustCompile(`^enabled$`), "enabled", "Alerting on"},
	{regexp.MustCompile(`^triggerCount$`), "triggerCount", "Trigger count"},
	{regexp.MustCompile(`^recoveryCount$`), "recoveryCount", "Recovery count"},
	{regexp.MustCompile(`^severity$`), "severity", "Severity"},
	{regexp.MustCompile(`^emqxAlertPush$`), "emqxAlertPush", "EMQX alert push"},
	{regexp.MustCompile(`^emails$`), "emails", "E-mail recipients"},
	{regexp.MustCompile(`^emails\[(\d+)\]$`), "emails", "Line %d"},
	{regexp.MustCompile(`^webhooks$`), "webhooks", "Webhook URLs"},
	{regexp.MustCompile(`^webhooks\[(\d+)\](?:\.url)?$`), "webhooks", "Line %d"},
}

// settingsError places one API error on the form in the form's words.
// lines are the textareas' line numbers per form field.
func settingsError(apiField, msg string, lines map[string][]int) (field, shown string) {
	if field, shown, ok := catalogueError(apiField, msg); ok {
		return field, shown
	}
	for _, f := range settingsFields {
		m := f.api.FindStringSubmatch(apiField)
		if m == nil {
			continue
		}
		words := f.words
		if len(m) > 1 {
			i, _ := strconv.Atoi(m[1])
			line := i + 1
			if i < len(lines[f.field]) {
				line = lines[f.field][i]
			}
			words = fmt.Sprintf(f.words, line)
		}
		return f.field, strings.Replace(msg, apiField, words, 1)
	}
	return "", msg // no field of this form: about the whole form
}

// apiErrors lists every field error of an API refusal: its "errors" member
// when it has one, else its one field and message.
func apiErrors(e *APIError) [][2]string {
	var out [][2]string
	list, _ := e.Details["errors"].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		field, _ := m["field"].(string)
		msg, _ := m["message"].(string)
		if msg != "" {
			out = append(out, [2]string{field, msg})
		}
	}
	if len(out) == 0 {
		out = append(out, [2]string{e.Field, e.Message})
	}
	return out
}

func (c *Console) saveAlertSettings(w http.ResponseWriter, r *http.Request) error {
	d, err := c.alertSettingsData(r)
	if err != nil {
		return err
	}
	wasEnabled := d.Settings.Enabled
	emails, emailLines := textLines(r.PostFormValue("emails"))
	hooks, hookLines := textLines(r.PostFormValue("webhooks"))
	st := alerting.Settings{
		Enabled:       r.PostFormValue("enabled") == "on",
		EMQXAlertPush: r.PostFormValue("emqxAlertPush") == "on",
		CriticalOnly:  r.PostFormValue("criticalOnly") == "on",
		Severity:      r.PostFormValue("severity"),
		Emails:        emails,
		Webhooks:      []alerting.Webhook{},
	}
	// A webhook whose URL stays keeps its headers (their values are kept
	// by the service) and template, edited in its own form.
	saved := map[string]alerting.Webhook{}
	for _, h := range d.Settings.Webhooks {
		saved[h.URL] = h
	}
	for _, u := range hooks {
		h := saved[u]
		h.URL = u
		st.Webhooks = append(st.Webhooks, h)
	}
	d.Trigger, d.Recovery = r.PostFormValue("triggerCount"), r.PostFormValue("recoveryCount")
	notNumber := map[string]string{}
	for _, f := range []struct {
		name, words, raw string
		into             *int
	}{{"triggerCount", "Trigger count", d.Trigger, &st.TriggerCount}, {"recoveryCount", "Recovery count", d.Recovery, &st.RecoveryCount}} {
		n, err := strconv.Atoi(strings.TrimSpace(f.raw))
		if err != nil {
			// 0 is never accepted, so the API refuses the whole form and
			// still names every other wrong field; this field's message
			// is the console's, as the API never saw the text.
			n = 0
			notNumber[f.name] = fmt.Sprintf("%s must be a whole number, got %q", f.words, f.raw)
		}
		*f.into = n
	}
	d.Catalogue, d.StormThreshold = catalogueFromForm(r, &st, notNumber)
	d.Settings.Settings = st
	d.Emails, d.Webhooks = r.PostFormValue("emails"), r.PostFormValue("webhooks")

	if wasEnabled && !st.Enabled && r.PostFormValue("confirmFiring") != "yes" && len(notNumber) == 0 {
		if d.Firing, d.Names, err = c.firing(r, d.Project.ID); err != nil {
			return err
		}
		if len(d.Firing) > 0 {
			// Not saved until confirmed: the page keeps the input and
			// names what switching off would end.
			d.Rejected = true
			c.render(w, http.StatusConflict, "alert_settings", "", d)
			return nil
		}
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	apiErr, err := c.saveSettings(w, r, ac, d.Project.ID, st)
	if apiErr == nil {
		return err
	}
	lines := map[string][]int{"emails": emailLines, "webhooks": hookLines}
	for _, fe := range apiErrors(apiErr) {
		field, msg := settingsError(fe[0], fe[1], lines)
		if _, ok := notNumber[field]; ok {
			continue
		}
		d.Errors.add(field, msg)
	}
	for field, msg := range notNumber {
		d.Errors.add(field, msg)
	}
	d.Rejected = true
	c.render(w, apiErr.Status, "alert_settings", "", d)
	return nil
}

func (c *Console) testAlert(w http.ResponseWriter, r *http.Request) error {
	d, err := c.alertSettingsData(r)
	if err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	ch := alerts.TestChannel{Email: r.PostFormValue("email"), Webhook: r.PostFormValue("webhook")}
	_, err = c.opts.Alerts.TestChannel(r.Context(), ac, d.Project.ID, ch)
	err = serviceError(err)
	if fe, ok := formError(err); ok && d.CanAdmin {
		// Only an admin's page has the test form to show the refusal
		// in; anyone else's forced test gets the error page with it.
		for _, m := range fe {
			d.Errors.add("test", m)
		}
		c.render(w, statusOf(err), "alert_settings", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/projects/"+pathEscape(d.Project.ID)+"/alert-settings?done=test-sent", http.StatusSeeOther)
	return nil
}

// saveSettings saves st and redirects to the settings page. A refusal the
// form shows (a 4xx but 401 and 404) is returned as apiErr, with nothing
// written to w; any other failure as err, for the error page.
func (c *Console) saveSettings(w http.ResponseWriter, r *http.Request, ac *tenancy.Access, project string, st alerting.Settings) (apiErr *APIError, err error) {
	_, err = c.opts.Alerts.SaveSettings(r.Context(), ac, project, st)
	err = serviceError(err)
	if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusUnauthorized && apiErr.Status != http.StatusNotFound {
		return apiErr, nil
	}
	if err != nil {
		return nil, err
	}
	http.Redirect(w, r, "/projects/"+pathEscape(project)+"/alert-settings?done=saved", http.StatusSeeOther)
	return nil, nil
}

// saveWebhook saves one webhook's headers and template (its form under
// the channels), leaving the rest of the settings as saved.
func (c *Console) saveWebhook(w http.ResponseWriter, r *http.Request) error {
	d, err := c.alertSettingsData(r)
	if err != nil {
		return err
	}
	st := d.Settings.Settings
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	if !d.CanAdmin {
		// The service's refusal, the one the API gives.
		_, err := c.opts.Alerts.SaveSettings(r.Context(), ac, d.Project.ID, st)
		return serviceError(err)
	}
	u := r.PostFormValue("url")
	i := slices.IndexFunc(st.Webhooks, func(h alerting.Webhook) bool { return h.URL == u })
	if i < 0 {
		d.Errors.add("test", "That webhook is no longer in the settings; reload the page.")
		c.render(w, http.StatusBadRequest, "alert_settings", "", d)
		return nil
	}
	hook := st.Webhooks[i]
	hook.Headers, hook.Template = nil, strings.TrimSpace(r.PostFormValue("template"))
	headerLines, _ := textLines(r.PostFormValue("headers"))
	for _, l := range headerLines {
		name, value, _ := strings.Cut(l, ":")
		hook.Headers = append(hook.Headers, alerting.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	}
	st.Webhooks = slices.Clone(st.Webhooks)
	st.Webhooks[i] = hook
	apiErr, err := c.saveSettings(w, r, ac, d.Project.ID, st)
	if apiErr == nil {
		return err
	}
	// Shown under this webhook's form, as typed.
	d.Hooks[i].Headers, d.Hooks[i].Template = r.PostFormValue("headers"), r.PostFormValue("template")
	for _, fe := range apiErrors(apiErr) {
		d.Errors.add(fmt.Sprintf("hook%d", i), fe[1])
	}
	d.Rejected = true
	c.render(w, apiErr.Status, "alert_settings", "", d)
	return nil
}

// firing lists the project's active alerts and the names of its clusters.
func (c *Console) firing(r *http.Request, project string) ([]alerts.Alert, map[string]string, error) {
	ac, err := c.access(r)
	if err != nil {
		return nil, nil, err
	}
	list, err := c.opts.Alerts.List(r.Context(), ac, project, alerts.ListQuery{State: alerts.StateActive})
	if err != nil {
		return nil, nil, serviceError(err)
	}
	if len(list) == 0 {
		return nil, nil, nil
	}
	_, names, err := c.clusterNames(r, project)
	return list, names, err
}
