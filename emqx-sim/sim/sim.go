// Package sim is a simulator of the EMQX v5 Enterprise management API: a
// living cluster of nodes, rules, connectors, actions and sources served with
// the field names, shapes, status codes and error bodies EMQX uses
// (shared/emqx-api.md), plus a fault API under /sim/ so tests of ecp and the
// agent can break connectors, rules, nodes, the licence, the API and login on
// demand. Everything random is drawn from one seed and time is injected, so a
// seed and a clock give the same answers on every run.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ecpio/ecp/internal/secret"
)

// Defaults shared by DefaultOptions and the emqx-sim flags.
const (
	DefaultListen            = "127.0.0.1:18083"
	DefaultNodes             = 3
	DefaultRules             = 10
	DefaultConnectors        = 5
	DefaultSeed              = 1
	DefaultVersion           = "5.8.9"
	DefaultClusterName       = "emqxcl"
	DefaultNodeHostPrefix    = "10.0.0."
	DefaultCustomerType      = 3 // business critical: dynamic_max_connections applies
	DefaultLicenseType       = 1 // official
	DefaultLicenseMaxSession = 100000
	DefaultUsername          = "admin"
	DefaultPassword          = "public"
	DefaultTokenTTL          = 60 * time.Minute
	DefaultClientsPerNode    = 100
	DefaultTickInterval      = time.Second
	DefaultLogFormat         = "text"
	DefaultLogLevel          = "warning"
	DefaultLogRotationSize   = 50 * 1024 * 1024
	DefaultLogRotationCount  = 10
	DefaultLogRate           = 1
	// DefaultDynamicMaxConnections is EMQX's default of the hidden
	// license.dynamic_max_connections setting (emqx-api.md §6.3).
	DefaultDynamicMaxConnections = 25
)

// Role names as EMQX spells them.
const (
	RoleAdministrator = "administrator"
	RoleViewer        = "viewer"
	RolePublisher     = "publisher"
)

// User is a dashboard user that can log in with POST /api/v5/login.
type User struct {
	Username string
	Password secret.String
	Role     string // RoleAdministrator or RoleViewer
}

// APIKey is a pre-provisioned API key, as EMQX loads from
// api_key.bootstrap_file (named from_bootstrap_file_<key>).
type APIKey struct {
	Key    string
	Secret secret.String
	Role   string // RoleAdministrator, RoleViewer or RolePublisher
}

// Options configures a simulated cluster. Zero fields take the defaults of
// DefaultOptions when passed to New (so a cluster always has rules and
// connectors; LogRate 0 means no background log lines).
type Options struct {
	// Nodes, Rules and Connectors size the cluster. Every connector carries
	// one action; every mqtt connector also one source.
	Nodes      int
	Rules      int
	Connectors int
	// Seed makes every random choice reproducible.
	Seed int64
	// Version is the EMQX release served, e.g. 5.7.2, 5.8.9, 5.9.3.
	Version     string
	ClusterName string
	// NodeHostPrefix makes the node names: "emqx@" + NodeHostPrefix + n
	// (n from 1). With ClusterName it is the cluster's identity to ecp,
	// so simulated clusters under one ecp need their own.
	NodeHostPrefix string

	// The licence loaded at start: customer type (3 = business critical),
	// licence type (0 trial, 1 official, 2 community) and the key's max
	// sessions (before dynamic_max_connections narrows it).
	LicenseCustomerType int
	LicenseType         int
	LicenseMaxSessions  int

	// PrometheusTextOnly answers /prometheus/stats and
	// /prometheus/data_integration in the Prometheus text format whatever
	// the Accept header asks, as a node without their JSON variant does.
	PrometheusTextOnly bool

	DashboardUsername string
	DashboardPassword secret.String
	// Users are extra dashboard users (e.g. a viewer).
	Users []User
	// APIKeys are bootstrap API keys usable with HTTP Basic auth.
	APIKeys []APIKey
	// TokenTTL is dashboard.token_expired_time (sliding).
	TokenTTL time.Duration

	// ClientsPerNode is the client demand per node; the licence caps it.
	ClientsPerNode int
	// TickInterval is how often Run advances the model.
	TickInterval time.Duration

	// LogDir, when set, receives EMQX log files (emqx.log.1..N).
	LogDir           string
	LogFormat        string // "text" or "json"
	LogLevel         string // lowest level written
	LogRotationSize  int64  // bytes per wrap file
	LogRotationCount int    // number of wrap files
	// LogRate is the number of background log lines written per tick.
	LogRate int

	// Now is the clock; tests pass a frozen or stepped one.
	Now func() time.Time
	// Logger receives the simulator's own diagnostics (not EMQX log lines).
	Logger *slog.Logger
}

// DefaultOptions returns the options of a fresh three-node 5.8.9 cluster
// carrying a business-critical licence.
func DefaultOptions() Options {
	return Options{
		Nodes:               DefaultNodes,
		Rules:               DefaultRules,
		Connectors:          DefaultConnectors,
		Seed:                DefaultSeed,
		Version:             DefaultVersion,
		ClusterName:         DefaultClusterName,
		NodeHostPrefix:      DefaultNodeHostPrefix,
		LicenseCustomerType: DefaultCustomerType,
		LicenseType:         DefaultLicenseType,
		LicenseMaxSessions:  DefaultLicenseMaxSession,
		DashboardUsername:   DefaultUsername,
		DashboardPassword:   DefaultPassword,
		TokenTTL:            DefaultTokenTTL,
		ClientsPerNode:      DefaultClientsPerNode,
		TickInterval:        DefaultTickInterval,
		LogFormat:           DefaultLogFormat,
		LogLevel:            DefaultLogLevel,
		LogRotationSize:     DefaultLogRotationSize,
		LogRotationCount:    DefaultLogRotationCount,
		LogRate:             DefaultLogRate,
		Now:                 time.Now,
		Logger:              slog.New(slog.DiscardHandler),
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Nodes == 0 {
		o.Nodes = d.Nodes
	}
	if o.Rules == 0 {
		o.Rules = d.Rules
	}
	if o.Connectors == 0 {
		o.Connectors = d.Connectors
	}
	if o.Seed == 0 {
		o.Seed = d.Seed
	}
	if o.Version == "" {
		o.Version = d.Version
	}
	if o.ClusterName == "" {
		o.ClusterName = d.ClusterName
	}
	if o.NodeHostPrefix == "" {
		o.NodeHostPrefix = d.NodeHostPrefix
	}
	if o.LicenseCustomerType == 0 && o.LicenseType == 0 && o.LicenseMaxSessions == 0 {
		o.LicenseCustomerType, o.LicenseType = d.LicenseCustomerType, d.LicenseType
	}
	if o.LicenseMaxSessions == 0 {
		o.LicenseMaxSessions = d.LicenseMaxSessions
	}
	if o.DashboardUsername == "" {
		o.DashboardUsername = d.DashboardUsername
	}
	if o.DashboardPassword.IsZero() {
		o.DashboardPassword = d.DashboardPassword
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = d.TokenTTL
	}
	if o.ClientsPerNode == 0 {
		o.ClientsPerNode = d.ClientsPerNode
	}
	if o.TickInterval == 0 {
		o.TickInterval = d.TickInterval
	}
	if o.LogFormat == "" {
		o.LogFormat = d.LogFormat
	}
	if o.LogLevel == "" {
		o.LogLevel = d.LogLevel
	}
	if o.LogRotationSize == 0 {
		o.LogRotationSize = d.LogRotationSize
	}
	if o.LogRotationCount == 0 {
		o.LogRotationCount = d.LogRotationCount
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o
}

func (o Options) validate() error {
	switch {
	case o.Nodes < 1 || o.Nodes > 128:
		return fmt.Errorf("options: Nodes must be 1..128, got %d", o.Nodes)
	case len(o.NodeHostPrefix) > 200 || strings.ContainsAny(o.NodeHostPrefix, "@ \t\n"):
		return fmt.Errorf("options: NodeHostPrefix must be at most 200 bytes without @ or spaces, got %q", o.NodeHostPrefix)
	case o.Rules < 0 || o.Rules > 100000:
		return fmt.Errorf("options: Rules must be 0..100000, got %d", o.Rules)
	case o.Connectors < 0 || o.Connectors > 100000:
		return fmt.Errorf("options: Connectors must be 0..100000, got %d", o.Connectors)
	case o.LogFormat != "text" && o.LogFormat != "json":
		return fmt.Errorf("options: LogFormat must be text or json, got %q", o.LogFormat)
	case levelRank(o.LogLevel) < 0:
		return fmt.Errorf("options: LogLevel must be one of debug, info, notice, warning, error, critical, alert, emergency; got %q", o.LogLevel)
	case o.LogRotationSize < 1024:
		return fmt.Errorf("options: LogRotationSize must be at least 1024 bytes, got %d", o.LogRotationSize)
	case o.LogRotationCount < 1 || o.LogRotationCount > 128:
		return fmt.Errorf("options: LogRotationCount must be 1..128, got %d", o.LogRotationCount)
	case o.LogRate < 0:
		return fmt.Errorf("options: LogRate must be >= 0, got %d", o.LogRate)
	case o.TickInterval < 0 || o.TokenTTL < 0:
		return errors.New("options: TickInterval and TokenTTL must be positive")
	case o.ClientsPerNode < 0:
		return fmt.Errorf("options: ClientsPerNode must be >= 0, got %d", o.ClientsPerNode)
	case o.LicenseMaxSessions < 0:
		return fmt.Errorf("options: LicenseMaxSessions must be >= 0, got %d", o.LicenseMaxSessions)
	}
	for _, u := range o.Users {
		if u.Role != RoleAdministrator && u.Role != RoleViewer {
			return fmt.Errorf("options: user %q role must be administrator or viewer, got %q", u.Username, u.Role)
		}
	}
	for _, k := range o.APIKeys {
		if k.Role != RoleAdministrator && k.Role != RoleViewer && k.Role != RolePublisher {
			return fmt.Errorf("options: api key %q role must be administrator, viewer or publisher, got %q", k.Key, k.Role)
		}
	}
	return nil
}

// Sim is one simulated EMQX cluster. All its methods are safe for
// concurrent use.
type Sim struct {
	opts   Options
	rel    release
	logger *slog.Logger

	mu      sync.Mutex
	rng     *rand.Rand // model evolution (ticks, faults)
	authRng *rand.Rand // token and API key material
	apiRng  *rand.Rand // API fault draws
	started time.Time
	last    time.Time // time of the last Step

	nodes      []*node
	rules      []*rule
	ruleByID   map[string]*rule
	connectors []*connector
	connByID   map[string]*connector
	actions    []*action
	actByID    map[string]*action
	sources    []*action
	srcByID    map[string]*action

	lic      license
	initLic  license
	setting  licenseSetting
	alarms   []*alarm
	history  []*alarm
	rejectAt time.Time // last licence-limit log line (throttle)
	// authDown holds the nodes on which an authenticator or authorization
	// source is not connected, by authBackend.
	authDown map[authBackend]map[string]bool

	users    map[string]*dashUser
	tokens   map[string]*token
	apiKeys  map[string]*apiKeyRec // by api_key
	keyNames []string              // creation order of API key names

	fault apiFault
	// apiInFlight counts requests in flight per /api/v5 path; apiPathMax
	// is its highest value since the last SetAPIFault.
	apiInFlight map[string]int
	apiPathMax  int
	loginFault  string // "" or the error code login answers with

	entries []DashboardEntry

	logs *logWriter

	handler http.Handler

	stopOnce sync.Once
	stopCh   chan struct{}
	doneCh   chan struct{}
	running  bool
}

// New builds a cluster from opts. It writes nothing to disk until logs are
// written (by Run, a fault or WriteLogs).
func New(opts Options) (*Sim, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	rel, err := parseRelease(opts.Version)
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	seed := uint64(opts.Seed)
	s := &Sim{
		opts:        opts,
		rel:         rel,
		logger:      opts.Logger,
		rng:         rand.New(rand.NewPCG(seed, 1)),
		authRng:     rand.New(rand.NewPCG(seed, 2)),
		apiRng:      rand.New(rand.NewPCG(seed, 3)),
		apiInFlight: map[string]int{},
		authDown:    map[authBackend]map[string]bool{},
		stopCh:      make(chan struct{}),
		doneCh:      make(chan struct{}),
	}
	now := opts.Now()
	s.started = now
	s.last = now
	s.build(rand.New(rand.NewPCG(seed, 4)), now)
	s.initLicense(now)
	if err := s.initAuth(now); err != nil {
		return nil, err
	}
	if opts.LogDir != "" {
		lw, err := newLogWriter(opts.LogDir, opts.LogFormat, opts.LogLevel, opts.LogRotationSize, opts.LogRotationCount,
			rand.New(rand.NewPCG(seed, 5)))
		if err != nil {
			return nil, err
		}
		s.logs = lw
	}
	s.handler = s.routes()
	return s, nil
}

// Version returns the EMQX release the simulator serves.
func (s *Sim) Version() string { return s.rel.String() }

// Run advances the cluster every TickInterval (connections, counters,
// alarms, background log lines) until ctx ends or Stop is called.
func (s *Sim) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("run: already running")
	}
	s.running = true
	s.mu.Unlock()
	defer close(s.doneCh)
	t := time.NewTicker(s.opts.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopCh:
			return nil
		case <-t.C:
			s.Step()
		}
	}
}

// Stop ends Run and closes the log files. It is idempotent and safe to call
// whether or not Run was started.
func (s *Sim) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		close(s.stopCh)
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if running {
			select {
			case <-s.doneCh:
			default:
				select {
				case <-s.doneCh:
				case <-ctx.Done():
					err = fmt.Errorf("stop: %w", ctx.Err())
					return
				}
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.logs != nil {
			err = s.logs.close()
		}
	})
	return err
}
