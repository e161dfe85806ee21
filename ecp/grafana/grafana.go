// Package grafana provisions ecp's dashboards into Grafana: one folder per
// project (uid derived from the project id, title the project's name) with
// the fleet overview, cluster detail and data integration dashboards of
// package dashboards in it, their project variable preset to the project.
//
// Only the leader (an etcd election) provisions. It syncs on start, on
// every change under /ecp/projects/ (create, rename, delete) and every
// ResyncInterval, which also repairs what was changed by hand in Grafana.
// Every call is idempotent (dashboards are saved with overwrite), so a
// failed sync is simply run again after RetryInterval; failures are logged
// and counted in ecp_grafana_sync_failures_total.
package grafana

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/dashboards"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

// Defaults of Config.
const (
	DefaultResyncInterval = 10 * time.Minute
	DefaultRetryInterval  = 30 * time.Second
)

// FolderPrefix starts the uid of every folder ecp owns; ecp deletes such
// folders when their project is gone and leaves every other folder alone.
const FolderPrefix = "ecp-p-"

// FolderUID is the uid of a project's folder.
func FolderUID(project string) string { return FolderPrefix + dashboards.ProjectKey(project) }

const leaderPrefix = "/ecp/leader/grafana/"

// Config is the wiring to Grafana (--grafana.*).
type Config struct {
	// URL is Grafana's base URL; empty turns provisioning off.
	URL string
	// Token is a Grafana service-account token with the Editor role (it
	// creates folders and dashboards); without it provisioning is off.
	Token secret.String
	// ResyncInterval is how often the leader syncs without a change.
	ResyncInterval time.Duration
	// RetryInterval is how long after a failed sync the next one runs.
	RetryInterval time.Duration
}

// DefaultConfig returns a Config with the intervals set and Grafana off.
func DefaultConfig() Config {
	return Config{ResyncInterval: DefaultResyncInterval, RetryInterval: DefaultRetryInterval}
}

// Enabled reports whether there is a Grafana to provision.
func (c Config) Enabled() bool { return c.URL != "" && !c.Token.IsZero() }

// Validate checks the flags' values, naming the flag.
func (c Config) Validate() error {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--grafana.url must be an absolute http:// or https:// URL such as http://grafana:3000; got %q", c.URL)
		}
	}
	if c.ResyncInterval <= 0 || c.RetryInterval <= 0 {
		return fmt.Errorf("grafana resync and retry intervals must be positive; got %s and %s", c.ResyncInterval, c.RetryInterval)
	}
	return nil
}

// Provisioner keeps Grafana's ecp folders and dashboards current.
type Provisioner struct {
	cfg     Config
	cli     *clientv3.Client
	grafana *Client
	logger  *slog.Logger
	replica string

	failures prometheus.Counter
	success  prometheus.Gauge
	lastOK   prometheus.Gauge
	folders  prometheus.Gauge
	leader   prometheus.Gauge
}

// New returns a provisioner for an enabled cfg, with its metrics on reg.
func New(cfg Config, cli *clientv3.Client, logger *slog.Logger, reg prometheus.Registerer) (*Provisioner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("grafana: a URL and a token are required")
	}
	g, err := NewClient(cfg.URL, cfg.Token, nil)
	if err != nil {
		return nil, err
	}
	f := promauto.With(reg)
	p := &Provisioner{cfg: cfg, cli: cli, grafana: g, logger: logger, replica: kv.NewID(),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "ecp_grafana_sync_failures_total", Help: "Syncs of ecp's folders and dashboards into Grafana that failed (each is retried).",
		}),
		success: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_grafana_last_sync_success", Help: "Whether the last sync into Grafana succeeded (1) or not (0).",
		}),
		lastOK: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_grafana_last_sync_success_timestamp_seconds", Help: "When ecp last synced Grafana successfully.",
		}),
		folders: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_grafana_project_folders", Help: "Project folders the last successful sync kept in Grafana.",
		}),
		leader: f.NewGauge(prometheus.GaugeOpts{
			Name: "ecp_grafana_leader", Help: "1 while this replica provisions Grafana.",
		}),
	}
	return p, nil
}

// Sync makes Grafana hold exactly one ecp folder per project, titled with
// the project's name, with the three dashboards in it; folders of projects
// that are gone are deleted.
func (p *Provisioner) Sync(ctx context.Context, projects []tenancy.Project) error {
	want := map[string]bool{}
	var errs []error
	for _, pr := range projects {
		uid := FolderUID(pr.ID)
		want[uid] = true
		if err := p.grafana.EnsureFolder(ctx, uid, pr.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range dashboards.Specs() {
			d, err := s.Build(dashboards.Params{Project: pr.ID, ProjectName: pr.Name})
			if err != nil {
				return err
			}
			if err := p.grafana.PutDashboard(ctx, uid, d); err != nil {
				errs = append(errs, fmt.Errorf("project %s dashboard %s: %w", pr.ID, s.Name, err))
			}
		}
	}
	existing, err := p.grafana.Folders(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, f := range existing {
		if strings.HasPrefix(f.UID, FolderPrefix) && !want[f.UID] {
			if err := p.grafana.DeleteFolder(ctx, f.UID); err != nil {
				errs = append(errs, err)
				continue
			}
			p.logger.Info("grafana folder of a deleted project removed", "folder", f.UID)
		}
	}
	if len(errs) == 0 {
		p.folders.Set(float64(len(want)))
	}
	return errors.Join(errs...)
}

// Run campaigns for leadership and, while it leads, syncs on start, on
// every project change and every ResyncInterval; it returns when ctx ends.
func (p *Provisioner) Run(ctx context.Context) error {
	l := kv.Leadership{Client: p.cli, Prefix: leaderPrefix, Value: p.replica, TTL: 10 * time.Second,
		Logger: p.logger, Name: "grafana provisioning"}
	return l.Run(ctx, func(ctx context.Context, _ *concurrency.Election) error {
		p.leader.Set(1)
		defer p.leader.Set(0)
		p.logger.Info("provisioning grafana", "url", p.cfg.URL)
		return p.lead(ctx)
	})
}

func (p *Provisioner) lead(ctx context.Context) error {
	return kv.Reconcile{
		Client:  p.cli,
		Watches: []kv.Watched{{Key: tenancy.ProjectsPrefix, Prefix: true, What: "projects"}},
		Resync:  p.cfg.ResyncInterval, Retry: p.cfg.RetryInterval,
		Apply: func(ctx context.Context) error {
			err := p.syncAll(ctx)
			if err != nil && ctx.Err() == nil {
				p.failures.Inc()
				p.success.Set(0)
			}
			return err
		},
		Logger: p.logger, Name: "grafana provisioning",
	}.Run(ctx)
}

func (p *Provisioner) syncAll(ctx context.Context) error {
	projects, err := tenancy.NewStore(p.cli).ListProjects(ctx)
	if err != nil {
		return err
	}
	if err := p.Sync(ctx, projects); err != nil {
		return err
	}
	p.success.Set(1)
	p.lastOK.SetToCurrentTime()
	p.logger.Debug("grafana provisioned", "projects", len(projects))
	return nil
}
