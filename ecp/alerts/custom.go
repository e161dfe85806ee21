// Custom alarms: the operator's own systems raise and resolve alerts of a
// project through POST /api/v1/projects/{project}/custom-alarms, with the
// project's alarm token in the X-ECP-Alarm-Token header. ecp validates the
// alarm, stamps the project's labels and names, and posts it to
// Alertmanager's POST /api/v2/alerts, so it takes the project's route like
// a rule's alert: grouping, silences, e-mail, webhooks and ecp's own lists.
//
// A project admin creates (or rotates) the token at
// POST /api/v1/projects/{project}/custom-alarm-token, which shows it once;
// only its SHA-256 hash is stored, as API tokens are (ecp/auth). Alarms are
// rate-limited per project and replica, after the token is checked, so
// nobody without the token can use up a project's allowance.

package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"
	"golang.org/x/time/rate"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/rules"
)

// Custom alarms' route, header and bounds.
const (
	CustomAlarmsPath = "/api/v1/projects/{project}/custom-alarms"
	AlarmTokenHeader = "X-ECP-Alarm-Token"
	// MaxCustomAlarmBody bounds one alarm's request body.
	MaxCustomAlarmBody = 16 << 10
	// MaxAlarmAge: an alarm (its startsAt, or the endsAt of a resolution)
	// older than this is refused; Alertmanager would notify it as news.
	MaxAlarmAge = 10 * time.Minute
	// MaxAlarmSkew is how far in the future an alarm's time may be (the
	// sender's clock may run ahead a little).
	MaxAlarmSkew = time.Minute
	// MaxAlarmName, MaxAlarmMessage, MaxAlarmLabels, MaxAlarmLabelName and
	// MaxAlarmLabelValue bound the alarm's fields (bytes; labels count).
	MaxAlarmName       = 100
	MaxAlarmMessage    = 2048
	MaxAlarmLabels     = 16
	MaxAlarmLabelName  = 64
	MaxAlarmLabelValue = 256
	// CustomAlarmRate and CustomAlarmBurst limit a project's alarms per
	// replica: one a second sustained, bursts of 60.
	CustomAlarmRate  = 1.0
	CustomAlarmBurst = 60
	// AlarmTokenPrefix starts every custom-alarm token, so a leaked one is
	// recognisable (secret scanners, logs).
	AlarmTokenPrefix = "ecpal_"
	// alarmTokensPrefix holds each project's AlarmToken (hash only).
	alarmTokensPrefix = Prefix + "alarm-tokens/"
)

// ReservedAlarmNamePrefixes start the names of ecp's own alerts (the
// catalogue's EMQX… rules, ECPTestNotification): a custom alarm cannot
// pose as one.
var ReservedAlarmNamePrefixes = []string{"EMQX", "ECP"}

// reservedLabels are the labels ecp sets on a custom alarm; labels starting
// with ecp_ or __ are reserved too.
var reservedLabels = []string{"alertname", rules.LabelProject, rules.LabelCluster, rules.LabelSeverity}

var alarmName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

// CustomAlarm is the body of POST custom-alarms. A resolution is the same
// alarm (name, cluster, labels: its identity in Alertmanager) with
// resolved true or an endsAt.
type CustomAlarm struct {
	Name     string            `json:"name"`
	Severity string            `json:"severity"`
	Cluster  string            `json:"cluster,omitempty"`
	Message  string            `json:"message"`
	Labels   map[string]string `json:"labels,omitempty"`
	StartsAt *time.Time        `json:"startsAt,omitempty"`
	EndsAt   *time.Time        `json:"endsAt,omitempty"`
	Resolved bool              `json:"resolved,omitempty"`
}

// CustomAlarmReply is what POST custom-alarms answers.
type CustomAlarmReply struct {
	Name     string     `json:"name"`
	State    string     `json:"state"`
	StartsAt *time.Time `json:"startsAt"`
	EndsAt   *time.Time `json:"endsAt"`
	Message  string     `json:"message"`
}

// States of a custom alarm.
const (
	AlarmFiring   = "firing"
	AlarmResolved = "resolved"
)

// AlarmToken is a project's custom-alarm token as stored: its hash and who
// made it. Replies leave the hash out.
type AlarmToken struct {
	Hash      string    `json:"hash,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// customAlarms serves the custom-alarm routes; it holds the per-project
// rate limiters of this replica.
type customAlarms struct {
	s *Service

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

func newCustomAlarms(s *Service) *customAlarms {
	return &customAlarms{s: s, limiters: map[string]*rate.Limiter{}}
}

func (c *customAlarms) register(api, root *mux.Router, a *httpapi.Adapter) {
	api.Handle("/projects/{project}/custom-alarm-token", a.Handle(c.getToken)).Methods(http.MethodGet)
	api.Handle("/projects/{project}/custom-alarm-token", a.Handle(c.createToken)).Methods(http.MethodPost)
	api.Handle("/projects/{project}/custom-alarm-token", a.Handle(c.deleteToken)).Methods(http.MethodDelete)
	root.Handle(CustomAlarmsPath, a.Handle(c.raise, httpapi.BodyLimit(MaxCustomAlarmBody))).Methods(http.MethodPost)
}

func (c *customAlarms) getToken(w http.ResponseWriter, r *http.Request) error {
	p, _, err := c.s.project(r, tenancy.View)
	if err != nil {
		return err
	}
	var tok AlarmToken
	if _, err := kv.Get(r.Context(), c.s.cli, alarmTokensPrefix+p.ID, &tok); errors.Is(err, kv.ErrNotFound) {
		return httpapi.NotFound("project %s has no custom-alarm token; a project admin creates one with POST", p.ID)
	} else if err != nil {
		return err
	}
	tok.Hash = ""
	return httpapi.JSON(w, http.StatusOK, tok)
}

// createToken makes the project's token, replacing (so revoking) any
// earlier one, and shows it this once.
func (c *customAlarms) createToken(w http.ResponseWriter, r *http.Request) error {
	p, _, err := c.s.project(r, tenancy.Admin)
	if err != nil {
		return err
	}
	audit.Annotate(r.Context(), audit.Note{Org: p.Org, Project: p.ID, Target: "custom-alarm-token/" + p.ID})
	sec, hash := auth.NewSecret()
	tok := AlarmToken{Hash: hash, CreatedAt: c.s.opts.Now().UTC()}
	if pr := auth.PrincipalFrom(r.Context()); pr != nil {
		tok.CreatedBy = pr.Username
	}
	val, err := kv.Encode(alarmTokensPrefix+p.ID, tok)
	if err != nil {
		return err
	}
	ctx, cancel := kv.WithTimeout(r.Context())
	defer cancel()
	if _, err := c.s.cli.Put(ctx, alarmTokensPrefix+p.ID, val); err != nil {
		return fmt.Errorf("store custom-alarm token of %s: %w", p.ID, err)
	}
	tok.Hash = ""
	// The one place the token is revealed: this reply.
	return httpapi.JSON(w, http.StatusCreated, struct {
		Token string `json:"token"`
		AlarmToken
	}{Token: AlarmTokenPrefix + sec.Reveal(), AlarmToken: tok})
}

func (c *customAlarms) deleteToken(w http.ResponseWriter, r *http.Request) error {
	p, _, err := c.s.project(r, tenancy.Admin)
	if err != nil {
		return err
	}
	audit.Annotate(r.Context(), audit.Note{Org: p.Org, Project: p.ID, Target: "custom-alarm-token/" + p.ID})
	ctx, cancel := kv.WithTimeout(r.Context())
	defer cancel()
	resp, err := c.s.cli.Delete(ctx, alarmTokensPrefix+p.ID)
	if err != nil {
		return fmt.Errorf("revoke custom-alarm token of %s: %w", p.ID, err)
	}
	if resp.Deleted == 0 {
		return httpapi.NotFound("project %s has no custom-alarm token", p.ID)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// authenticate checks the alarm token against project's; every failure
// is the same 401, so the route tells nobody which projects exist.
func (c *customAlarms) authenticate(ctx context.Context, project, token string) error {
	refused := httpapi.Unauthorized("custom alarms need the project's alarm token in the " + AlarmTokenHeader + " header (a project admin creates it at POST /api/v1/projects/{project}/custom-alarm-token)")
	sec, ok := strings.CutPrefix(token, AlarmTokenPrefix)
	if !ok || !rules.ValidProjectID(project) {
		return refused
	}
	var tok AlarmToken
	if _, err := kv.Get(ctx, c.s.cli, alarmTokensPrefix+project, &tok); errors.Is(err, kv.ErrNotFound) {
		return refused
	} else if err != nil {
		return err
	}
	if !auth.SecretMatches(sec, tok.Hash) {
		return refused
	}
	return nil
}

// allow takes one alarm from project's allowance at now.
func (c *customAlarms) allow(project string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.limiters[project]
	if !ok {
		l = rate.NewLimiter(rate.Limit(CustomAlarmRate), CustomAlarmBurst)
		c.limiters[project] = l
	}
	return l.AllowN(now, 1)
}

func (c *customAlarms) raise(w http.ResponseWriter, r *http.Request) error {
	project := mux.Vars(r)["project"]
	if err := c.authenticate(r.Context(), project, r.Header.Get(AlarmTokenHeader)); err != nil {
		return err
	}
	now := c.s.opts.Now().UTC()
	if !c.allow(project, now) {
		return &httpapi.Error{Status: http.StatusTooManyRequests, Code: "TooManyAlarms", RetryAfter: time.Second,
			Message: fmt.Sprintf("project %s sends more than %d alarms in a burst or %g a second; wait and send again", project, CustomAlarmBurst, CustomAlarmRate)}
	}
	var body CustomAlarm
	if err := httpapi.Decode(r, &body); err != nil {
		return err
	}
	if err := validateAlarm(&body, now); err != nil {
		return err
	}
	var p tenancy.Project
	if _, err := kv.Get(r.Context(), c.s.cli, tenancy.ProjectsPrefix+project, &p); errors.Is(err, kv.ErrNotFound) {
		return httpapi.Unauthorized("the project of this alarm token no longer exists")
	} else if err != nil {
		return err
	}
	reply, err := c.send(r.Context(), p, body)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusAccepted, reply)
}

// validateAlarm checks a against the bounds and fills its times: a firing
// alarm starts now unless it says when, a resolution ends now unless it
// says when.
func validateAlarm(a *CustomAlarm, now time.Time) error {
	switch {
	case !alarmName.MatchString(a.Name) || len(a.Name) > MaxAlarmName:
		return httpapi.Invalid("name", "name must be a letter then letters, digits or _, at most %d bytes, got %q", MaxAlarmName, a.Name)
	case slices.ContainsFunc(ReservedAlarmNamePrefixes, func(p string) bool { return strings.HasPrefix(a.Name, p) }):
		return httpapi.Invalid("name", "name must not start with %s: those are ecp's own alerts", strings.Join(ReservedAlarmNamePrefixes, " or "))
	case !slices.Contains(alerting.Severities, a.Severity):
		return httpapi.Invalid("severity", "severity must be one of %s, got %q", strings.Join(alerting.Severities, ", "), a.Severity)
	case a.Cluster != "" && !kv.ValidID(a.Cluster):
		return httpapi.Invalid("cluster", "cluster must be the id of a cluster of the project, got %q", a.Cluster)
	case strings.TrimSpace(a.Message) == "" || len(a.Message) > MaxAlarmMessage:
		return httpapi.Invalid("message", "message must be given, at most %d bytes", MaxAlarmMessage)
	case len(a.Labels) > MaxAlarmLabels:
		return httpapi.Invalid("labels", "at most %d labels, got %d", MaxAlarmLabels, len(a.Labels))
	}
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		field := "labels." + k
		switch v := a.Labels[k]; {
		case len(k) > MaxAlarmLabelName || !alarmLabelName.MatchString(k):
			return httpapi.Invalid("labels", "label names must be a letter or _ then letters, digits or _, at most %d bytes, got %q", MaxAlarmLabelName, k)
		case slices.Contains(reservedLabels, k) || strings.HasPrefix(k, "ecp_") || strings.HasPrefix(k, "__"):
			return httpapi.Invalid(field, "label %s is set by ecp (reserved: %s, and names starting with ecp_ or __); use the name, severity and cluster fields", k, strings.Join(reservedLabels, ", "))
		case v == "" || len(v) > MaxAlarmLabelValue || !utf8.ValidString(v):
			return httpapi.Invalid(field, "%s must be 1 to %d bytes of UTF-8", field, MaxAlarmLabelValue)
		}
	}
	resolved := a.Resolved || a.EndsAt != nil
	a.Resolved = resolved
	field, at := "startsAt", a.StartsAt
	if resolved {
		field, at = "endsAt", a.EndsAt
	}
	if at == nil {
		at = &now
	}
	switch {
	case at.Before(now.Add(-MaxAlarmAge)):
		return &httpapi.Error{Status: http.StatusUnprocessableEntity, Code: "AlarmTooOld", Field: field,
			Message: fmt.Sprintf("%s %s is more than %s old (ecp's time is %s): old alarms are refused, send alarms as they happen", field, at.UTC().Format(time.RFC3339), MaxAlarmAge, now.Format(time.RFC3339))}
	case at.After(now.Add(MaxAlarmSkew)):
		return httpapi.Invalid(field, "%s %s is in the future (ecp's time is %s)", field, at.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	t := at.UTC()
	if resolved {
		a.EndsAt = &t
	} else {
		a.StartsAt = &t
	}
	if a.StartsAt != nil && a.EndsAt != nil && a.EndsAt.Before(*a.StartsAt) {
		return httpapi.Invalid("endsAt", "endsAt must not be before startsAt")
	}
	return nil
}

// send posts the alarm to Alertmanager with the project's labels and names.
func (c *customAlarms) send(ctx context.Context, p tenancy.Project, a CustomAlarm) (CustomAlarmReply, error) {
	s := c.s
	if s.alerting == nil || s.opts.AlertmanagerURL == "" {
		return CustomAlarmReply{}, httpapi.Conflict("custom alarms go through Alertmanager, and this ecp has none: a system admin starts it with --alertmanager.url, --alertmanager.config-file and --prometheus.rules-dir")
	}
	labels := map[string]string{"alertname": a.Name, rules.LabelProject: p.ID, rules.LabelSeverity: a.Severity}
	for k, v := range a.Labels {
		labels[k] = v
	}
	base := strings.TrimRight(s.opts.ExternalURL, "/")
	link := base + "/projects/" + p.ID + "/alerts"
	annotations := map[string]string{
		rules.AnnotationSummary: a.Message, rules.AnnotationDescription: a.Message, rules.AnnotationProjectName: p.Name,
	}
	if a.Cluster != "" {
		var spec registry.Spec
		_, err := kv.Get(ctx, s.cli, registry.Key(a.Cluster), &spec)
		if errors.Is(err, kv.ErrNotFound) || (err == nil && spec.Project != p.ID) {
			// The same answer for another project's cluster as for none.
			return CustomAlarmReply{}, httpapi.Invalid("cluster", "project %s has no cluster %s", p.ID, a.Cluster)
		} else if err != nil {
			return CustomAlarmReply{}, err
		}
		labels[rules.LabelCluster] = a.Cluster
		annotations[rules.AnnotationClusterName] = spec.Name
		link = base + fmt.Sprintf(rules.ClusterLinkPath, a.Cluster)
	}
	annotations[rules.AnnotationLink] = link
	var org tenancy.Org
	if _, err := kv.Get(ctx, s.cli, tenancy.OrgsPrefix+p.Org, &org); err == nil {
		annotations[rules.AnnotationOrganizationName] = org.Name
	} else if !errors.Is(err, kv.ErrNotFound) {
		return CustomAlarmReply{}, err
	}
	alert := map[string]any{"labels": labels, "annotations": annotations, "generatorURL": link}
	if a.StartsAt != nil {
		alert["startsAt"] = *a.StartsAt
	}
	if a.EndsAt != nil {
		alert["endsAt"] = *a.EndsAt
	}
	if err := s.postAlerts(ctx, "custom alarm", []map[string]any{alert}); err != nil {
		return CustomAlarmReply{}, err
	}
	reply := CustomAlarmReply{Name: a.Name, State: AlarmFiring, StartsAt: a.StartsAt, EndsAt: a.EndsAt,
		Message: "Alertmanager accepted the alarm; it takes the project's route. Without endsAt it resolves after Alertmanager's resolve timeout unless sent again"}
	if a.Resolved {
		reply.State, reply.Message = AlarmResolved, "Alertmanager accepted the resolution"
	}
	return reply, nil
}

var alarmLabelName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// postAlerts posts alerts to Alertmanager's POST /api/v2/alerts; what
// names them in errors.
func (s *Service) postAlerts(ctx context.Context, what string, alerts []map[string]any) error {
	b, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	sendCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(sendCtx, http.MethodPost, strings.TrimRight(s.opts.AlertmanagerURL, "/")+"/api/v2/alerts", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return &httpapi.Error{Status: http.StatusBadGateway, Code: "AlertmanagerUnreachable", Message: "Alertmanager could not be reached: " + err.Error()}
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	if resp.StatusCode/100 != 2 {
		return &httpapi.Error{Status: http.StatusBadGateway, Code: "AlertmanagerRefused", Message: fmt.Sprintf("Alertmanager refused the %s: %s: %s", what, resp.Status, strings.TrimSpace(string(msg)))}
	}
	return nil
}
