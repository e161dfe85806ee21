package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// Register mounts the user routes on api (the /api/v1 router, behind user
// authentication) and the webhook on root (it authenticates itself).
func (s *Service) Register(api, root *mux.Router, a *httpapi.Adapter) {
	api.Handle("/projects/{project}/alert-settings", a.Handle(s.getSettings)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/alert-settings", a.Handle(s.putSettings)).Methods(http.MethodPut)
	api.Handle("/projects/{project}/alert-settings/test", a.Handle(s.testNotification)).Methods(http.MethodPost)
	api.Handle("/projects/{project}/alerts", a.Handle(s.list)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/alerts/history", a.Handle(s.clearHistory)).Methods(http.MethodDelete)
	api.Handle("/alerts/{id}", a.Handle(s.delete)).Methods(http.MethodDelete)
	api.Handle("/system/alerting", a.Handle(s.systemStatus)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/silences", a.Handle(s.listSilences)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/silences", a.Handle(s.createSilence)).Methods(http.MethodPost)
	api.Handle("/silences/{id}", a.Handle(s.expireSilence)).Methods(http.MethodDelete)
	api.Handle("/projects/{project}/alerts/storm", a.Handle(s.getStorm)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/alerts/storm", a.Handle(s.clearStorm)).Methods(http.MethodDelete)
	root.Handle(WebhookPath, a.Handle(s.webhook, httpapi.BodyLimit(MaxWebhookBody))).Methods(http.MethodPost)
	root.Handle(RelayPath, a.Handle(s.relay, httpapi.BodyLimit(MaxWebhookBody))).Methods(http.MethodPost)
	newCustomAlarms(s).register(api, root, a)
}

// Delivery states of a project's settings.
const (
	// DeliveryApplied: Prometheus and Alertmanager run these settings.
	DeliveryApplied = "applied"
	// DeliveryPending: saved, not applied yet.
	DeliveryPending = "pending"
	// DeliveryPartial: applied without some webhooks, which the
	// notification policy refuses where they resolve now; message says
	// which and why.
	DeliveryPartial = "partial"
	// DeliveryFailed: the last apply failed; message says why.
	DeliveryFailed = "failed"
	// DeliveryNotConfigured: ecp writes no files (no --prometheus.rules-dir
	// and --alertmanager.config-file); settings are only stored.
	DeliveryNotConfigured = "not-configured"
)

// SettingsReply is GET/PUT alert-settings' reply: the settings and whether
// they run.
type SettingsReply struct {
	alerting.Settings
	UpdatedAt *time.Time     `json:"updatedAt"`
	Status    DeliveryStatus `json:"status"`
}

// DeliveryStatus says whether a project's settings run on Prometheus and
// Alertmanager.
type DeliveryStatus struct {
	Delivery  string     `json:"delivery"`
	Message   string     `json:"message"`
	AppliedAt *time.Time `json:"appliedAt"`
}

// settingsBody is what PUT accepts: the settings, and the read-only fields
// of the reply (ignored), so a console may send back what it read.
type settingsBody struct {
	alerting.Settings
	UpdatedAt json.RawMessage `json:"updatedAt"`
	Status    json.RawMessage `json:"status"`
}

func (s *Service) project(r *http.Request, want tenancy.Level) (tenancy.Project, *tenancy.Access, error) {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return tenancy.Project{}, nil, err
	}
	p, err := s.authz.Project(r.Context(), ac, mux.Vars(r)["project"], want, "")
	return p, ac, err
}

func (s *Service) getSettings(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	reply, err := s.Settings(r.Context(), ac, mux.Vars(r)["project"])
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, reply)
}

// Settings are project's alert settings and whether they run: 404 when
// the caller cannot see the project.
func (s *Service) Settings(ctx context.Context, ac *tenancy.Access, project string) (SettingsReply, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return SettingsReply{}, err
	}
	return s.settingsReply(ctx, p.ID)
}

func (s *Service) settingsReply(ctx context.Context, project string) (SettingsReply, error) {
	st, rev, err := s.loadSettings(ctx, project)
	reply := SettingsReply{Settings: alerting.DefaultSettings()}
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return SettingsReply{}, err
	default:
		// Header values are secrets: never shown, kept when sent back
		// empty (save).
		reply.Settings = normalise(st.Settings).Redacted()
		at := st.UpdatedAt
		reply.UpdatedAt = &at
	}
	reply.Status, err = s.delivery(ctx, project, rev)
	return reply, err
}

// normalise fills what a body or a record may leave out. The catalogue is
// resolved (alerting.Settings.Catalogue): a body or record without "rules"
// keeps the meaning it had before the catalogue, and every reply and new
// record lists each rule with its threshold.
func normalise(st alerting.Settings) alerting.Settings {
	st.Rules = st.Catalogue()
	if st.StormThreshold == 0 {
		st.StormThreshold = alerting.DefaultStormThreshold
	}
	if st.Emails == nil {
		st.Emails = []string{}
	}
	if st.Webhooks == nil {
		st.Webhooks = []alerting.Webhook{}
	}
	return st
}

// delivery tells a project whether its settings (stored at rev, 0 when
// never saved) run.
func (s *Service) delivery(ctx context.Context, project string, rev int64) (DeliveryStatus, error) {
	if !s.opts.Configured() {
		return DeliveryStatus{Delivery: DeliveryNotConfigured,
			Message: "settings are stored, but this ecp writes no Prometheus rules or Alertmanager configuration: a system admin starts it with --prometheus.rules-dir and --alertmanager.config-file"}, nil
	}
	var st applyStatus
	_, err := kv.Get(ctx, s.cli, statusKey, &st)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return DeliveryStatus{}, err
	}
	var at *time.Time
	if !st.AppliedAt.IsZero() {
		t := st.AppliedAt
		at = &t
	}
	switch {
	case st.Revision == 0 || st.Revision < rev:
		return DeliveryStatus{Delivery: DeliveryPending, Message: "saved; waiting for the leading ecp replica to write and reload Prometheus and Alertmanager", AppliedAt: at}, nil
	case st.ProjectErrors[project] != "":
		return DeliveryStatus{Delivery: DeliveryFailed, Message: "these settings could not be rendered: " + st.ProjectErrors[project], AppliedAt: at}, nil
	case !st.OK:
		return DeliveryStatus{Delivery: DeliveryFailed, Message: "the last apply failed (Prometheus or Alertmanager refused or could not be reached); ecp retries, and a system admin sees the details at GET /api/v1/system/alerting", AppliedAt: at}, nil
	}
	if d := st.Dropped[project]; len(d) > 0 {
		return DeliveryStatus{Delivery: DeliveryPartial, AppliedAt: at,
			Message: "Prometheus and Alertmanager run these settings without the webhooks the notification policy refuses now: " + strings.Join(d, "; ")}, nil
	}
	return DeliveryStatus{Delivery: DeliveryApplied, Message: "Prometheus and Alertmanager run these settings", AppliedAt: at}, nil
}

// checkDestinations resolves every webhook's host now and refuses the
// settings with a 422 naming the first webhook the notification policy
// refuses, and why; its "errors" member lists every refused webhook.
func (s *Service) checkDestinations(ctx context.Context, st alerting.Settings) error {
	if len(st.Webhooks) == 0 {
		return nil
	}
	policy, err := s.opts.Destinations.Load(ctx)
	if err != nil {
		return err
	}
	var refused []map[string]string
	for i, w := range st.Webhooks {
		err := policy.CheckURL(ctx, w.URL)
		var re *destpolicy.RefusedError
		if errors.As(err, &re) {
			field := fmt.Sprintf("webhooks[%d].url", i)
			refused = append(refused, map[string]string{"field": field, "message": fmt.Sprintf("%s is refused by the notification policy: %s", field, re.Reason)})
			continue
		}
		if err != nil {
			return fmt.Errorf("checking %s: %w", w.URL, err)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	return &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: CodeDestinationRefused, Field: refused[0]["field"],
		Message: refused[0]["message"], Details: map[string]any{"errors": refused}}
}

// CodeDestinationRefused is the error code of a webhook the notification
// policy refuses.
const CodeDestinationRefused = "DestinationRefused"

func (s *Service) putSettings(w http.ResponseWriter, r *http.Request) error {
	p, _, err := s.project(r, tenancy.Admin)
	if err != nil {
		return err
	}
	audit.Annotate(r.Context(), audit.Note{Org: p.Org, Project: p.ID, Target: "alert-settings/" + p.ID})
	var body settingsBody
	if err := httpapi.Decode(r, &body); err != nil {
		return err
	}
	reply, err := s.save(r.Context(), p, body.Settings)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, reply)
}

// SaveSettings validates and stores project's alert settings (PUT
// alert-settings): 404 when the caller cannot see the project, 403 when
// they may not change it, 400 naming each refused field.
func (s *Service) SaveSettings(ctx context.Context, ac *tenancy.Access, project string, st alerting.Settings) (SettingsReply, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.Admin, "")
	if err != nil {
		return SettingsReply{}, err
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "alert-settings/" + p.ID})
	return s.save(ctx, p, st)
}

func (s *Service) save(ctx context.Context, p tenancy.Project, st alerting.Settings) (SettingsReply, error) {
	st = normalise(st)
	stored, _, err := s.loadSettings(ctx, p.ID)
	switch {
	case errors.Is(err, kv.ErrNotFound):
	case err != nil:
		return SettingsReply{}, err
	default:
		st = st.KeepHeaderValues(stored.Settings)
	}
	if s.alerting != nil {
		err = s.alerting.Check(p.ID, st)
	} else {
		err = st.Validate()
	}
	if err != nil {
		return SettingsReply{}, err
	}
	if err := s.checkDestinations(ctx, st); err != nil {
		return SettingsReply{}, err
	}
	rec := storedSettings{Settings: st, UpdatedAt: s.opts.Now().UTC()}
	if pr := auth.PrincipalFrom(ctx); pr != nil {
		rec.UpdatedBy = pr.Username
	}
	val, err := s.sealSettings(p.ID, rec)
	if err != nil {
		return SettingsReply{}, err
	}
	putCtx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Put(putCtx, settingsPrefix+p.ID, val); err != nil {
		return SettingsReply{}, fmt.Errorf("store alert settings of %s: %w", p.ID, err)
	}
	return s.settingsReply(ctx, p.ID)
}

// TestReply is the reply of POST alert-settings/test.
type TestReply struct {
	// Alert is the test alert's name and id label.
	Alertname string    `json:"alertname"`
	TestID    string    `json:"testId"`
	SentAt    time.Time `json:"sentAt"`
	Message   string    `json:"message"`
}

// TestAlertName is the alertname of test notifications.
const TestAlertName = "ECPTestNotification"

// TestChannel picks one channel of a test notification (the body of POST
// alert-settings/test): one of the project's e-mail recipients or one of
// its webhooks, by URL. Neither means every channel.
type TestChannel struct {
	Email   string `json:"email,omitempty"`
	Webhook string `json:"webhook,omitempty"`
}

// testNotification posts a test alert to Alertmanager, routed by its project
// label to the project's channels exactly as real alerts are; ecp's own
// lists ignore it (label ecp_test).
func (s *Service) testNotification(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	var ch TestChannel
	if r.ContentLength != 0 {
		if err := httpapi.Decode(r, &ch); err != nil {
			return err
		}
	}
	reply, err := s.TestChannel(r.Context(), ac, mux.Vars(r)["project"], ch)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusAccepted, reply)
}

// TestNotification posts a test alert for every channel of the project to
// Alertmanager (POST alert-settings/test): 404 when the caller cannot see
// the project, 403 when they may not change it.
func (s *Service) TestNotification(ctx context.Context, ac *tenancy.Access, project string) (TestReply, error) {
	return s.TestChannel(ctx, ac, project, TestChannel{})
}

// TestChannel is TestNotification for the one channel ch names (every
// channel when it names none): the alert carries the channel's key
// (alerting.LabelTestChannel), which Alertmanager routes to a receiver
// holding that channel alone. A channel that is not in the project's saved
// settings is refused, naming the field.
func (s *Service) TestChannel(ctx context.Context, ac *tenancy.Access, project string, ch TestChannel) (TestReply, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.Admin, "")
	if err != nil {
		return TestReply{}, err
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "alert-settings/" + p.ID})
	if s.alerting == nil || s.opts.AlertmanagerURL == "" {
		return TestReply{}, httpapi.Conflict("test notifications go through Alertmanager, and this ecp has none: a system admin starts it with --alertmanager.url, --alertmanager.config-file and --prometheus.rules-dir")
	}
	reply, err := s.settingsReply(ctx, p.ID)
	if err != nil {
		return TestReply{}, err
	}
	switch {
	case !reply.Enabled:
		return TestReply{}, httpapi.Conflict("alerting is off for project %s, so nothing would be sent; enable it first", p.ID)
	case len(reply.Emails) == 0 && len(reply.Webhooks) == 0:
		return TestReply{}, httpapi.Conflict("project %s has no e-mail or webhook channel to test", p.ID)
	case reply.Status.Delivery != DeliveryApplied && reply.Status.Delivery != DeliveryPartial:
		return TestReply{}, httpapi.Conflict("the project's settings are not running yet (%s: %s); try again in a moment", reply.Status.Delivery, reply.Status.Message)
	}
	key, what, checked, err := testTarget(reply.Settings, ch)
	if err != nil {
		return TestReply{}, err
	}
	// Alertmanager runs what the leader rendered; a name may have been
	// rebound since. Nothing is sent while a webhook tested is refused now.
	if err := s.checkDestinations(ctx, checked); err != nil {
		return TestReply{}, err
	}
	now := s.opts.Now().UTC()
	id := kv.NewID()
	link := strings.TrimRight(s.opts.ExternalURL, "/") + "/projects/" + p.ID + "/alert-settings"
	annotations := map[string]string{
		rules.AnnotationSummary:     "Test notification for project " + p.Name + " from ecp.",
		rules.AnnotationDescription: "Someone sent a test notification from the alert settings of project " + p.Name + "; the channels of this project receive alerts like this one.",
		rules.AnnotationLink:        link,
		rules.AnnotationProjectName: p.Name,
	}
	var org tenancy.Org
	if _, err := kv.Get(ctx, s.cli, tenancy.OrgsPrefix+p.Org, &org); err == nil {
		annotations[rules.AnnotationOrganizationName] = org.Name
	} else if !errors.Is(err, kv.ErrNotFound) {
		return TestReply{}, err
	}
	// No end time: Alertmanager resolves it after its resolve_timeout,
	// and the project's test receiver sends no resolution, so the test is
	// exactly one message per channel.
	labels := map[string]string{
		"alertname": TestAlertName, rules.LabelProject: p.ID, rules.LabelSeverity: reply.Severity, LabelTest: id,
	}
	if key != "" {
		labels[alerting.LabelTestChannel] = key
	}
	alert := []map[string]any{{
		"labels":      labels,
		"annotations": annotations,
		"startsAt":    now, "generatorURL": link,
	}}
	if err := s.postAlerts(ctx, "test alert", alert); err != nil {
		return TestReply{}, err
	}
	return TestReply{Alertname: TestAlertName, TestID: id, SentAt: now,
		Message: "Alertmanager accepted the test alert; it reaches " + what + " at once, as one message with no resolution to follow"}, nil
}

// testTarget resolves ch against the project's settings: the channel key
// for the test alert (empty for every channel), what the reply calls it,
// and the settings whose webhooks the notification policy must allow.
func testTarget(st alerting.Settings, ch TestChannel) (key, what string, checked alerting.Settings, err error) {
	switch {
	case ch.Email != "" && ch.Webhook != "":
		return "", "", st, httpapi.Invalid("webhook", "name one channel to test, email or webhook, not both (or neither for every channel)")
	case ch.Email != "":
		for _, e := range st.Emails {
			if strings.EqualFold(e, ch.Email) {
				return alerting.EmailChannel(e), "the e-mail recipient " + e + " alone", alerting.Settings{}, nil
			}
		}
		return "", "", st, httpapi.Invalid("email", "email %.200q is not one of the project's e-mail recipients; save it in the alert settings first", ch.Email)
	case ch.Webhook != "":
		for _, w := range st.Webhooks {
			if w.URL == ch.Webhook {
				return alerting.WebhookChannel(w.URL), "that webhook alone", alerting.Settings{Webhooks: []alerting.Webhook{w}}, nil
			}
		}
		return "", "", st, httpapi.Invalid("webhook", "webhook is not the URL of one of the project's webhooks; save it in the alert settings first")
	}
	return "", "the project's channels", st, nil
}

// Filters of the alert list.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

func (s *Service) list(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	v := r.URL.Query()
	out, err := s.List(r.Context(), ac, mux.Vars(r)["project"], ListQuery{
		State: v.Get("state"), Severity: v.Get("severity"), Cluster: v.Get("cluster"),
		From: v.Get("from"), To: v.Get("to"), Limit: v.Get("limit"), Rule: v.Get("rule"),
	})
	if err != nil {
		return err
	}
	return httpapi.List(w, out)
}

// ListQuery is a list request's filters as the caller wrote them (the
// query string of GET /projects/{project}/alerts); List validates them.
type ListQuery struct {
	State, Severity, Cluster string
	// Rule is an alert name (alertname): only that rule's alerts.
	Rule string
	// From, To: RFC 3339 times; Limit a whole number.
	From, To, Limit string
}

// List is the project's active or past alerts that pass q, newest first:
// 404 when the caller cannot see the project. The route and the console
// both call it.
func (s *Service) List(ctx context.Context, ac *tenancy.Access, project string, q ListQuery) ([]Alert, error) {
	p, err := s.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return nil, err
	}
	state := q.State
	if state == "" {
		state = StateActive
	}
	prefix := activePrefix
	switch state {
	case StateActive:
	case StateHistory:
		prefix = historyPrefix
	default:
		return nil, httpapi.Invalid("state", "state must be active or history, got %q", state)
	}
	var from, to time.Time
	for _, f := range []struct {
		name string
		t    *time.Time
		v    string
	}{{"from", &from, q.From}, {"to", &to, q.To}} {
		if v := f.v; v != "" {
			if *f.t, err = time.Parse(time.RFC3339, v); err != nil {
				return nil, httpapi.Invalid(f.name, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", f.name, v)
			}
		}
	}
	if !from.IsZero() && !to.IsZero() && to.Before(from) {
		return nil, httpapi.Invalid("to", "to must not be before from")
	}
	limit := DefaultListLimit
	if v := q.Limit; v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxListLimit {
			return nil, httpapi.Invalid("limit", "limit must be a whole number from 1 to %d, got %q", MaxListLimit, v)
		}
	}
	severity, cluster := q.Severity, q.Cluster
	if severity != "" && !slices.Contains(alerting.Severities, severity) {
		return nil, httpapi.Invalid("severity", "severity must be one of %s, got %q", strings.Join(alerting.Severities, ", "), severity)
	}
	if len(q.Rule) > MaxRuleFilter {
		return nil, httpapi.Invalid("rule", "rule must be an alert name of at most %d bytes", MaxRuleFilter)
	}
	all, err := kv.List[Alert](ctx, s.cli, prefix+p.ID+"/")
	if err != nil {
		return nil, err
	}
	if state == StateActive {
		all = s.withSilences(ctx, p.ID, all)
	}
	now := s.opts.Now()
	out := all[:0]
	for _, a := range all {
		end := now
		if a.EndsAt != nil {
			end = *a.EndsAt
		}
		switch {
		case cluster != "" && a.Cluster != cluster,
			severity != "" && a.Severity != severity,
			q.Rule != "" && a.Name != q.Rule,
			!from.IsZero() && end.Before(from),
			!to.IsZero() && a.StartsAt.After(to):
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alert) int {
		if c := b.StartsAt.Compare(a.StartsAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (s *Service) delete(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	if err := s.Delete(r.Context(), ac, mux.Vars(r)["id"]); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Delete removes alert id by hand, active or in history: 404 when absent
// or the caller cannot see its project, 403 when they may only see it.
func (s *Service) Delete(ctx context.Context, ac *tenancy.Access, id string) error {
	notFound := httpapi.NotFound("no alert %s", id)
	var idx idRecord
	if _, err := kv.Get(ctx, s.cli, idsPrefix+id, &idx); errors.Is(err, kv.ErrNotFound) {
		return notFound
	} else if err != nil {
		return err
	}
	p, err := s.authz.Project(ctx, ac, idx.Project, tenancy.Admin, "")
	var apiErr *httpapi.Error
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return notFound // the alert's project, not "no project", is what the caller asked about
	}
	if err != nil {
		return err
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "alert/" + id})
	txCtx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(txCtx).Then(
		clientv3.OpDelete(activeKey(p.ID, id)),
		clientv3.OpDelete(historyKey(p.ID, id)),
		clientv3.OpDelete(idsPrefix+id),
	).Commit()
	if err != nil {
		return fmt.Errorf("delete alert %s: %w", id, err)
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted+resp.Responses[1].GetResponseDeleteRange().Deleted == 0 {
		return notFound
	}
	return nil
}

// SystemStatus is GET /api/v1/system/alerting: how ecp's alerting wiring
// is doing, for system admins.
type SystemStatus struct {
	Configured             bool                `json:"configured"`
	PrometheusURL          string              `json:"prometheusUrl"`
	RulesDir               string              `json:"rulesDir"`
	AlertmanagerURL        string              `json:"alertmanagerUrl"`
	AlertmanagerConfigFile string              `json:"alertmanagerConfigFile"`
	WebhookURL             string              `json:"webhookUrl"`
	SMTP                   bool                `json:"smtp"`
	Leader                 string              `json:"leader"`
	Revision               int64               `json:"revision"`
	AppliedAt              *time.Time          `json:"appliedAt"`
	OK                     bool                `json:"ok"`
	Error                  string              `json:"error,omitempty"`
	ProjectErrors          map[string]string   `json:"projectErrors,omitempty"`
	Dropped                map[string][]string `json:"dropped,omitempty"`
	Projects               int                 `json:"projects"`
}

func (s *Service) systemStatus(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	if !ac.System {
		return httpapi.Forbidden("the alerting wiring is shown to system admins only")
	}
	var st applyStatus
	if _, err := kv.Get(r.Context(), s.cli, statusKey, &st); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return err
	}
	out := SystemStatus{
		Configured: s.opts.Configured(), PrometheusURL: s.opts.PrometheusURL, RulesDir: s.opts.RulesDir,
		AlertmanagerURL: s.opts.AlertmanagerURL, AlertmanagerConfigFile: s.opts.AlertmanagerConfigFile,
		WebhookURL: s.opts.WebhookURL, SMTP: s.opts.SMTP.Smarthost != "",
		Leader: st.Leader, Revision: st.Revision, OK: st.OK, Error: st.Error, ProjectErrors: st.ProjectErrors, Dropped: st.Dropped, Projects: st.Projects,
	}
	if !st.AppliedAt.IsZero() {
		out.AppliedAt = &st.AppliedAt
	}
	return httpapi.JSON(w, http.StatusOK, out)
}
