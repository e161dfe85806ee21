package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/logstore"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

// registerSystem mounts the system admin's page.
func (c *Console) registerSystem(r *mux.Router) {
	r.Handle("/system", c.page(c.system)).Methods(http.MethodGet)
	r.Handle("/system/log-receiver", c.page(c.audited(c.saveReceiver))).Methods(http.MethodPost)
	r.Handle("/system/log-receiver/test", c.page(c.audited(c.testReceiver))).Methods(http.MethodPost)
	r.Handle("/system/notification-policy", c.page(c.audited(c.savePolicy))).Methods(http.MethodPost)
	r.Handle("/system/quota", c.page(c.audited(c.saveQuota))).Methods(http.MethodPost)
}

// receiverView is the log receiver as the form shows it (no password).
type receiverView struct {
	Type               string
	URL                string
	Username           string
	PasswordSet        bool
	IndexPrefix        string
	InsecureSkipVerify bool
}

func viewOf(cfg logstore.ReceiverConfig) receiverView {
	return receiverView{Type: cfg.Type, URL: cfg.URL, Username: cfg.Username, PasswordSet: !cfg.Password.IsZero(),
		IndexPrefix: cfg.IndexPrefix, InsecureSkipVerify: cfg.InsecureSkipVerify}
}

type systemData struct {
	base
	Licence  quota.Usage
	Users    []auth.UserView
	Bindings []tenancy.Binding
	Audit    []audit.Record
	Receiver receiverView
	Policy   destpolicy.Reply
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
	ac, err := c.access(r)
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
	if err := c.systemReads(r, ac, &d); err != nil {
		return d, serviceError(err)
	}
	d.Allowed, d.Denied = strings.Join(d.Policy.AllowCIDRs, "\n"), strings.Join(d.Policy.DenyCIDRs, "\n")
	slices.SortFunc(d.Bindings, func(a, b tenancy.Binding) int { return strings.Compare(a.Username+a.Role, b.Username+b.Role) })
	return d, nil
}

// systemReads fills what the System page shows, each as its API route
// answers it.
func (c *Console) systemReads(r *http.Request, ac *tenancy.Access, d *systemData) error {
	ctx := r.Context()
	var err error
	if d.Licence, err = c.opts.Quota.Licence(ctx, ac); err != nil {
		return err
	}
	if d.Users, err = c.opts.Auth.Users(ctx, sessionFrom(ctx).principal); err != nil {
		return err
	}
	if d.Bindings, err = c.opts.Tenancy.Bindings(ctx, ac); err != nil {
		return err
	}
	visible, err := tenancy.AuditVisible(ac)
	if err != nil {
		return err
	}
	if d.Audit, err = c.opts.AuditLog.List(ctx, audit.Filter{Limit: systemAuditRecords, Visible: visible}); err != nil {
		return err
	}
	cfg, err := c.opts.Logs.Receiver(ac)
	if err != nil {
		return err
	}
	d.Receiver = viewOf(cfg)
	for _, o := range d.Orgs {
		row := quotaRow{Kind: "org", ID: o.ID, Name: o.Name}
		if row.Usage, err = c.opts.Quota.Usage(ctx, ac, quota.KindOrg, o.ID); err != nil {
			return err
		}
		d.Quotas = append(d.Quotas, row)
		for _, p := range o.Projects {
			row := quotaRow{Kind: "project", ID: p.ID, Name: p.Name}
			if row.Usage, err = c.opts.Quota.Usage(ctx, ac, quota.KindProject, p.ID); err != nil {
				return err
			}
			d.Quotas = append(d.Quotas, row)
		}
	}
	d.Policy, err = c.opts.Policy.Policy(ctx, ac)
	return err
}

// systemAuditRecords is how many of the latest audit records System shows.
const systemAuditRecords = 50

func (c *Console) system(w http.ResponseWriter, r *http.Request) error {
	d, err := c.systemData(r)
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "system", "", d)
	return nil
}

// receiverForm reads the log receiver form; an empty password keeps the
// stored one (the service does that when the same store and user come
// back).
func receiverForm(r *http.Request) logstore.ReceiverConfig {
	return logstore.ReceiverConfig{
		Type: r.PostFormValue("type"), URL: strings.TrimSpace(r.PostFormValue("url")), Username: strings.TrimSpace(r.PostFormValue("username")),
		Password:    secret.String(r.PostFormValue("password")),
		IndexPrefix: strings.TrimSpace(r.PostFormValue("indexPrefix")), InsecureSkipVerify: r.PostFormValue("insecureSkipVerify") == "on",
	}
}

// systemChange makes one System form's change, do, with the caller's
// access, before anything else: the service decides who may. A refusal
// renders the page with the form as typed (show fills it in) for a system
// admin; anyone else gets the service's refusal itself, as the API gives
// it. Success redirects to done or, when done is "", renders the page with
// show's additions.
func (c *Console) systemChange(w http.ResponseWriter, r *http.Request, do func(*tenancy.Access) error, show func(*systemData, *APIError), done string) error {
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	err = serviceError(do(ac))
	var apiErr *APIError
	refused := errors.As(err, &apiErr) && apiErr.Status < 500 && apiErr.Status != http.StatusUnauthorized
	switch {
	case err != nil && !refused:
		return err
	case !refused && done != "":
		http.Redirect(w, r, done, http.StatusSeeOther)
		return nil
	}
	d, dataErr := c.systemData(r)
	if dataErr != nil {
		return errors.Join(err, dataErr)
	}
	status := http.StatusOK
	if refused {
		status = apiErr.Status
	}
	show(&d, apiErr)
	c.render(w, status, "system", "", d)
	return nil
}

// receiverChange saves (save) or tests the log receiver form.
func (c *Console) receiverChange(w http.ResponseWriter, r *http.Request, save bool) error {
	cfg := receiverForm(r)
	var tested string
	do := func(ac *tenancy.Access) (err error) {
		if save {
			_, err = c.opts.Logs.SetReceiver(r.Context(), ac, cfg)
		} else {
			tested, err = c.opts.Logs.TestReceiver(r.Context(), ac, &cfg)
		}
		return err
	}
	show := func(d *systemData, apiErr *APIError) {
		// As typed; the password field comes back empty.
		d.Receiver = viewOf(cfg)
		d.Receiver.PasswordSet = false
		if apiErr != nil {
			d.Errors[apiErr.Field] = apiErr.Message
		}
		d.Tested = tested
	}
	done := ""
	if save {
		done = "/system?done=saved"
	}
	return c.systemChange(w, r, do, show, done)
}

func (c *Console) saveReceiver(w http.ResponseWriter, r *http.Request) error {
	return c.receiverChange(w, r, true)
}

func (c *Console) testReceiver(w http.ResponseWriter, r *http.Request) error {
	return c.receiverChange(w, r, false)
}

// savePolicy sets the notification policy form; a refused range shows
// beside its list.
func (c *Console) savePolicy(w http.ResponseWriter, r *http.Request) error {
	rules := destpolicy.Rules{AllowCIDRs: lines(r.PostFormValue("allowCidrs")), DenyCIDRs: lines(r.PostFormValue("denyCidrs"))}
	do := func(ac *tenancy.Access) error {
		_, err := c.opts.Policy.SetPolicy(r.Context(), ac, rules)
		return err
	}
	show := func(d *systemData, apiErr *APIError) {
		d.Allowed, d.Denied = r.PostFormValue("allowCidrs"), r.PostFormValue("denyCidrs")
		field := "allowCidrs"
		if strings.HasPrefix(apiErr.Field, "denyCidrs") {
			field = "denyCidrs"
		}
		d.Errors[field] = apiErr.Message
	}
	return c.systemChange(w, r, do, show, "/system?done=saved")
}

// saveQuota sets (or, when the field is left empty, removes) the
// connection quota of the organization or project named by the form; a
// refusal shows in that row.
func (c *Console) saveQuota(w http.ResponseWriter, r *http.Request) error {
	kind, id := quota.KindProject, r.PostFormValue("id")
	if r.PostFormValue("kind") == "org" {
		kind = quota.KindOrg
	}
	// maxConnections as the API takes it: empty is null, which removes
	// the quota; anything but a whole number goes as text, for the
	// service to refuse with its own message.
	limit := json.RawMessage("null")
	if v := strings.TrimSpace(r.PostFormValue("maxConnections")); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			limit = strconv.AppendInt(nil, int64(n), 10)
		} else {
			limit, _ = json.Marshal(v) // a string always encodes
		}
	}
	do := func(ac *tenancy.Access) error {
		_, err := c.opts.Quota.Set(r.Context(), ac, kind, id, limit)
		return err
	}
	show := func(d *systemData, apiErr *APIError) { d.Errors["quota:"+id] = apiErr.Message }
	return c.systemChange(w, r, do, show, "/system?done=quota#quota-title")
}
