// Package alerting turns every project's alert settings into what the real,
// unmodified Prometheus and Alertmanager run: one rule file per project in
// Prometheus' rules directory and one Alertmanager configuration with a
// route per project plus ecp's own webhook receiver.
//
// Apply renders everything, validates it with Prometheus' rulefmt and
// Alertmanager's config loader before a byte reaches disk, writes each file
// atomically (temporary file and rename in the same directory), removes the
// files of projects that switched alerting off or are gone, and reloads
// through POST /-/reload each server whose files changed or whose last
// reload failed (a Prometheus reload restarts its Alertmanager discovery,
// so needless ones delay alerts; Reload forces both). A failed reload is returned with the
// server's own message and counted in ecp_alerting_reload_failures_total;
// ecp_alerting_last_reload_success says whether the last one worked. The
// servers keep their previous configuration when they refuse a new one.
//
// The output targets Prometheus 2.42 and Alertmanager 0.25, the oldest
// versions ecp supports (Debian 12's): see shared/research/prom-stack.md.
// Prometheus must load the rules directory, for example
//
//	rule_files: ["/var/lib/ecp/rules/*.rules.yml"]
//
// and run with --web.enable-lifecycle so that /-/reload is allowed.
package alerting

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/alertmanager"
	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/internal/secret"
	"github.com/ecpio/ecp/rules"
)

// Targets of a reload, the values of the metrics' target label.
const (
	TargetPrometheus   = "prometheus"
	TargetAlertmanager = "alertmanager"
)

// Rule file names: ecp owns exactly the files in the rules directory that
// start with RuleFilePrefix and end with RuleFileSuffix, and leaves any
// other file there alone.
const (
	RuleFilePrefix = "ecp_"
	RuleFileSuffix = ".rules.yml"
)

// RuleFileName is the name of a project's rule file.
func RuleFileName(project string) string { return RuleFilePrefix + project + RuleFileSuffix }

// SMTP is how Alertmanager sends e-mail (Alertmanager's global smtp_*).
type SMTP struct {
	// Smarthost is host:port of the SMTP server (--smtp.smarthost).
	Smarthost string
	// From is the sender address (--smtp.from).
	From string
	// RequireTLS insists on STARTTLS (--smtp.require-tls); Alertmanager's
	// own default is true.
	RequireTLS bool
	// Username and Password authenticate to the server, when it asks.
	Username string
	Password secret.String
}

// Routing holds Alertmanager's grouping timers. A zero field is left out of
// the file, so Alertmanager's own default applies (group_wait 30s,
// group_interval 5m, repeat_interval 4h).
type Routing struct {
	// GroupWait is how long a new group waits for more alerts before its
	// first notification.
	GroupWait model.Duration
	// GroupInterval is how long before a group's next notification about
	// new alerts in it.
	GroupInterval model.Duration
	// RepeatInterval is how long before a still-firing alert is sent again.
	RepeatInterval model.Duration
	// ECPGroupInterval is group_interval on ecp's own route, where every
	// alert is its own group: how soon a resolution reaches ecp's history.
	ECPGroupInterval model.Duration
	// ResolveTimeout is Alertmanager's resolve_timeout: how long an alert
	// posted without an end time (a test notification) stays firing.
	// Zero means DefaultResolveTimeout.
	ResolveTimeout model.Duration
}

// Options configure rendering, writing and reloading.
type Options struct {
	// RulesDir is Prometheus' rules directory (--prometheus.rules-dir).
	RulesDir string
	// AlertmanagerConfigFile is the file Alertmanager loads
	// (--alertmanager.config-file); written with mode 0600.
	AlertmanagerConfigFile string
	// PrometheusURL and AlertmanagerURL are where /-/reload is posted;
	// empty skips that reload (the file is still written).
	PrometheusURL   string
	AlertmanagerURL string
	// ExternalURL is ecp's URL as users reach it, for the links in alerts.
	ExternalURL string
	// Interval is the rule evaluation interval: the agents' collection
	// interval, so each evaluation sees a new sample.
	Interval time.Duration
	// WebhookURL is ecp's own webhook receiver, which gets every alert.
	WebhookURL string
	// WebhookToken, when set, is sent as a bearer token to WebhookURL.
	WebhookToken secret.String
	// SMTP is needed by projects with e-mail recipients.
	SMTP SMTP
	// Destinations is the notification policy: every Apply resolves each
	// webhook's host again and leaves out the ones it refuses now (DNS
	// rebinding after the settings were saved). Required by New.
	Destinations Destinations
	// Routing sets Alertmanager's grouping timers.
	Routing Routing
	// ReloadTimeout bounds each /-/reload call.
	ReloadTimeout time.Duration
	// HTTPClient posts the reloads; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Logger and Registerer are injected; nil means discard and no metrics.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// DefaultOptions returns options with every default set; paths, URLs and
// SMTP are left for the caller.
func DefaultOptions() Options {
	return Options{
		Interval: rules.DefaultInterval,
		SMTP:     SMTP{RequireTLS: true},
		Routing: Routing{
			// Two evaluations: the alerts of one fault (a connector,
			// its actions, the rules failing on it) fire within one
			// evaluation of each other, so they go out as one
			// notification; still within half a minute of firing.
			GroupWait: model.Duration(2 * rules.DefaultInterval),
			// Grouped by cluster, a new fault in a cluster that already
			// notified waits for this: two evaluations, as group_wait.
			GroupInterval:    model.Duration(2 * rules.DefaultInterval),
			RepeatInterval:   model.Duration(4 * time.Hour),
			ECPGroupInterval: model.Duration(10 * time.Second),
		},
		ReloadTimeout: 10 * time.Second,
	}
}

// validate checks the options rendering needs.
func (o Options) validate() error {
	if err := rules.ValidExternalURL(o.ExternalURL); err != nil {
		return err
	}
	if err := validWebhookURL(o.WebhookURL); err != nil {
		return fmt.Errorf("ecp webhook URL %q: want an absolute http or https URL%w", o.WebhookURL, err)
	}
	return nil
}

// Destinations gives the notification destination policy in force now;
// *destpolicy.Store is the one ecp runs with.
type Destinations interface {
	Load(ctx context.Context) (*destpolicy.Checker, error)
}

// Alerting renders, writes and reloads. It is safe for concurrent use; Apply
// calls run one at a time.
type Alerting struct {
	opts   Options
	logger *slog.Logger
	client *http.Client

	mu sync.Mutex // serialises Apply and Reload
	// validated holds the digest of each rule file content that passed
	// ValidateRules. Validation is a pure function of the bytes and costs
	// about 2 ms a project (template parsing), so an Apply over 1000
	// projects validates only the files whose content changed.
	validated map[[sha256.Size]byte]bool
	// rendered holds each project's last rule file and the settings it
	// was rendered from: a file names every cluster of its project, and
	// an Apply for a change of one project renders that one alone (the
	// names' cluster lists of the others are the same slices, which
	// compare at once).
	rendered map[string]renderedRules
	// current holds the targets known to run what is on disk: their last
	// reload succeeded and ecp has written nothing of theirs since. Apply
	// reloads only the others, because every Prometheus reload restarts
	// its Alertmanager discovery, and alerts sent in that gap wait for
	// the next resend (--rules.alert.resend-delay, 1m by default).
	current map[string]bool

	reloadFailures *prometheus.CounterVec
	reloadSuccess  *prometheus.GaugeVec
	reloadTime     *prometheus.GaugeVec
	invalid        prometheus.Gauge
}

// New checks the options and registers the metrics.
func New(o Options) (*Alerting, error) {
	if o.RulesDir == "" {
		return nil, errors.New("alerting: a rules directory is required")
	}
	if o.AlertmanagerConfigFile == "" {
		return nil, errors.New("alerting: an alertmanager config file is required")
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("alerting: %w", err)
	}
	if o.Destinations == nil {
		return nil, errors.New("alerting: a notification destination policy is required")
	}
	if o.ReloadTimeout <= 0 {
		o.ReloadTimeout = DefaultOptions().ReloadTimeout
	}
	f := promauto.With(o.Registerer)
	a := &Alerting{
		opts:      o,
		logger:    o.Logger,
		client:    o.HTTPClient,
		validated: map[[sha256.Size]byte]bool{}, rendered: map[string]renderedRules{},
		current: map[string]bool{},
		reloadFailures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_alerting_reload_failures_total",
			Help: "Reloads of Prometheus or Alertmanager that failed, by target.",
		}, []string{"target"}),
		reloadSuccess: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ecp_alerting_last_reload_success",
			Help: "Whether the last reload of the target succeeded (1) or failed (0).",
		}, []string{"target"}),
		reloadTime: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ecp_alerting_last_reload_success_timestamp_seconds",
			Help: "When the target was last reloaded successfully.",
		}, []string{"target"}),
		invalid: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_alerting_invalid_projects",
			Help: "Projects left out of the last Apply because their settings could not be rendered.",
		}),
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.client == nil {
		a.client = http.DefaultClient
	}
	for _, t := range []string{TargetPrometheus, TargetAlertmanager} {
		a.reloadFailures.WithLabelValues(t)
	}
	return a, nil
}

// Check validates one project's settings against the user's rules and what
// this ecp can deliver (e-mail needs SMTP). Its error is an *httpapi.Error
// naming the field, for the alert-settings API to return as is.
func (a *Alerting) Check(project string, s Settings) error {
	return check(project, s, a.opts)
}

// ProjectError is a project left out of an Apply, and why.
type ProjectError struct {
	Project string
	Err     error
}

func (e *ProjectError) Error() string { return fmt.Sprintf("project %q: %v", e.Project, e.Err) }

// Unwrap returns the cause.
func (e *ProjectError) Unwrap() error { return e.Err }

// DroppedError is a webhook left out of an Apply because the notification
// policy refuses where its host resolves now; the project's other channels
// run.
type DroppedError struct {
	Project string
	// Field is the webhook's field in the settings, "webhooks[0].url".
	Field string
	Err   error
}

func (e *DroppedError) Error() string {
	return fmt.Sprintf("project %q: %s left out: %v", e.Project, e.Field, e.Err)
}

// Unwrap returns the cause.
func (e *DroppedError) Unwrap() error { return e.Err }

// Apply makes Prometheus and Alertmanager run exactly the given projects'
// settings (project id → settings; projects absent or disabled get no rules
// and no route). A project whose settings cannot be rendered is left out and
// reported as a *ProjectError, so that one bad project never silences the
// others; a webhook the notification policy refuses now is left out and
// reported as a *DroppedError; every other failure (the policy, writing,
// reloading) is returned too. Nothing is written unless the whole output
// validated.
func (a *Alerting) Apply(ctx context.Context, projects map[string]Settings) error {
	a.mu.Lock()
	defer a.mu.Unlock()

	policy, err := a.opts.Destinations.Load(ctx)
	if err != nil {
		return fmt.Errorf("loading the notification policy: %w", err)
	}
	var errs []error
	ruleFiles := map[string][]byte{}
	good := map[string]Settings{}
	for _, id := range sortedIDs(projects) {
		s := projects[id]
		if !s.Enabled {
			continue
		}
		if err := check(id, s, a.opts); err != nil {
			errs = append(errs, &ProjectError{Project: id, Err: err})
			continue
		}
		s, dropped, err := allowedWebhooks(ctx, policy, id, s)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, dropped...)
		b, err := a.renderValidRules(id, s)
		if err != nil {
			errs = append(errs, &ProjectError{Project: id, Err: err})
			continue
		}
		ruleFiles[RuleFileName(id)] = b
		good[id] = s
	}
	// Projects turned off or invalid since keep no file in memory.
	for id := range a.rendered {
		if _, ok := good[id]; !ok {
			delete(a.rendered, id)
		}
	}
	a.invalid.Set(float64(countProjectErrors(errs)))
	am, err := RenderAlertmanager(good, a.opts)
	if err != nil {
		// Every project passed check, so this is ecp's own fault: write
		// nothing rather than rules without their routes.
		return errors.Join(append(errs, err)...)
	}

	rulesChanged, err := a.writeRules(ruleFiles)
	if rulesChanged || err != nil {
		a.current[TargetPrometheus] = false
	}
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// The e-mail templates first: the configuration names them.
	tmpl := filepath.Join(filepath.Dir(a.opts.AlertmanagerConfigFile), alertmanager.EmailTemplateFile)
	if old, err := os.ReadFile(tmpl); err != nil || !bytes.Equal(old, alertmanager.EmailTemplate) {
		a.current[TargetAlertmanager] = false
		if err := writeAtomic(tmpl, alertmanager.EmailTemplate, 0o644); err != nil {
			return errors.Join(append(errs, fmt.Errorf("writing alertmanager e-mail templates: %w", err))...)
		}
	}
	if old, err := os.ReadFile(a.opts.AlertmanagerConfigFile); err != nil || !bytes.Equal(old, am) {
		a.current[TargetAlertmanager] = false
		if err := writeAtomic(a.opts.AlertmanagerConfigFile, am, 0o600); err != nil {
			return errors.Join(append(errs, fmt.Errorf("writing alertmanager config: %w", err))...)
		}
	}
	a.logger.Info("alerting configuration written", "projects", len(good), "invalidProjects", len(errs))
	if err := a.reload(ctx, false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// allowedWebhooks returns s without the webhooks policy refuses now, and a
// *DroppedError for each; an error that is not a refusal (ctx ended) is
// returned alone.
func allowedWebhooks(ctx context.Context, policy *destpolicy.Checker, project string, s Settings) (Settings, []error, error) {
	var dropped []error
	kept := make([]Webhook, 0, len(s.Webhooks))
	for i, w := range s.Webhooks {
		err := policy.CheckURL(ctx, w.URL)
		var re *destpolicy.RefusedError
		switch {
		case err == nil:
			kept = append(kept, w)
		case errors.As(err, &re):
			dropped = append(dropped, &DroppedError{Project: project, Field: fmt.Sprintf("webhooks[%d].url", i), Err: err})
		default:
			return s, nil, fmt.Errorf("checking the webhooks of project %q: %w", project, err)
		}
	}
	s.Webhooks = kept
	return s, dropped, nil
}

func countProjectErrors(errs []error) int {
	n := 0
	for _, e := range errs {
		var pe *ProjectError
		if errors.As(e, &pe) {
			n++
		}
	}
	return n
}

// renderedRules is a project's rule file and the settings it came from.
type renderedRules struct {
	settings Settings
	file     []byte
}

// renderValidRules is RenderRules with the last file of each project and
// validation results remembered.
func (a *Alerting) renderValidRules(project string, s Settings) ([]byte, error) {
	if r, ok := a.rendered[project]; ok && reflect.DeepEqual(r.settings, s) {
		return r.file, nil
	}
	b, err := renderRules(project, s, a.opts)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	if !a.validated[sum] {
		if err := ValidateRules(b); err != nil {
			return nil, fmt.Errorf("rendering rules of project %q: %w", project, err)
		}
		if len(a.validated) >= maxValidated {
			clear(a.validated)
		}
		a.validated[sum] = true
	}
	a.rendered[project] = renderedRules{settings: s, file: b}
	return b, nil
}

// maxValidated bounds the validation cache; ECP's limit is 1000 projects.
const maxValidated = 10000

// check is Check without the receiver, for Apply.
func check(project string, s Settings, o Options) error {
	if !rules.ValidProjectID(project) {
		return fmt.Errorf("project id %q: want letters, digits, '_', '.' or '-'", project)
	}
	if err := s.Validate(); err != nil {
		return err
	}
	if len(s.Emails) > 0 && (o.SMTP.Smarthost == "" || o.SMTP.From == "") {
		return invalidNoSMTP()
	}
	return nil
}

// writeRules writes every wanted rule file whose content changed and
// removes ecp's files that are no longer wanted; it reports whether it
// changed anything.
func (a *Alerting) writeRules(want map[string][]byte) (changed bool, err error) {
	if err := os.MkdirAll(a.opts.RulesDir, 0o755); err != nil {
		return false, fmt.Errorf("creating rules directory: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		path := filepath.Join(a.opts.RulesDir, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, want[name]) {
			continue
		}
		changed = true
		if err := writeAtomic(path, want[name], 0o644); err != nil {
			return changed, fmt.Errorf("writing rule file: %w", err)
		}
	}
	entries, err := os.ReadDir(a.opts.RulesDir)
	if err != nil {
		return changed, fmt.Errorf("listing rules directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, RuleFilePrefix) || !strings.HasSuffix(name, RuleFileSuffix) || want[name] != nil {
			continue
		}
		changed = true
		if err := os.Remove(filepath.Join(a.opts.RulesDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return changed, fmt.Errorf("removing rule file: %w", err)
		}
		a.logger.Info("rule file removed", "file", name)
	}
	return changed, nil
}

// writeAtomic replaces path with data: a reader (Prometheus reloading at the
// wrong moment, or after a crash) sees the old file or the new one, never a
// half-written one. The temporary file lives in the same directory, so the
// rename stays on one file system.
func writeAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// A leading dot keeps the temporary file out of Prometheus' glob.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Reload asks Prometheus and Alertmanager to load their files again. Both
// are tried; the error holds each failure with the server's own message.
func (a *Alerting) Reload(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reload(ctx, true)
}

// reload posts /-/reload to each configured target that is not known to
// run its files already (all of them when force is set).
func (a *Alerting) reload(ctx context.Context, force bool) error {
	var errs []error
	for _, t := range []struct{ name, url string }{
		{TargetPrometheus, a.opts.PrometheusURL},
		{TargetAlertmanager, a.opts.AlertmanagerURL},
	} {
		if t.url == "" || (!force && a.current[t.name]) {
			continue
		}
		if err := a.reloadOne(ctx, t.name, t.url); err != nil {
			a.current[t.name] = false
			a.reloadFailures.WithLabelValues(t.name).Inc()
			a.reloadSuccess.WithLabelValues(t.name).Set(0)
			a.logger.Error("reload failed", "target", t.name, "err", err)
			errs = append(errs, err)
			continue
		}
		a.current[t.name] = true
		a.reloadSuccess.WithLabelValues(t.name).Set(1)
		a.reloadTime.WithLabelValues(t.name).SetToCurrentTime()
	}
	return errors.Join(errs...)
}

// maxReloadBody bounds how much of a refusal's body is kept in the error.
const maxReloadBody = 4 << 10

func (a *Alerting) reloadOne(ctx context.Context, target, base string) error {
	ctx, cancel := context.WithTimeout(ctx, a.opts.ReloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/-/reload", nil)
	if err != nil {
		return fmt.Errorf("reloading %s: %w", target, err)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("reloading %s: %w", target, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReloadBody))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("reloading %s: %s: %s", target, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func sortedIDs(m map[string]Settings) []string {
	return slices.Sorted(maps.Keys(m))
}

// Resolution is an alert whose cluster left its project, to be resolved in
// Alertmanager at once: its labels, annotations and start as Prometheus
// sent them.
type Resolution struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	StartsAt    time.Time         `json:"startsAt"`
	EndsAt      time.Time         `json:"endsAt"`
}

// Resolve posts alerts to Alertmanager as resolved now (EndsAt is set
// here). Apply rewrites the rules so that Prometheus resolves them too, but
// Prometheus sends that resolution only after its Alertmanager discovery,
// restarted by the reload, settles and the resend delay (a minute by
// default) passes; Alertmanager keeps the later of the two ends and
// notifies the resolution within group_interval. Without an Alertmanager
// URL it does nothing.
func (a *Alerting) Resolve(ctx context.Context, alerts []Resolution, now time.Time) error {
	if a.opts.AlertmanagerURL == "" || len(alerts) == 0 {
		return nil
	}
	for i := range alerts {
		alerts[i].EndsAt = now.UTC()
	}
	b, err := json.Marshal(alerts)
	if err != nil {
		return fmt.Errorf("resolving alerts: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.ReloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.opts.AlertmanagerURL, "/")+"/api/v2/alerts", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("resolving alerts: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("resolving alerts: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxReloadBody))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("resolving alerts: alertmanager answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}
