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
	"github.com/ecpio/ecp/ecp/grafana"
	"github.com/ecpio/ecp/ecp/quota"
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
	// WebConfigFile is an optional web configuration file in the format of
	// github.com/prometheus/exporter-toolkit: TLS for the whole listener,
	// basic auth for /metrics and POST /-/reload (package webconfig).
	WebConfigFile string
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
	// Fleet replaces the agent side (tests of the user API); nil runs
	// ecp/fleet with its agent API.
	Fleet clusters.Fleet
	// RemoteWriteURL is where agent samples are forwarded (a Prometheus
	// 2.42+ /api/v1/write or any remote-write 1.0 receiver); empty: agents
	// are told samples are not stored.
	RemoteWriteURL string
	// Alerts wires alert settings to Prometheus and Alertmanager
	// (--prometheus.*, --alertmanager.*, --smtp.*); without rules dir and
	// config file settings are only stored.
	Alerts alerts.Config
	// Grafana is where ecp provisions a folder per project with its
	// dashboards (--grafana.url, --grafana.token-file); off without both.
	Grafana grafana.Config
	// Extensions mount further API packages on the app, in order.
	Extensions []Extension
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
		DownloadsDir:         DefaultDownloadsDir,
		AdminUsername:        DefaultAdminUsername,
		SessionTTL:           DefaultSessionTTL,
		AuditRetention:       DefaultAuditRetention,
		ShutdownTimeout:      DefaultShutdownTimeout,
		EtcdProbeInterval:    DefaultEtcdProbeInterval,
		Alerts:               alerts.DefaultConfig(),
		Grafana:              grafana.DefaultConfig(),
	}
}

// validate rejects options that would fail later, with the option's name.
func (o Options) validate() error {
	switch {
	case o.ListenAddress == "":
		return errors.New("ecp/app: Options.ListenAddress is required")
	case o.DataDir == "" && len(o.EtcdEndpoints) == 0:
		return errors.New("ecp/app: Options.DataDir is required when no etcd endpoints are given")
	case o.RegistrationTokenTTL <= 0:
		return fmt.Errorf("ecp/app: Options.RegistrationTokenTTL must be positive, got %s", o.RegistrationTokenTTL)
	case o.ReportInterval < time.Second:
		// The wire carries whole seconds.
		return fmt.Errorf("ecp/app: Options.ReportInterval must be at least 1s, got %s", o.ReportInterval)
	case o.SessionTTL < time.Second:
		return fmt.Errorf("ecp/app: Options.SessionTTL must be at least 1s, got %s", o.SessionTTL)
	case o.AuditRetention < 0:
		return fmt.Errorf("ecp/app: Options.AuditRetention must not be negative, got %s", o.AuditRetention)
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
