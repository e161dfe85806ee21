package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/agentdownloads"
	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/grafana"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/remotewrite"
	"github.com/ecpio/ecp/internal/secret"
)

// Defaults shared by the flags of `ecp serve` and DefaultOptions.
const (
	DefaultListenAddress        = "127.0.0.1:8080"
	DefaultDataDir              = "./data"
	DefaultRegistrationTokenTTL = clusters.DefaultTokenTTL
	DefaultAdminUsername        = "admin"
	DefaultDownloadsDir         = agentdownloads.DefaultDir
	DefaultShutdownTimeout      = 10 * time.Second
	// DefaultEtcdProbeInterval is how often readiness checks etcd.
	DefaultEtcdProbeInterval = 5 * time.Second
	// DefaultDrainGrace is how long a shutdown lets in-flight requests
	// finish before it ends agents' long-polls.
	DefaultDrainGrace = 2 * time.Second
	DefaultSessionTTL = 12 * time.Hour
	// DefaultReportInterval is what agents are told to report at.
	DefaultReportInterval = agentproto.DefaultReportInterval
	DefaultAuditRetention = audit.DefaultRetention
	// DefaultAuditMaxRecords bounds the audit log by size besides age.
	DefaultAuditMaxRecords = audit.DefaultMaxRecords
	// DefaultEtcdQuotaBackendBytes is the embedded etcd member's backend
	// quota: past it etcd raises NOSPACE and refuses writes.
	DefaultEtcdQuotaBackendBytes = etcdserver.DefaultQuotaBackendBytes
	// DefaultReadTimeout bounds reading a whole request, body included,
	// so a slow or stalled body cannot hold a connection and a handler.
	// An agent's largest body (a 1 MiB log batch) needs 35 KiB/s.
	DefaultReadTimeout = 30 * time.Second
	// DefaultIdleTimeout is how long a keep-alive connection may wait for
	// its next request: agents report every 15 s on the same connection.
	DefaultIdleTimeout = 2 * time.Minute
	// DefaultRemoteWriteBatchWait is --remote-write.batch-wait's default.
	DefaultRemoteWriteBatchWait = remotewrite.DefaultBatchWait
)

// Options configure an App. Field names follow the flags of `ecp serve`.
type Options struct {
	// ListenAddress is where the HTTP server binds; "127.0.0.1:0" picks a
	// free port (Addr tells which).
	ListenAddress string
	// ExternalURL is ecp's URL as agents and browsers reach it; the
	// registration commands use it. Default: http://<bound address>.
	ExternalURL string
	// DataDir holds the embedded etcd's data (unless EtcdEndpoints is set).
	DataDir string
	// EtcdEndpoints, when set, are used instead of the embedded etcd.
	EtcdEndpoints []string
	// EtcdTLS is the CA and client certificate for EtcdEndpoints
	// (--etcd.tls.*); the embedded etcd uses its own (App.EtcdTLS).
	EtcdTLS etcdserver.TLSFiles
	// SecretsKeyFile holds the key that seals secrets stored in etcd
	// (--secrets.key-file); <DataDir>/secrets.key, created on first start,
	// when empty. Replicas sharing an etcd need the same key.
	SecretsKeyFile string
	// WebConfigFile is an optional web configuration file in the format of
	// github.com/prometheus/exporter-toolkit: TLS for the whole listener,
	// basic auth for /metrics and POST /-/reload (package webconfig).
	WebConfigFile string
	// EnablePprof serves net/http/pprof under /debug/pprof/, behind the
	// web configuration's basic auth (package ops).
	EnablePprof bool
	// ConfigFile is an optional YAML file (see Config); its settings
	// override Licence and RegistrationTokenTTL, and POST /-/reload (or
	// SIGHUP) re-reads it.
	ConfigFile string
	// Licence is the connection quota unless the config file sets it.
	Licence quota.Licence
	// RegistrationTokenTTL is how long a registration token stays valid.
	RegistrationTokenTTL time.Duration
	// ReportInterval is what agents are told to report at; an agent silent
	// for agentproto.SilentIntervals of it makes its cluster abnormal.
	ReportInterval time.Duration
	// DownloadsDir holds agent-exporter-<os>-<arch> (built by make dist).
	DownloadsDir string
	// AdminUsername and AdminPassword create the first system admin when
	// that user does not exist yet. An empty password is generated and
	// written once to Out.
	AdminUsername string
	AdminPassword secret.String
	// Out receives the one-time generated admin password; os.Stderr when nil.
	Out io.Writer
	// AuditRetention is how long audit records are kept (forever when 0).
	AuditRetention time.Duration
	// AuditMaxRecords is how many audit records are kept at most, the
	// oldest removed first (no limit when 0).
	AuditMaxRecords int
	// EtcdQuotaBackendBytes is the embedded etcd member's backend quota
	// (unused with EtcdEndpoints); etcd's own default when 0.
	EtcdQuotaBackendBytes int64
	// ReadTimeout bounds reading a request, headers and body (none when 0).
	ReadTimeout time.Duration
	// MaxConnections bounds the connections the listener holds; 0 derives
	// it from the open-file limit (connlimit.Headroom).
	MaxConnections int
	// SessionTTL is how long a login lasts.
	SessionTTL time.Duration
	// BcryptCost of password hashes; bcrypt's default when zero (tests
	// lower it).
	BcryptCost int
	// EtcdProbeInterval is how often the replica checks that etcd answers;
	// while it does not, /-/ready says 503.
	EtcdProbeInterval time.Duration
	// ShutdownTimeout bounds each step of Stop.
	ShutdownTimeout time.Duration
	// RemoteWriteURL is where agent samples are forwarded (a Prometheus
	// 2.42+ /api/v1/write or any remote-write 1.0 receiver); empty: agents
	// are told samples are not stored.
	RemoteWriteURL string
	// RemoteWriteBatchWait is how long a remote-write sender waits for
	// more agents' pushes to post with the one it holds (one call to the
	// backend for many pushes); 0 posts what is queued at once.
	RemoteWriteBatchWait time.Duration
	// Alerts wires alert settings to Prometheus and Alertmanager
	// (--prometheus.*, --alertmanager.*, --smtp.*); without rules dir and
	// config file settings are only stored.
	Alerts alerts.Config
	// Grafana is where ecp provisions a folder per project with its
	// dashboards (--grafana.url, --grafana.token-file); off without both.
	Grafana grafana.Config
	// fleet replaces the agent side in this package's tests of the user
	// API (clusterstest.Fleet); nil runs ecp/fleet with its agent API.
	fleet agentSide
	// Reload triggers a reload of the configuration file with every value
	// received: main passes the channel it gets SIGHUP on, so the app
	// itself never touches signals. The outcome is logged and exported as
	// ecp_config_last_reload_successful.
	Reload <-chan os.Signal
}

// DefaultOptions returns the options `ecp serve` starts from.
func DefaultOptions() Options {
	return Options{
		ListenAddress:        DefaultListenAddress,
		DataDir:              DefaultDataDir,
		Licence:              quota.Licence{TotalConnections: quota.DefaultTotalConnections, MaxPerCluster: quota.DefaultMaxPerCluster},
		RegistrationTokenTTL: DefaultRegistrationTokenTTL,
		ReportInterval:       DefaultReportInterval,
		RemoteWriteBatchWait: DefaultRemoteWriteBatchWait,
		DownloadsDir:         DefaultDownloadsDir,
		AdminUsername:        DefaultAdminUsername,
		SessionTTL:           DefaultSessionTTL,
		AuditRetention:       DefaultAuditRetention,
		ShutdownTimeout:      DefaultShutdownTimeout,
		EtcdProbeInterval:    DefaultEtcdProbeInterval,
		Alerts:               alerts.DefaultConfig(),
		Grafana:              grafana.DefaultConfig(),

		// Bounds on what a caller can make ecp hold or store.
		AuditMaxRecords:       DefaultAuditMaxRecords,
		EtcdQuotaBackendBytes: DefaultEtcdQuotaBackendBytes,
		ReadTimeout:           DefaultReadTimeout,
	}
}

// validate rejects options that would fail later, with the option's name.
func (o Options) validate() error {
	switch {
	case o.ListenAddress == "":
		return errors.New("ecp/app: Options.ListenAddress is required")
	case o.DataDir == "" && len(o.EtcdEndpoints) == 0:
		return errors.New("ecp/app: Options.DataDir is required when no etcd endpoints are given")
	case o.DataDir == "" && o.SecretsKeyFile == "":
		return errors.New("ecp/app: Options.SecretsKeyFile or Options.DataDir (for its default) is required")
	case len(o.EtcdEndpoints) == 0 && !o.EtcdTLS.IsZero():
		return errors.New("ecp/app: Options.EtcdTLS is for external etcd endpoints; the embedded etcd makes its own certificates")
	case o.RegistrationTokenTTL <= 0:
		return fmt.Errorf("ecp/app: Options.RegistrationTokenTTL must be positive, got %s", o.RegistrationTokenTTL)
	case o.ReportInterval < time.Second:
		// The wire carries whole seconds.
		return fmt.Errorf("ecp/app: Options.ReportInterval must be at least 1s, got %s", o.ReportInterval)
	case o.SessionTTL < time.Second:
		return fmt.Errorf("ecp/app: Options.SessionTTL must be at least 1s, got %s", o.SessionTTL)
	case o.AuditRetention < 0:
		return fmt.Errorf("ecp/app: Options.AuditRetention must not be negative, got %s", o.AuditRetention)
	case o.AuditMaxRecords < 0:
		return fmt.Errorf("ecp/app: Options.AuditMaxRecords must not be negative, got %d", o.AuditMaxRecords)
	case o.EtcdQuotaBackendBytes < 0:
		return fmt.Errorf("ecp/app: Options.EtcdQuotaBackendBytes must not be negative, got %d", o.EtcdQuotaBackendBytes)
	case o.ReadTimeout < 0:
		return fmt.Errorf("ecp/app: Options.ReadTimeout must not be negative, got %s", o.ReadTimeout)
	case o.EtcdProbeInterval <= 0:
		return fmt.Errorf("ecp/app: Options.EtcdProbeInterval must be positive, got %s", o.EtcdProbeInterval)
	case o.ShutdownTimeout <= 0:
		return fmt.Errorf("ecp/app: Options.ShutdownTimeout must be positive, got %s", o.ShutdownTimeout)
	case o.AdminUsername == "":
		return errors.New("ecp/app: Options.AdminUsername is required")
	}
	if o.Grafana.URL != "" {
		if err := o.Grafana.Validate(); err != nil {
			return fmt.Errorf("ecp/app: Options.Grafana: %w", err)
		}
	}
	return o.Licence.Validate()
}

// Config is the YAML configuration file. Every field is optional; unknown
// fields are an error, so a typo never silently falls back to a default.
//
//	licence:
//	  totalConnections: 10000
//	  maxPerCluster: 5000
//	registration:
//	  tokenTTL: 24h
type Config struct {
	Licence      *quota.Licence      `yaml:"licence"`
	Registration *RegistrationConfig `yaml:"registration"`
}

// RegistrationConfig is the registration section of Config.
type RegistrationConfig struct {
	TokenTTL time.Duration `yaml:"tokenTTL"`
}

// LoadConfig reads and checks a configuration file.
func LoadConfig(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("open config file: %w", err)
	}
	defer f.Close()
	var c Config
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config file %s: %w", path, err)
	}
	if c.Licence != nil {
		if err := c.Licence.Validate(); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	if c.Registration != nil && c.Registration.TokenTTL <= 0 {
		return Config{}, fmt.Errorf("config file %s: registration.tokenTTL must be a positive duration such as 24h", path)
	}
	return c, nil
}
