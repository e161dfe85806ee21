// Package alerts is the product side of ecp's alerting: each project's alert
// settings (GET/PUT /api/v1/projects/{project}/alert-settings and a test
// notification), the Alertmanager webhook receiver that keeps the alert
// lists, the lists themselves (GET /api/v1/projects/{project}/alerts,
// DELETE /api/v1/alerts/{id}), the project's silences and its storm guard.
//
// # Settings to Prometheus and Alertmanager
//
// Settings live in etcd. One replica, elected with concurrency.Election
// (its own election, independent of the fleet's sweeper: applying files and
// sweeping agents fail and move independently), watches them and, on every
// change, at start-up and on becoming leader, hands all projects' settings
// to ecp/alerting, which renders, validates, writes and reloads Prometheus'
// rule files and Alertmanager's configuration. It follows the cluster
// entries (through the replica's mirror of them, names.go), projects and
// organizations too: the rules name them (annotations cluster_name,
// project_name, organization_name) and select only the clusters each
// project holds now. When a cluster is deleted or
// transferred away, its active alerts move to history at once (endReason
// "removed") and are posted to Alertmanager as resolved, after the rules
// stop selecting it. The outcome (applied etcd
// revision, errors per project, reload failures with the servers' own
// messages) is stored in etcd, so every replica shows it: in each project's
// settings reply (`status`) and, in full, to system admins at
// GET /api/v1/system/alerting. ecp_alerts_apply_success and ecp/alerting's
// reload metrics show it on /metrics. A failed apply is retried.
//
// Without --prometheus.rules-dir and --alertmanager.config-file settings are
// stored and validated, nothing is written, and the status says so.
//
// # Alert lists
//
// Alertmanager's configuration routes every alert first to ecp's own webhook
// (POST /api/v1/alertmanager/webhook, bearer token generated once and kept
// in etcd), each alert its own group with send_resolved. A firing alert is
// stored under /ecp/alerts/active/<project>/<id>; its resolution moves it to
// /ecp/alerts/history/<project>/<id> on a lease, so etcd drops history after
// the retention by itself. The id is derived from Alertmanager's fingerprint
// and startsAt: the same episode notified again (repeats, another replica,
// a retry) maps to the same record, a new episode gets a new one. An active
// alert Alertmanager has not re-notified for StaleAfter (its route repeats
// hourly) is moved to history by the leader with endReason "stale", so a
// resolution lost while ecp was down cannot leave it active forever. With
// --alertmanager.url the leader also compares the active list with
// Alertmanager's own every ResyncInterval and moves what Alertmanager no
// longer holds to history with endReason "gone".
//
// # Silences
//
// GET/POST /api/v1/projects/{project}/silences and DELETE
// /api/v1/silences/{id} are real Alertmanager silences (its API v2), made
// and expired by ecp on a user's behalf: ecp writes every matcher itself
// and always adds project="<project>" (a project label in the request is
// refused), so no project can silence another's alerts; a silence belongs
// to the project of its one equality matcher on project, and one made
// outside ecp belongs to none (404 for everyone). Nothing is stored in
// etcd: Alertmanager holds the silences and their history. A silence mutes
// every receiver, ecp's own webhook included, so the active list also
// reads Alertmanager's list: it marks silenced alerts (silencedBy) and adds
// those that fired under a silence and never reached ecp; and the stale
// sweep keeps an alert Alertmanager still holds, silenced or not.
//
// # Notification channels
//
// A project's e-mail recipients and webhooks get its alerts through its
// Alertmanager route; with criticalOnly only alerts of severity critical
// (ecp's lists still get every alert). A webhook with custom headers or a
// JSON body template is relayed: Alertmanager 0.25 can add neither, so it
// posts to RelayPath with ecp's bearer token, and ecp posts to the webhook
// with its headers and, per alert, the template rendered
// (alerting/notify.go), dialling only addresses the notification policy
// allows at that moment. Header values are secrets: sealed in etcd with the
// rest of the settings, left out of every reply, and kept when a body sends
// a header back without its value for the same webhook URL. POST
// alert-settings/test with {"email"} or {"webhook"} tests that one channel:
// the test alert's ecp_test_channel label routes it to a receiver holding
// that channel alone.
//
// # Storm guard
//
// ECP's "alarm storm": when a project produces Settings.StormThreshold new
// alerts within alerting.StormWindow, its notifications stop, its channels get one notice saying so, and
// GET /projects/{project}/alerts/storm shows the storm until a project
// admin clears it (DELETE on the same path).
//
// ecp counts the alert episodes its own webhook stores for the first time:
// every alert of every project reaches that webhook at once (its route
// waits 0s and groups nothing), whichever replica receives it. Each new
// episode leaves a mark in etcd under /ecp/alerts/recent/<project>/ on a
// lease of StormWindow (shared by the marks of a few seconds), and a
// count-only read of the prefix is the number of alerts of the last
// minute, the same on every replica, with no clean-up: etcd drops the
// marks itself. The replica whose mark reaches the threshold creates the
// storm record if none exists (a transaction: one storm, one notice).
//
// A storm does not use an Alertmanager silence. A silence mutes every
// receiver, ecp's own webhook included, so the alert lists would go blind
// exactly when an operator most needs them, and ecp could not see the
// storm go on. Instead the leading replica, which watches the storm
// records, renders the project's route to no receiver but a sub-route for
// the storm notice (alerting.Settings.Storm): ecp's own route keeps every
// alert in the lists, and the project's channels get nothing more once
// Alertmanager reloaded (within a second; the project's group wait, two
// evaluations, usually holds the storm's first alerts back until then).
// After the reload the leader posts the notice (alertname ECPAlertStorm)
// once and records that it did. Clearing deletes the record and the marks
// (the storm's own alerts do not trip it again at once) and resolves the
// notice; the next apply restores the route, and Alertmanager then
// notifies what is still firing.
package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/seal"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

// WebhookPath is where Alertmanager posts notifications for ecp's lists.
const WebhookPath = "/api/v1/alertmanager/webhook"

// Defaults of Config.
const (
	DefaultHistoryRetention = 30 * 24 * time.Hour
	// DefaultStaleAfter is three of the hourly repeats Alertmanager sends
	// ecp for a still-firing alert.
	DefaultStaleAfter     = 3 * time.Hour
	DefaultResyncInterval = 5 * time.Minute
	DefaultRetryInterval  = 10 * time.Second
	DefaultSessionTTL     = 10 * time.Second
)

// Config is what `ecp serve` flags set. Every field is optional.
type Config struct {
	// PrometheusURL is posted /-/reload after the rule files change.
	PrometheusURL string
	// RulesDir is Prometheus' rules directory ecp writes to.
	RulesDir string
	// AlertmanagerURL is posted /-/reload (and test alerts) after the
	// configuration changes.
	AlertmanagerURL string
	// AlertmanagerConfigFile is the file Alertmanager loads.
	AlertmanagerConfigFile string
	// WebhookURL is where Alertmanager reaches ecp's webhook; default
	// <external URL>/api/v1/alertmanager/webhook.
	WebhookURL string
	// SMTP is how Alertmanager sends e-mail.
	SMTP alerting.SMTP
	// HistoryRetention is how long resolved alerts are kept.
	HistoryRetention time.Duration
}

// DefaultConfig is the configuration `ecp serve` starts from.
func DefaultConfig() Config {
	return Config{SMTP: alerting.SMTP{RequireTLS: true}, HistoryRetention: DefaultHistoryRetention}
}

// Configured reports whether ecp writes files for Prometheus and
// Alertmanager.
func (c Config) Configured() bool { return c.RulesDir != "" || c.AlertmanagerConfigFile != "" }

// Validate names the first flag that is set wrongly.
func (c Config) Validate() error {
	switch {
	case (c.RulesDir == "") != (c.AlertmanagerConfigFile == ""):
		return errors.New("--prometheus.rules-dir and --alertmanager.config-file go together: ecp writes rules and the routes that deliver them")
	case c.PrometheusURL != "" && c.RulesDir == "":
		return errors.New("--prometheus.url needs --prometheus.rules-dir (ecp reloads Prometheus after writing rules there)")
	case c.AlertmanagerURL != "" && c.AlertmanagerConfigFile == "":
		return errors.New("--alertmanager.url needs --alertmanager.config-file (ecp reloads Alertmanager after writing it)")
	case c.HistoryRetention < time.Hour:
		return fmt.Errorf("--alerts.history-retention must be at least 1h; got %s", c.HistoryRetention)
	case (c.SMTP.Smarthost == "") != (c.SMTP.From == ""):
		return errors.New("--smtp.smarthost and --smtp.from go together")
	}
	for flag, u := range map[string]string{"--prometheus.url": c.PrometheusURL, "--alertmanager.url": c.AlertmanagerURL, "--alertmanager.webhook-url": c.WebhookURL} {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("%s must be an absolute http:// or https:// URL; got %q", flag, u)
		}
	}
	return nil
}

// Options configure a Service.
type Options struct {
	Config
	// ExternalURL is ecp's URL as users reach it (links in alerts, default
	// webhook URL). Required.
	ExternalURL string
	// Interval is the rules' evaluation interval (ecp uses the agents'
	// report interval).
	Interval time.Duration
	// Routing overrides Alertmanager's grouping timers when non-zero.
	Routing alerting.Routing
	// ReplicaID names this replica in the election; the hostname and pid
	// when empty.
	ReplicaID string
	// StaleAfter, ResyncInterval, RetryInterval, SessionTTL: see the
	// Default constants.
	StaleAfter     time.Duration
	ResyncInterval time.Duration
	RetryInterval  time.Duration
	SessionTTL     time.Duration
	// Destinations is the notification policy webhooks are checked
	// against when saved, tested and rendered. Required.
	Destinations alerting.Destinations
	// HTTPClient posts reloads and test alerts; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Seal seals the webhook token in etcd. Required.
	Seal *seal.Key
	// Clusters is the replica's mirror of the cluster records, whose
	// names and projects the rules carry. Required; New subscribes to it,
	// so it must not have loaded yet.
	Clusters *registry.Mirror
}

// Service serves the routes and runs the leader's loop.
type Service struct {
	opts   Options
	cli    *clientv3.Client
	authz  *tenancy.Authorizer
	logger *slog.Logger
	// alerting is nil when ecp writes no files.
	alerting *alerting.Alerting
	token    secret.String
	client   *http.Client
	history  *leases
	// index is every project's clusters, kept from Clusters' changes.
	index *clusterIndex
	// recent leases the storm guard's marks.
	recent  *leases
	metrics *metrics

	mu       sync.Mutex
	isLeader bool
}

// New loads (or creates) the webhook token and prepares the service.
func New(ctx context.Context, opts Options, cli *clientv3.Client, authz *tenancy.Authorizer, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	if opts.ExternalURL == "" {
		return nil, errors.New("alerts: Options.ExternalURL is required")
	}
	if opts.Seal == nil {
		return nil, errors.New("alerts: Options.Seal is required")
	}
	if opts.Destinations == nil {
		return nil, errors.New("alerts: Options.Destinations is required")
	}
	if opts.Clusters == nil {
		return nil, errors.New("alerts: Options.Clusters is required")
	}
	select {
	case <-opts.Clusters.Ready():
		return nil, errors.New("alerts: Options.Clusters has loaded already; New must subscribe to it before it runs")
	default:
	}
	if opts.HistoryRetention == 0 {
		opts.HistoryRetention = DefaultHistoryRetention
	}
	if opts.WebhookURL == "" {
		opts.WebhookURL = strings.TrimRight(opts.ExternalURL, "/") + WebhookPath
	}
	setDefault(&opts.StaleAfter, DefaultStaleAfter)
	setDefault(&opts.ResyncInterval, DefaultResyncInterval)
	setDefault(&opts.RetryInterval, DefaultRetryInterval)
	setDefault(&opts.SessionTTL, DefaultSessionTTL)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReplicaID == "" {
		host, _ := os.Hostname()
		opts.ReplicaID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), kv.NewID()[:6])
	}
	s := &Service{opts: opts, cli: cli, authz: authz, logger: logger, client: opts.HTTPClient}
	if s.client == nil {
		s.client = http.DefaultClient
	}
	var err error
	if s.token, err = WebhookToken(ctx, cli, opts.Seal); err != nil {
		return nil, err
	}
	s.index = newClusterIndex(opts.Clusters)
	s.history = &leases{cli: cli, ttl: opts.HistoryRetention + time.Hour}
	s.recent = &leases{cli: cli, ttl: alerting.StormWindow, every: stormMarkEvery}
	s.metrics = newMetrics(reg)
	if opts.Configured() {
		ao := alerting.DefaultOptions()
		ao.RulesDir, ao.AlertmanagerConfigFile = opts.RulesDir, opts.AlertmanagerConfigFile
		ao.PrometheusURL, ao.AlertmanagerURL = opts.PrometheusURL, opts.AlertmanagerURL
		ao.ExternalURL, ao.WebhookURL, ao.WebhookToken = opts.ExternalURL, opts.WebhookURL, s.token
		ao.SMTP, ao.Destinations = opts.SMTP, opts.Destinations
		if opts.Interval > 0 {
			ao.Interval = opts.Interval
			// Two evaluations, as alerting.DefaultOptions has for its
			// interval: one fault's alerts make one notification. A
			// cluster's group usually notified already (a new cluster
			// is over its max connections at once), so a new fault in it
			// waits for group_interval: as short, but at least 10 s.
			ao.Routing.GroupWait = model.Duration(2 * opts.Interval)
			ao.Routing.GroupInterval = model.Duration(max(2*opts.Interval, 10*time.Second))
		}
		mergeRouting(&ao.Routing, opts.Routing)
		ao.HTTPClient, ao.Logger, ao.Registerer = opts.HTTPClient, logger.With("component", "alerting"), reg
		if s.alerting, err = alerting.New(ao); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func mergeRouting(dst *alerting.Routing, src alerting.Routing) {
	if src.GroupWait != 0 {
		dst.GroupWait = src.GroupWait
	}
	if src.GroupInterval != 0 {
		dst.GroupInterval = src.GroupInterval
	}
	if src.RepeatInterval != 0 {
		dst.RepeatInterval = src.RepeatInterval
	}
	if src.ECPGroupInterval != 0 {
		dst.ECPGroupInterval = src.ECPGroupInterval
	}
	if src.ResolveTimeout != 0 {
		dst.ResolveTimeout = src.ResolveTimeout
	}
}

type metrics struct {
	applySuccess  prometheus.Gauge
	applyTime     prometheus.Gauge
	leader        prometheus.Gauge
	notifications *prometheus.CounterVec
	moved         *prometheus.CounterVec
	storms        prometheus.Counter
	relay         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		applySuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_alerts_apply_success",
			Help: "Whether this replica's last apply of alert settings to Prometheus and Alertmanager succeeded (1) or failed (0); only the leader applies.",
		}),
		applyTime: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_alerts_apply_success_timestamp_seconds",
			Help: "When this replica last applied alert settings successfully.",
		}),
		leader: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_alerts_leader",
			Help: "Whether this replica is the one applying alert settings (1) or not (0).",
		}),
		notifications: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_alerts_webhook_alerts_total",
			Help: "Alerts received on the Alertmanager webhook, by result: stored, unchanged, ignored (no project label or a test alert) or error.",
		}, []string{"result"}),
		moved: f.NewCounterVec(prometheus.CounterOpts{
			Name: "ecp_alerts_moved_to_history_total",
			Help: "Alerts moved from the active list to history, by reason: resolved, stale, gone (Alertmanager no longer holds it) or removed (its cluster left the project).",
		}, []string{"reason"}),
		storms: f.NewCounter(prometheus.CounterOpts{
			Name: "ecp_alerts_storms_total",
			Help: "Alert storms tripped: a project produced its storm threshold of new alerts within a minute, and its notifications stopped.",
		}),
	}
	m.relay = f.NewCounterVec(prometheus.CounterOpts{
		Name: "ecp_alerts_relay_total",
		Help: "Posts of relayed webhooks (custom headers or template), by result: sent, failed (unreachable or not 2xx; Alertmanager retries), refused (the notification policy refused the address at dial time) or gone (the webhook left the settings).",
	}, []string{"result"})
	for _, r := range []string{relaySent, relayFailed, relayRefused, relayGone} {
		m.relay.WithLabelValues(r)
	}
	for _, r := range []string{"stored", "unchanged", "ignored", "error"} {
		m.notifications.WithLabelValues(r)
	}
	for _, r := range []string{EndResolved, EndStale, EndGone, EndRemoved} {
		m.moved.WithLabelValues(r)
	}
	return m
}
