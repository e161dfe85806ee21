package alerts

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// Bounds of a silence.
const (
	MinSilenceDuration = time.Minute
	// MaxSilenceDuration is 30 days: longer is switching a rule off, which
	// the alert settings do.
	MaxSilenceDuration = 30 * 24 * time.Hour
	// MaxSilenceComment is in characters.
	MaxSilenceComment = 500
	// MaxSilenceLabels bounds the labels of one silence.
	MaxSilenceLabels = 16
	// MaxLabelValue bounds a label value in characters.
	MaxLabelValue = 256
	// MaxActiveSilences is how many unexpired silences a project may hold.
	MaxActiveSilences = 100
)

// States of a silence, as Alertmanager names them.
const (
	SilenceActive  = "active"
	SilencePending = "pending"
	SilenceExpired = "expired"
)

// CodeSilenceLimit is the error code of a silence refused because the
// project holds MaxActiveSilences already.
const CodeSilenceLimit = "SilenceLimit"

// SilenceRequest is the body of POST /projects/{project}/silences: what to
// silence (an alert of the list, or any of cluster, rule and labels
// together), for how long and why. ecp adds the project itself.
type SilenceRequest struct {
	// Alert is an alert id of the project's list: the silence matches
	// that alert's labels exactly, so it outlives the episode.
	Alert string `json:"alert,omitempty"`
	// Cluster is a cluster id of the project.
	Cluster string `json:"cluster,omitempty"`
	// Rule is a catalogue rule id (rules.Catalogue): all its alert kinds.
	Rule string `json:"rule,omitempty"`
	// Labels are more label values to match exactly (a connector id,
	// a node).
	Labels map[string]string `json:"labels,omitempty"`
	// Duration is how long from now, "2h" or "3d".
	Duration string `json:"duration"`
	Comment  string `json:"comment"`
}

// Matcher is one matcher of an Alertmanager silence, with Alertmanager's
// field names.
type Matcher struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	IsRegex bool   `json:"isRegex"`
	IsEqual bool   `json:"isEqual"`
}

// Silence is one of a project's silences as the API shows it.
type Silence struct {
	ID      string `json:"id"`
	Project string `json:"project"`
	// Cluster is the cluster it is scoped to, empty for all of them.
	Cluster   string    `json:"cluster,omitempty"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	// State is active, pending or expired.
	State string `json:"state"`
}

// amSilence is a silence in Alertmanager's API v2 (PostableSilence and
// GettableSilence).
type amSilence struct {
	ID        string    `json:"id,omitempty"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"startsAt"`
	EndsAt    time.Time `json:"endsAt"`
	CreatedBy string    `json:"createdBy"`
	Comment   string    `json:"comment"`
	Status    *struct {
		State string `json:"state"`
	} `json:"status,omitempty"`
}

// project is the project a silence is scoped to: the value of its one
// equality matcher on the project label, "" for a silence ecp did not make.
func (a amSilence) project() string {
	p := ""
	for _, m := range a.Matchers {
		if m.Name != rules.LabelProject {
			continue
		}
		if m.IsRegex || !m.IsEqual || p != "" {
			return ""
		}
		p = m.Value
	}
	return p
}

func (a amSilence) view() Silence {
	out := Silence{ID: a.ID, Project: a.project(), Matchers: a.Matchers, StartsAt: a.StartsAt, EndsAt: a.EndsAt, CreatedBy: a.CreatedBy, Comment: a.Comment}
	if a.Status != nil {
		out.State = a.Status.State
	}
	for _, m := range a.Matchers {
		if m.Name == rules.LabelCluster && m.IsEqual && !m.IsRegex {
			out.Cluster = m.Value
		}
	}
	return out
}

var labelNamePattern = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]{0,127}$`)

// matchers checks what r asks to silence, with the caller's alert (nil
// unless r.Alert is set), and returns Alertmanager's matchers, always
// scoped to project, and the duration.
func (r SilenceRequest) matchers(project string, alert *Alert) ([]Matcher, time.Duration, error) {
	var errs httpapi.FieldErrors
	d, err := model.ParseDuration(r.Duration)
	switch {
	case err != nil:
		errs.Add("duration", "duration must be a duration such as 30m, 2h or 3d, from %s to %s; got %q", model.Duration(MinSilenceDuration), model.Duration(MaxSilenceDuration), r.Duration)
	case time.Duration(d) < MinSilenceDuration || time.Duration(d) > MaxSilenceDuration:
		errs.Add("duration", "duration must be from %s to %s; got %s", model.Duration(MinSilenceDuration), model.Duration(MaxSilenceDuration), r.Duration)
	}
	switch n := utf8.RuneCountInString(strings.TrimSpace(r.Comment)); {
	case n == 0:
		errs.Add("comment", "comment must say why the alerts are silenced")
	case utf8.RuneCountInString(r.Comment) > MaxSilenceComment || !utf8.ValidString(r.Comment):
		errs.Add("comment", "comment must be at most %d characters of UTF-8; got %d", MaxSilenceComment, utf8.RuneCountInString(r.Comment))
	}
	want := map[string]Matcher{}
	eq := func(name, value string) { want[name] = Matcher{Name: name, Value: value, IsEqual: true} }
	switch {
	case r.Alert != "" && (r.Cluster != "" || r.Rule != "" || len(r.Labels) > 0):
		errs.Add("alert", "alert names one alert by itself; leave cluster, rule and labels out, or silence by them without alert")
	case r.Alert != "" && alert == nil:
		errs.Add("alert", "alert %q is not an active alert of project %s", r.Alert, project)
	case r.Alert != "":
		for k, v := range alert.Labels {
			eq(k, v)
		}
	case r.Cluster == "" && r.Rule == "" && len(r.Labels) == 0:
		errs.Add("", "name what to silence: alert, or any of cluster, rule and labels")
	}
	if r.Cluster != "" {
		if !rules.ValidProjectID(r.Cluster) {
			errs.Add("cluster", "cluster must be a cluster id (letters, digits, '_', '.' or '-'); got %q", r.Cluster)
		}
		eq(rules.LabelCluster, r.Cluster)
	}
	if r.Rule != "" {
		e, ok := rules.CatalogueEntry(r.Rule)
		if !ok {
			errs.Add("rule", "rule must be a rule of the catalogue, one of %s; got %q", strings.Join(rules.CatalogueIDs(), ", "), r.Rule)
		} else {
			want[model.AlertNameLabel] = Matcher{Name: model.AlertNameLabel, Value: e.AlertPattern(), IsRegex: true, IsEqual: true}
		}
	}
	if len(r.Labels) > MaxSilenceLabels {
		errs.Add("labels", "labels holds at most %d labels; got %d", MaxSilenceLabels, len(r.Labels))
	} else {
		for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
			v, field := r.Labels[k], "labels."+k
			switch _, dup := want[k]; {
			case k == rules.LabelProject:
				errs.Add(field, "labels.%s cannot be set: ecp scopes every silence to the project in the path", k)
			case !labelNamePattern.MatchString(k):
				errs.Add(field, "label names are letters, digits and '_', not starting with a digit, at most 128; got %q", k)
			case v == "" || utf8.RuneCountInString(v) > MaxLabelValue || !utf8.ValidString(v):
				errs.Add(field, "%s must be 1 to %d characters of UTF-8", field, MaxLabelValue)
			case dup:
				errs.Add(field, "%s repeats what cluster or rule sets", field)
			default:
				eq(k, v)
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, 0, err
	}
	// Last, whatever came before: the project is ecp's to set.
	eq(rules.LabelProject, project)
	out := make([]Matcher, 0, len(want))
	for _, k := range slices.Sorted(maps.Keys(want)) {
		out = append(out, want[k])
	}
	return out, time.Duration(d), nil
}

// projectSilences lists the silences scoped to project, newest first.
func (s *Service) projectSilences(ctx context.Context, project string) ([]Silence, error) {
	var all []amSilence
	if err := s.amCall(ctx, http.MethodGet, "/silences", url.Values{"filter": {fmt.Sprintf("%s=%q", rules.LabelProject, project)}}, nil, &all); err != nil {
		return nil, err
	}
	out := []Silence{}
	for _, a := range all {
		// Alertmanager's filter also returns silences that match the
		// project among others (a regex): only ecp's own scoping counts.
		if a.project() == project {
			out = append(out, a.view())
		}
	}
	slices.SortFunc(out, func(a, b Silence) int {
		if c := b.StartsAt.Compare(a.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (s *Service) listSilences(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	out, err := s.Silences(r.Context(), ac, mux.Vars(r)["project"], r.URL.Query().Get("state"))
	if err != nil {
		return err
	}
	return httpapi.List(w, out)
}

// Silences lists project's silences, newest first: the unexpired ones
// (active and pending) for state "" or active, the expired ones for
// expired. 404 when the caller cannot see the project; 409 without
// Alertmanager.
func (s *Service) Silences(ctx context.Context, ac *tenancy.Access, project, state string) ([]Silence, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return nil, err
	}
	if state != "" && state != SilenceActive && state != SilenceExpired {
		return nil, httpapi.Invalid("state", "state must be active (active and pending, the default) or expired; got %q", state)
	}
	all, err := s.projectSilences(ctx, p.ID)
	if err != nil {
		return nil, amAPIError("silences", err)
	}
	out := all[:0]
	for _, sl := range all {
		if (sl.State == SilenceExpired) == (state == SilenceExpired) {
			out = append(out, sl)
		}
	}
	return out, nil
}

func (s *Service) createSilence(w http.ResponseWriter, r *http.Request) error {
	p, ac, err := s.project(r, tenancy.Admin)
	if err != nil {
		return err
	}
	// Annotated before the body is read, so a refused body is audited
	// on its project too.
	audit.Annotate(r.Context(), audit.Note{Org: p.Org, Project: p.ID, Target: "silences/" + p.ID})
	var req SilenceRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	out, err := s.CreateSilence(r.Context(), ac, p.ID, req)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusCreated, out)
}

// CreateSilence silences in project what req names, for its duration
// (POST /projects/{project}/silences): 404 when the caller cannot see the
// project, 403 when they may not change it, 400 naming each refused
// field, 422 at MaxActiveSilences, 409 without Alertmanager.
func (s *Service) CreateSilence(ctx context.Context, ac *tenancy.Access, project string, req SilenceRequest) (Silence, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.Admin, "")
	if err != nil {
		return Silence{}, err
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "silences/" + p.ID})
	var alert *Alert
	if req.Alert != "" && kv.ValidID(req.Alert) {
		var a Alert
		if _, err := kv.Get(ctx, s.cli, activeKey(p.ID, req.Alert), &a); err == nil {
			alert = &a
		} else if !errors.Is(err, kv.ErrNotFound) {
			return Silence{}, err
		}
	}
	matchers, d, err := req.matchers(p.ID, alert)
	if err != nil {
		return Silence{}, err
	}
	existing, err := s.projectSilences(ctx, p.ID)
	if err != nil {
		return Silence{}, amAPIError("the silence", err)
	}
	live := 0
	for _, sl := range existing {
		if sl.State != SilenceExpired {
			live++
		}
	}
	if live >= MaxActiveSilences {
		return Silence{}, &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: CodeSilenceLimit,
			Message: fmt.Sprintf("project %s holds %d silences, the most it may; expire one first", p.ID, live)}
	}
	now := s.opts.Now().UTC()
	in := amSilence{Matchers: matchers, StartsAt: now, EndsAt: now.Add(d), Comment: req.Comment, CreatedBy: "ecp"}
	if pr := auth.PrincipalFrom(ctx); pr != nil {
		in.CreatedBy = pr.Username
	}
	var created struct {
		SilenceID string `json:"silenceID"`
	}
	if err := s.amCall(ctx, http.MethodPost, "/silences", nil, in, &created); err != nil {
		return Silence{}, amAPIError("the silence", err)
	}
	in.ID = created.SilenceID
	in.Status = &struct {
		State string `json:"state"`
	}{State: SilenceActive}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "silence/" + in.ID})
	return in.view(), nil
}

// silenceIDPattern is Alertmanager's silence ids (UUIDs), checked before
// one goes into a URL path.
var silenceIDPattern = regexp.MustCompile(`^[0-9a-fA-F-]{1,64}$`)

func (s *Service) expireSilence(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	if err := s.ExpireSilence(r.Context(), ac, mux.Vars(r)["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// ExpireSilence ends silence id now (DELETE /silences/{id}): 404 when it
// is not ecp's or the caller cannot see its project, 403 when they may
// only see it, 409 when it expired already.
func (s *Service) ExpireSilence(ctx context.Context, ac *tenancy.Access, id string) error {
	notFound := httpapi.NotFound("no silence %s", id)
	if !silenceIDPattern.MatchString(id) {
		return notFound
	}
	var cur amSilence
	err := s.amCall(ctx, http.MethodGet, "/silence/"+id, nil, nil, &cur)
	var ae *amError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return notFound
	}
	if err != nil {
		return amAPIError("the silence", err)
	}
	project := cur.project()
	if project == "" {
		return notFound // not one of ecp's: no project may see it
	}
	p, err := s.authz.Project(ctx, ac, project, tenancy.Admin, "")
	var apiErr *httpapi.Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return notFound
	}
	if err != nil {
		return err
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "silence/" + id})
	if cur.Status != nil && cur.Status.State == SilenceExpired {
		return httpapi.Conflict("silence %s expired already", id)
	}
	if err := s.amCall(ctx, http.MethodDelete, "/silence/"+id, nil, nil, nil); err != nil {
		return amAPIError("expiring the silence", err)
	}
	return nil
}

// withSilences marks the active alerts Alertmanager holds silenced, and
// adds the silenced ones ecp never heard of: a silence mutes ecp's own
// webhook too, so an alert that fired under one reaches ecp only through
// Alertmanager's list. Without Alertmanager, or when it cannot be reached,
// the list is ecp's alone (logged).
func (s *Service) withSilences(ctx context.Context, project string, active []Alert) []Alert {
	if s.opts.AlertmanagerURL == "" {
		return active
	}
	held, err := s.amAlerts(ctx, project)
	if err != nil {
		s.logger.Warn("the active list shows no silences: alertmanager's list could not be read", "project", project, "err", err)
		return active
	}
	silenced := map[string]amAlert{}
	for _, a := range held {
		if len(a.Status.SilencedBy) > 0 && a.Labels[rules.LabelProject] == project && a.Labels[LabelTest] == "" {
			silenced[a.id()] = a
		}
	}
	for i := range active {
		if a, ok := silenced[active[i].ID]; ok {
			active[i].SilencedBy = a.Status.SilencedBy
			delete(silenced, active[i].ID)
		}
	}
	for _, a := range silenced {
		al := s.toAlert(webhookAlert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, Fingerprint: a.Fingerprint, GeneratorURL: a.GeneratorURL})
		al.SilencedBy = a.Status.SilencedBy
		active = append(active, al)
	}
	return active
}
