package console

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// registerSystem mounts the system admin's page.
func (c *Console) registerSystem(r *mux.Router) {
	r.Handle("/system", c.page(c.system)).Methods(http.MethodGet)
	r.Handle("/system/log-receiver", c.page(c.saveReceiver)).Methods(http.MethodPost)
	r.Handle("/system/log-receiver/test", c.page(c.testReceiver)).Methods(http.MethodPost)
	r.Handle("/system/notification-policy", c.page(c.savePolicy)).Methods(http.MethodPost)
	r.Handle("/system/quota", c.page(c.saveQuota)).Methods(http.MethodPost)
}

// policyView is the notification policy as the API shows it.
type policyView struct {
	AllowCIDRs   []string `json:"allowCidrs"`
	DenyCIDRs    []string `json:"denyCidrs"`
	Dependencies []struct {
		Name     string `json:"name"`
		Endpoint string `json:"endpoint"`
	} `json:"dependencies"`
}

// receiverView is the log receiver as the API shows it (no password).
type receiverView struct {
	Type               string `json:"type"`
	URL                string `json:"url"`
	Username           string `json:"username"`
	PasswordSet        bool   `json:"passwordSet"`
	IndexPrefix        string `json:"indexPrefix"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify"`
}

type systemData struct {
	base
	Licence  quota.Usage
	Users    []auth.UserView
	Bindings []tenancy.Binding
	Audit    []audit.Record
	Receiver receiverView
	Policy   policyView
	// Allowed and Denied are the policy form's text, one range a line.
	Allowed  string
	Denied   string
	Errors   fieldErrors
	Tested   string
	Projects map[string]string
	// Quotas lists every organization, each followed by its projects,
	// with their connection quota and its use.
	Quotas []quotaRow
}

// quotaRow is one organization's or project's connection quota.
type quotaRow struct {
	Kind, ID, Name string
	Usage          quota.ScopeUsage
}

func (c *Console) systemData(r *http.Request) (systemData, error) {
	d := systemData{base: c.base(r, "System"), Errors: fieldErrors{}, Projects: map[string]string{}}
	d.Active = "system"
	c.lastProject(r, &d.base)
	if err := c.nav(r, &d.base); err != nil {
		return d, err
	}
	ac, err := c.opts.Authz.Access(r.Context(), sessionFrom(r.Context()).principal)
	if err != nil {
		return d, err
	}
	if !ac.System {
		return d, &APIError{Status: http.StatusForbidden, Message: "the system page needs the system-admin role"}
	}
	d.System = true
	d.Flash = flashes[r.URL.Query().Get("done")]
	for _, o := range d.Orgs {
		for _, p := range o.Projects {
			d.Projects[p.ID] = o.Name + " / " + p.Name
		}
	}
	var users struct{ Items []auth.UserView }
	var bindings struct{ Items []tenancy.Binding }
	var records struct{ Items []audit.Record }
	for _, g := range []struct {
		path string
		out  any
	}{{"/licence", &d.Licence}, {"/users", &users}, {"/role-bindings", &bindings}, {"/audit?limit=50", &records}, {"/system/log-receiver", &d.Receiver}} {
		if err := c.get(r, g.path, g.out); err != nil {
			return d, err
		}
	}
	for _, o := range d.Orgs {
		row := quotaRow{Kind: "org", ID: o.ID, Name: o.Name}
		if err := c.get(r, "/orgs/"+pathEscape(o.ID)+"/quota", &row.Usage); err != nil {
			return d, err
		}
		d.Quotas = append(d.Quotas, row)
		for _, p := range o.Projects {
			row := quotaRow{Kind: "project", ID: p.ID, Name: p.Name}
			if err := c.get(r, "/projects/"+pathEscape(p.ID)+"/quota", &row.Usage); err != nil {
				return d, err
			}
			d.Quotas = append(d.Quotas, row)
		}
	}
	d.Users, d.Bindings, d.Audit = users.Items, bindings.Items, records.Items
	if err := c.get(r, "/system/notification-policy", &d.Policy); err != nil {
		return d, err
	}
	d.Allowed, d.Denied = strings.Join(d.Policy.AllowCIDRs, "\n"), strings.Join(d.Policy.DenyCIDRs, "\n")
	slices.SortFunc(d.Bindings, func(a, b tenancy.Binding) int { return strings.Compare(a.Username+a.Role, b.Username+b.Role) })
	return d, nil
}

func (c *Console) system(w http.ResponseWriter, r *http.Request) error {
	d, err := c.systemData(r)
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "system", "", d)
	return nil
}

// receiverForm reads the log receiver form; an empty password keeps the
// stored one (the API does that when the same store and user come back).
func receiverForm(r *http.Request) (receiverView, map[string]any) {
	v := receiverView{
		Type: r.PostFormValue("type"), URL: strings.TrimSpace(r.PostFormValue("url")), Username: strings.TrimSpace(r.PostFormValue("username")),
		IndexPrefix: strings.TrimSpace(r.PostFormValue("indexPrefix")), InsecureSkipVerify: r.PostFormValue("insecureSkipVerify") == "on",
	}
	body := map[string]any{"type": v.Type, "url": v.URL, "username": v.Username, "indexPrefix": v.IndexPrefix, "insecureSkipVerify": v.InsecureSkipVerify}
	if pw := r.PostFormValue("password"); pw != "" {
		body["password"] = pw
	}
	return v, body
}

func (c *Console) receiverCall(w http.ResponseWriter, r *http.Request, method, apiPath, done string) error {
	d, err := c.systemData(r)
	if err != nil {
		return err
	}
	view, body := receiverForm(r)
	var out struct {
		Message string `json:"message"`
	}
	_, err = c.call(r, method, apiPath, body, &out)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusUnauthorized {
		d.Receiver = view
		d.Errors[apiErr.Field] = apiErr.Message
		c.render(w, apiErr.Status, "system", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	if done == "" {
		d.Receiver, d.Tested = view, out.Message
		c.render(w, http.StatusOK, "system", "", d)
		return nil
	}
	http.Redirect(w, r, "/system?done="+done, http.StatusSeeOther)
	return nil
}

func (c *Console) saveReceiver(w http.ResponseWriter, r *http.Request) error {
	return c.receiverCall(w, r, http.MethodPut, "/system/log-receiver", "saved")
}

func (c *Console) testReceiver(w http.ResponseWriter, r *http.Request) error {
	return c.receiverCall(w, r, http.MethodPost, "/system/log-receiver/test", "")
}

// savePolicy puts the notification policy form; a refused range shows
// beside its list.
func (c *Console) savePolicy(w http.ResponseWriter, r *http.Request) error {
	d, err := c.systemData(r)
	if err != nil {
		return err
	}
	body := map[string][]string{"allowCidrs": lines(r.PostFormValue("allowCidrs")), "denyCidrs": lines(r.PostFormValue("denyCidrs"))}
	_, err = c.call(r, http.MethodPut, "/system/notification-policy", body, nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusUnauthorized {
		d.Allowed, d.Denied = r.PostFormValue("allowCidrs"), r.PostFormValue("denyCidrs")
		field := "allowCidrs"
		if strings.HasPrefix(apiErr.Field, "denyCidrs") {
			field = "denyCidrs"
		}
		d.Errors[field] = apiErr.Message
		c.render(w, apiErr.Status, "system", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/system?done=saved", http.StatusSeeOther)
	return nil
}

// saveQuota sets (or, when the field is left empty, removes) the
// connection quota of the organization or project named by the form,
// through the API; a refusal shows in that row.
func (c *Console) saveQuota(w http.ResponseWriter, r *http.Request) error {
	d, err := c.systemData(r)
	if err != nil {
		return err
	}
	kind, id := r.PostFormValue("kind"), r.PostFormValue("id")
	apiPath := "/projects/" + pathEscape(id) + "/quota"
	if kind == "org" {
		apiPath = "/orgs/" + pathEscape(id) + "/quota"
	}
	// Empty sends null, which removes the quota; anything but a whole
	// number goes as text, for the API to refuse with its own message.
	var limit any
	if v := strings.TrimSpace(r.PostFormValue("maxConnections")); v != "" {
		limit = v
		if n, convErr := strconv.Atoi(v); convErr == nil {
			limit = n
		}
	}
	_, err = c.call(r, http.MethodPut, apiPath, map[string]any{"maxConnections": limit}, nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusUnauthorized {
		d.Errors["quota:"+id] = apiErr.Message
		c.render(w, apiErr.Status, "system", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/system?done=quota#quota-title", http.StatusSeeOther)
	return nil
}
