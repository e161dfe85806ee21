package console

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

// base is what the layout needs on every page.
type base struct {
	Title        string
	User         string
	CSRF         string
	AssetVersion string
	Orgs         []navOrg
	Project      *tenancy.Project
	OrgName      string
	CanAdmin     bool
	// System: the caller is a system admin (the System page is theirs).
	System    bool
	Active    string
	Flash     string
	RefreshMs int
}

type navOrg struct {
	tenancy.Org
	Projects []tenancy.Project
}

// fieldErrors maps a form field to the message shown beside it; "" is a
// message about the whole form.
type fieldErrors map[string]string

func (c *Console) base(r *http.Request, title string) base {
	b := base{Title: title, AssetVersion: c.assetVersion, RefreshMs: int(c.opts.RefreshInterval / time.Millisecond)}
	if s := sessionFrom(r.Context()); s != nil {
		b.User, b.CSRF = s.principal.Username, s.csrf
	}
	return b
}

// projectBase loads the project in the path (404 when the caller may not
// see it) and the navigation: every org and project the caller may see.
func (c *Console) projectBase(r *http.Request, title, active string) (base, error) {
	return c.projectView(r, title, active, true)
}

// projectPart is projectBase for a fragment a page polls: the navigation
// is no part of it, so it is not built.
func (c *Console) projectPart(r *http.Request) (base, error) {
	return c.projectView(r, "", "", false)
}

// projectPage is projectBase, or projectPart when part: the request is
// the poll of the page's fragment.
func (c *Console) projectPage(r *http.Request, title, active string, part bool) (base, error) {
	if part {
		return c.projectPart(r)
	}
	return c.projectBase(r, title, active)
}

func (c *Console) projectView(r *http.Request, title, active string, withNav bool) (base, error) {
	b := c.base(r, title)
	b.Active = active
	ac, err := c.access(r)
	if err != nil {
		return b, err
	}
	p, err := c.opts.Authz.Project(r.Context(), ac, mux.Vars(r)["project"], tenancy.View, "")
	if err != nil {
		return b, serviceError(err)
	}
	b.Project = &p
	if withNav {
		if err := c.nav(r, &b); err != nil {
			return b, err
		}
	}
	b.CanAdmin = ac.Project(p) >= tenancy.Admin
	b.System = ac.System
	b.Flash = flashes[r.URL.Query().Get("done")]
	return b, nil
}

func (c *Console) nav(r *http.Request, b *base) error {
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	orgs, err := c.opts.Authz.Orgs(r.Context(), ac)
	if err != nil {
		return err
	}
	projects, err := c.opts.Authz.Projects(r.Context(), ac, "")
	if err != nil {
		return err
	}
	for _, o := range orgs {
		n := navOrg{Org: o}
		for _, p := range projects {
			if p.Org == o.ID {
				n.Projects = append(n.Projects, p)
			}
		}
		slices.SortFunc(n.Projects, func(a, b tenancy.Project) int { return strings.Compare(a.Name, b.Name) })
		if len(n.Projects) > 0 {
			b.Orgs = append(b.Orgs, n)
		}
		if b.Project != nil && o.ID == b.Project.Org {
			b.OrgName = o.Name
		}
	}
	slices.SortFunc(b.Orgs, func(a, b navOrg) int { return strings.Compare(a.Name, b.Name) })
	return nil
}

var flashes = map[string]string{
	"created":       "Cluster created.",
	"saved":         "Changes saved.",
	"max":           "Max connections changed; the agent applies it to EMQX within seconds.",
	"logs":          "Log collection switched; the agent follows within seconds.",
	"transferred":   "Cluster transferred to this project. Its log lines, alerts and series from before the transfer stay in the old project.",
	"deleted":       "Cluster deleted. Its agent is told to unregister; the EMQX cluster itself is not touched.",
	"alert-removed": "Alert removed.",
	"test-sent":     "Test notification sent to every channel of the project.",
	"quota":         "Connection quota saved.",
	"silenced":      "Silence created: Alertmanager sends nothing for what it matches until it ends.",
	"silence-ended": "Silence expired: its alerts notify again.",
	"storm-cleared": "Alert storm cleared: the project's notifications flow again.",
	"history-clear": "Alert history cleared.",
}

// --- login and session ---

type loginData struct {
	base
	Next     string
	Username string
	Message  string
	Errors   fieldErrors
	LoginTok string
}

var loginReasons = map[string]string{
	"expired": "Your session has expired. Log in again.",
	"logout":  "You have logged out.",
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.renderLogin(w, r, http.StatusOK, loginData{Message: loginReasons[r.URL.Query().Get("reason")], Next: safeNext(r.URL.Query().Get("next"))})
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, status int, d loginData) {
	d.base = c.base(r, "Log in")
	d.LoginTok = randomToken()
	c.setCookie(w, loginCookie, d.LoginTok, time.Time{})
	securityHeaders(w)
	c.render(w, status, "login", "", d)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	if e := readForm(w, r, maxLoginFormBytes); e != nil {
		c.renderLogin(w, r, e.Status, loginData{Errors: fieldErrors{"": e.Message}})
		return
	}
	d := loginData{Username: r.PostFormValue("username"), Next: safeNext(r.PostFormValue("next")), Errors: fieldErrors{}}
	ck, err := r.Cookie(loginCookie)
	if err != nil || ck.Value == "" || r.PostFormValue(CSRFField) != ck.Value {
		d.Errors[""] = "The login form expired. Please try again."
		c.renderLogin(w, r, http.StatusForbidden, d)
		return
	}
	s, err := c.opts.Auth.Login(r.Context(), d.Username, secret.String(r.PostFormValue("password")), r.RemoteAddr)
	if err = serviceError(err); err != nil {
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			c.renderError(w, r, err)
			return
		}
		d.Errors[apiErr.Field] = apiErr.Message
		c.renderLogin(w, r, apiErr.Status, d)
		return
	}
	c.clearCookie(w, loginCookie)
	// A browser-session cookie: were it to expire with the session, the
	// browser would drop it silently and the console could not tell the
	// user that the session ended rather than never existed.
	c.setCookie(w, SessionCookie, s.Token.Reveal(), time.Time{})
	next := d.Next
	if next == "" {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// safeNext keeps only same-site absolute paths, so the login page cannot
// be used to send a user elsewhere: printable ASCII only (the console's own
// links are escaped; a tab or newline is dropped by browsers and turns
// "/\t/host" into "//host"), no backslash (browsers read it as "/"), no
// "//" start (another host), and nothing url.Parse reads as more than a
// path and query. Anything else leaves next empty: the caller lands on /.
func safeNext(s string) string {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '\\' {
			return ""
		}
	}
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.HasPrefix(s, "/login") {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return ""
	}
	return s
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request) error {
	if err := c.opts.Sessions.EndSession(r.Context(), sessionFrom(r.Context()).token); err != nil {
		return err
	}
	c.clearCookie(w, SessionCookie)
	http.Redirect(w, r, "/login?reason=logout", http.StatusSeeOther)
	return nil
}

// --- navigation ---

func (c *Console) home(w http.ResponseWriter, r *http.Request) error {
	b := c.base(r, "Projects")
	if err := c.nav(r, &b); err != nil {
		return err
	}
	if len(b.Orgs) > 0 {
		http.Redirect(w, r, "/projects/"+pathEscape(b.Orgs[0].Projects[0].ID)+"/clusters", http.StatusSeeOther)
		return nil
	}
	c.render(w, http.StatusOK, "empty", "", b)
	return nil
}

// switchProject opens the chosen project on the tab the caller was on
// (the switcher sends it), so changing projects costs no further click.
func (c *Console) switchProject(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Query().Get("project")
	if p == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	tab := "clusters"
	if t := r.URL.Query().Get("tab"); slices.Contains([]string{"monitoring", "alerts", "logs"}, t) {
		tab = t
	}
	http.Redirect(w, r, "/projects/"+pathEscape(p)+"/"+tab, http.StatusSeeOther)
	return nil
}

func (c *Console) projectHome(w http.ResponseWriter, r *http.Request) error {
	http.Redirect(w, r, "/projects/"+pathEscape(mux.Vars(r)["project"])+"/clusters", http.StatusSeeOther)
	return nil
}

// --- cluster list ---

type listData struct {
	base
	State    string
	Q        string
	States   []stateCount
	Clusters []clusterRow
	Total    int // matching the filter
	All      int // in the project
	// Token is the API page token this page was read with ("" for the
	// first page); the refresh re-reads the same page with it.
	Token string
	// NextToken and PrevToken lead to the neighbouring pages.
	NextToken, PrevToken string
	// Page and Pages number the pages for people. The API pages by token,
	// so the number travels in the URL beside it and only labels the page.
	Page     int
	Pages    int
	From, To int
	Updated  time.Time
}

// clusterRow is one row of the list with what it shows worked out before
// rendering: html/template calls a function through reflection, and the
// four per row (when three times, connLimit) were some 200 such calls per
// page, a good part of a render at every 5 s refresh of every open list.
// Cluster is a named field, not embedded: text/template finds a promoted
// field by a breadth-first walk of the embedded structs on every use.
type clusterRow struct {
	Cluster                clusters.Cluster
	Limit                  limitState
	Started, Managed, Last template.HTML
}

func (c *Console) clusterRows(items []clusters.Cluster) []clusterRow {
	rows := make([]clusterRow, len(items))
	for i, cl := range items {
		rows[i] = clusterRow{Cluster: cl, Limit: connLimit(cl.Connections, cl.MaxConnections), Last: "never"}
		rows[i].Started, _ = c.when(cl.StartedAt)
		rows[i].Managed, _ = c.when(cl.ManagedSince)
		if cl.LastReportAt != nil {
			rows[i].Last, _ = c.when(*cl.LastReportAt)
		}
	}
	return rows
}

type stateCount struct {
	State string
	Count int
}

// clusterList renders one page of the project's clusters from one page of
// the API's list: filters, paging and counts are the API's, so the page
// costs the same at 10 or 10,000 clusters.
func (c *Console) clusterList(w http.ResponseWriter, r *http.Request) error {
	part := r.Header.Get("HX-Request") != "" && r.Header.Get("HX-Target") == "cluster-table"
	b, err := c.projectPage(r, "Clusters", "clusters", part)
	if err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	d := listData{base: b, State: q.Get("state"), Q: strings.TrimSpace(q.Get("q")), Token: q.Get("pageToken")}
	if d.State != "" && !slices.Contains(clusters.States, d.State) {
		d.State = ""
	}
	d.Page = 1
	if d.Token != "" {
		d.Page = max(1, atoiOr(q.Get("page"), 1))
	}
	lq := clusters.ListQuery{Q: d.Q, State: d.State, PageToken: d.Token, Limit: c.opts.PageSize}
	list, err := c.opts.Clusters.List(r.Context(), ac, b.Project.ID, lq)
	err = serviceError(err)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest && apiErr.Field == "pageToken" && d.Token != "" {
		// A token from another filter or an old link: start over.
		d.Token, d.Page = "", 1
		lq.PageToken = ""
		list, err = c.opts.Clusters.List(r.Context(), ac, b.Project.ID, lq)
		err = serviceError(err)
	}
	if err != nil {
		return err
	}
	for _, s := range clusters.States {
		d.States = append(d.States, stateCount{State: s, Count: list.StateCounts[s]})
		d.All += list.StateCounts[s]
	}
	switch {
	case list.PrevPageToken == "":
		d.Page = 1 // whatever the URL said: the API says this is the first page
	case d.Page == 1:
		d.Page = 2
	}
	d.Clusters, d.Total = c.clusterRows(list.Items), list.Total
	d.NextToken, d.PrevToken = list.NextPageToken, list.PrevPageToken
	size := c.opts.PageSize
	d.Pages = max(1, (d.Total+size-1)/size, d.Page)
	if d.NextToken == "" {
		d.Pages = d.Page
	}
	d.From = (d.Page-1)*size + 1
	d.To = d.From + len(d.Clusters) - 1
	d.Updated = c.opts.Now()
	if part {
		c.render(w, http.StatusOK, "clusters", "cluster-table", d)
		return nil
	}
	c.render(w, http.StatusOK, "clusters", "", d)
	return nil
}

func atoiOr(s string, def int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

// --- add cluster ---

type newData struct {
	base
	Name       string
	ServiceURL string
	Errors     fieldErrors
}

func (c *Console) newCluster(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "Add cluster", "clusters")
	if err != nil {
		return err
	}
	if !b.CanAdmin {
		c.renderStatus(w, r, http.StatusForbidden, "Adding a cluster needs project-admin, org-admin or system-admin on this project.")
		return nil
	}
	c.render(w, http.StatusOK, "cluster_new", "", newData{base: b})
	return nil
}

func (c *Console) createCluster(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "Add cluster", "clusters")
	if err != nil {
		return err
	}
	d := newData{base: b, Name: strings.TrimSpace(r.PostFormValue("name")), ServiceURL: strings.TrimSpace(r.PostFormValue("serviceUrl"))}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	created, err := c.opts.Clusters.Create(r.Context(), ac, b.Project.ID, clusters.CreateRequest{Name: d.Name, ServiceURL: d.ServiceURL})
	err = serviceError(err)
	if fe, ok := formError(err); ok {
		d.Errors = fe
		c.render(w, statusOf(err), "cluster_new", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	// Straight on to the guide: a new entry is only useful registered.
	return c.renderRegistration(w, r, b, created)
}

// formError turns an API refusal of user input into messages per field.
func formError(err error) (fieldErrors, bool) {
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		return nil, false
	}
	switch apiErr.Status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity, http.StatusForbidden:
		return fieldErrors{apiErr.Field: apiErr.Message}, true
	}
	return nil, false
}

func statusOf(err error) int {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Status
	}
	return http.StatusInternalServerError
}

// --- registration guide ---

type registrationData struct {
	base
	Cluster      clusters.Cluster
	Reg          clusters.Registration
	Register     string // the register command as the API renders it
	DashboardURL string // defaults the API filled in, or ""
	APIURL       string
}

func (c *Console) registration(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "Register", "clusters")
	if err != nil {
		return err
	}
	cl, err := c.cluster(r, b)
	if err != nil {
		return err
	}
	if registeredMeanwhile(r, cl) {
		return c.refuseStaleRegister(w, r)
	}
	return c.renderRegistration(w, r, b, cl)
}

func (c *Console) renderRegistration(w http.ResponseWriter, r *http.Request, b base, cl clusters.Cluster) error {
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	reg, err := c.opts.Clusters.IssueRegistration(r.Context(), ac, cl.ID)
	if err != nil {
		return serviceError(err)
	}
	b.Title = "Register " + cl.Name
	d := registrationData{base: b, Cluster: cl, Reg: reg}
	if len(reg.Commands) > 0 {
		d.Register = reg.Commands[0].Register
	}
	if !slices.Contains(reg.Placeholders, clusters.PlaceholderDashboardURL) {
		d.DashboardURL, d.APIURL = cl.ServiceURL, cl.ServiceURL
	}
	c.render(w, http.StatusOK, "registration", "", d)
	return nil
}

// --- cluster detail ---

type detailData struct {
	base
	Cluster   clusters.Cluster
	Licence   quota.Usage
	Quota     quota.ScopeUsage
	Targets   []tenancy.Project
	Errors    fieldErrors
	Max       string
	Name      string
	Service   string
	MaxDetail map[string]any
	// MaxFromGuide is set when the max connections change came from the
	// Register panel's form, so its refusal shows there.
	MaxFromGuide bool
}

// cluster loads the entry in the path; it must belong to the project in the
// path (a stale link after a transfer answers 404 like any unknown id).
func (c *Console) cluster(r *http.Request, b base) (clusters.Cluster, error) {
	ac, err := c.access(r)
	if err != nil {
		return clusters.Cluster{}, err
	}
	cl, err := c.opts.Clusters.Get(r.Context(), ac, mux.Vars(r)["id"])
	if err != nil {
		return cl, serviceError(err)
	}
	if cl.Project != b.Project.ID {
		return cl, &APIError{Status: http.StatusNotFound, Message: "no cluster " + mux.Vars(r)["id"] + " in this project"}
	}
	return cl, nil
}

func (c *Console) detail(r *http.Request) (detailData, error) {
	b, err := c.projectBase(r, "Cluster", "clusters")
	if err != nil {
		return detailData{}, err
	}
	cl, err := c.cluster(r, b)
	if err != nil {
		return detailData{}, err
	}
	b.Title = cl.Name
	d := detailData{base: b, Cluster: cl, Errors: fieldErrors{}, Max: strconv.Itoa(cl.MaxConnections), Name: cl.Name, Service: cl.ServiceURL}
	ac, err := c.access(r)
	if err != nil {
		return d, err
	}
	if d.Licence, d.Quota, err = c.opts.Clusters.Limits(r.Context(), ac, b.Project.ID); err != nil {
		return d, serviceError(err)
	}
	if b.CanAdmin {
		for _, o := range b.Orgs {
			for _, p := range o.Projects {
				if p.ID != b.Project.ID && ac.Project(p) >= tenancy.Admin {
					d.Targets = append(d.Targets, p)
				}
			}
		}
	}
	return d, nil
}

func (c *Console) clusterDetail(w http.ResponseWriter, r *http.Request) error {
	d, err := c.detail(r)
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "cluster", "", d)
	return nil
}

// clusterPart renders one fragment of the cluster page alone, polled so a
// registering agent and every report show up without a reload: the state
// badge ("cluster-state", on the detail and guide pages) and the Status
// panel ("cluster-status").
func (c *Console) clusterPart(fragment string) pageFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		b, err := c.projectPart(r)
		if err != nil {
			return err
		}
		cl, err := c.cluster(r, b)
		if err != nil {
			return err
		}
		c.render(w, http.StatusOK, "cluster", fragment, struct {
			base
			Cluster clusters.Cluster
		}{b, cl})
		return nil
	}
}

func (c *Console) openDashboard(w http.ResponseWriter, r *http.Request) error {
	b, err := c.projectBase(r, "", "")
	if err != nil {
		return err
	}
	cl, err := c.cluster(r, b)
	if err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	j, err := c.opts.Clusters.Dashboard(r.Context(), ac, cl.ID)
	if err != nil {
		return serviceError(err)
	}
	if !j.Login {
		// Say why the dashboard will ask for a login instead of leaving
		// the user at EMQX's login page without a word.
		c.render(w, http.StatusOK, "dashboard", "", struct {
			base
			Cluster     clusters.Cluster
			Reason, URL string
		}{b, cl, j.Reason, j.URL})
		return nil
	}
	// The login travels in the URL's fragment; keep it out of caches and
	// of the Referer the dashboard's own requests would send.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, j.URL, http.StatusFound)
	return nil
}

// change runs one change of the detail page's forms, do, on the cluster
// in the path with the caller's access; a refusal is shown on the page next
// to the field, success redirects with a message.
func (c *Console) change(w http.ResponseWriter, r *http.Request, do func(ac *tenancy.Access, id string) error, done string, fill func(*detailData)) error {
	d, err := c.detail(r)
	if err != nil {
		return err
	}
	if fill != nil {
		fill(&d)
	}
	if len(d.Errors) == 0 {
		ac, err := c.access(r)
		if err != nil {
			return err
		}
		err = serviceError(do(ac, d.Cluster.ID))
		if fe, ok := formError(err); ok {
			d.Errors = fe
			var apiErr *APIError
			if errors.As(err, &apiErr) && apiErr.Field == "maxConnections" {
				d.MaxDetail = apiErr.Details
			}
			c.render(w, statusOf(err), "cluster", "", d)
			return nil
		}
		if err != nil {
			return err
		}
	} else {
		c.render(w, http.StatusBadRequest, "cluster", "", d)
		return nil
	}
	http.Redirect(w, r, "/projects/"+pathEscape(d.Project.ID)+"/clusters/"+pathEscape(d.Cluster.ID)+"?done="+done, http.StatusSeeOther)
	return nil
}

func (c *Console) editCluster(w http.ResponseWriter, r *http.Request) error {
	name, service := strings.TrimSpace(r.PostFormValue("name")), strings.TrimSpace(r.PostFormValue("serviceUrl"))
	update := func(ac *tenancy.Access, id string) error {
		_, err := c.opts.Clusters.Update(r.Context(), ac, id, clusters.PatchRequest{Name: &name, ServiceURL: &service})
		return err
	}
	return c.change(w, r, update, "saved", func(d *detailData) {
		d.Name, d.Service = name, service
	})
}

// setLogCollection switches the agent's log shipping on or off.
func (c *Console) setLogCollection(w http.ResponseWriter, r *http.Request) error {
	on := r.PostFormValue("enabled") == "true"
	return c.change(w, r, func(ac *tenancy.Access, id string) error {
		_, err := c.opts.Clusters.Update(r.Context(), ac, id, clusters.PatchRequest{LogCollection: &clusters.LogCollectionPatch{Enabled: &on}})
		return err
	}, "logs", nil)
}

func (c *Console) setMaxConnections(w http.ResponseWriter, r *http.Request) error {
	raw := strings.TrimSpace(r.PostFormValue("maxConnections"))
	n, convErr := strconv.Atoi(raw)
	fromGuide := r.PostFormValue("form") == "register"
	set := func(ac *tenancy.Access, id string) error {
		_, err := c.opts.Clusters.SetMaxConnections(r.Context(), ac, id, clusters.MaxConnectionsRequest{MaxConnections: &n})
		return err
	}
	return c.change(w, r, set, "max", func(d *detailData) {
		d.Max, d.MaxFromGuide = raw, fromGuide
		if convErr != nil || n > math.MaxInt32 {
			d.Errors["maxConnections"] = fmt.Sprintf("max connections must be a whole number from 1 to the licence's per-cluster ceiling (%d)", d.Licence.MaxPerCluster)
		}
	})
}

func (c *Console) transfer(w http.ResponseWriter, r *http.Request) error {
	target := r.PostFormValue("project")
	d, err := c.detail(r)
	if err != nil {
		return err
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	_, err = c.opts.Clusters.Transfer(r.Context(), ac, d.Cluster.ID, clusters.TransferRequest{Project: target})
	err = serviceError(err)
	if fe, ok := formError(err); ok {
		d.Errors = fe
		c.render(w, statusOf(err), "cluster", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/projects/"+pathEscape(target)+"/clusters/"+pathEscape(d.Cluster.ID)+"?done=transferred", http.StatusSeeOther)
	return nil
}

func (c *Console) deleteCluster(w http.ResponseWriter, r *http.Request) error {
	d, err := c.detail(r)
	if err != nil {
		return err
	}
	if r.PostFormValue("confirm") != d.Cluster.Name {
		d.Errors["confirm"] = "type the cluster's name exactly (" + d.Cluster.Name + ") to confirm the deletion"
		c.render(w, http.StatusBadRequest, "cluster", "", d)
		return nil
	}
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	err = serviceError(c.opts.Clusters.Delete(r.Context(), ac, d.Cluster.ID))
	if fe, ok := formError(err); ok {
		d.Errors = fe
		c.render(w, statusOf(err), "cluster", "", d)
		return nil
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/projects/"+pathEscape(d.Project.ID)+"/clusters?done=deleted", http.StatusSeeOther)
	return nil
}

// --- errors ---

type errorData struct {
	base
	Status  int
	Message string
}

func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, msg string) {
	d := errorData{base: c.base(r, http.StatusText(status)), Status: status, Message: msg}
	c.render(w, status, "error", "", d)
}

func (c *Console) renderError(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		switch apiErr.Status {
		case http.StatusUnauthorized:
			c.clearCookie(w, SessionCookie)
			c.toLogin(w, r, "expired")
			return
		case http.StatusInternalServerError:
		default:
			c.renderStatus(w, r, apiErr.Status, apiErr.Message)
			return
		}
	}
	c.logger.Error("console request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	c.renderStatus(w, r, http.StatusInternalServerError, "Something went wrong on the server; its log has the details.")
}

// --- template functions ---

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"when":    c.when,
		"stamp":   stamp,
		"restamp": c.restamp,
		"add":     func(a, b int) int { return a + b },
		"pageURL": func(d listData, token string, page int) string {
			v := url.Values{}
			if d.State != "" {
				v.Set("state", d.State)
			}
			if d.Q != "" {
				v.Set("q", d.Q)
			}
			if token != "" {
				v.Set("pageToken", token)
				v.Set("page", strconv.Itoa(page))
			}
			u := "/projects/" + pathEscape(d.Project.ID) + "/clusters"
			if len(v) > 0 {
				u += "?" + v.Encode()
			}
			return u
		},
		"connLimit": connLimit,
		"percent": func(a, b int) int {
			if b <= 0 {
				return 0
			}
			return min(100, a*100/b)
		},
	}
}

// ago is a short duration for humans: "12s", "5m", "3h", "2d".
func ago(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

// nearLimitPercent is where a cluster's connections start to show as near
// its max connections: a warning while EMQX still accepts clients.
const nearLimitPercent = 80

// limitState says how a cluster's connections stand against its max
// connections, in words and as a CSS class, so the pages never show it by
// colour alone.
type limitState struct {
	Level string // "over", "near" or "" (fine)
	Text  string
	// NearAt is where near begins, for the meter's high mark.
	NearAt int
}

// connLimit judges connections against max. Over the limit EMQX refuses new
// clients (it keeps the ones it has), which is why it is shown loudest.
func connLimit(connections, maxConns int) limitState {
	l := limitState{NearAt: maxConns * nearLimitPercent / 100}
	switch {
	case maxConns <= 0:
	case connections > maxConns:
		l.Level, l.Text = "over", fmt.Sprintf("over limit: %d / %d — EMQX refuses new clients", connections, maxConns)
	case connections*100 >= maxConns*nearLimitPercent:
		l.Level, l.Text = "near", fmt.Sprintf("near limit: %d / %d (%d%%)", connections, maxConns, connections*100/maxConns)
	}
	return l
}
