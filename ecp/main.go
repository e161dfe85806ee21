// Command ecp is the control plane for fleets of EMQX v5 Enterprise
// clusters. `ecp serve` runs it; `ecp version` prints its build. This file
// only reads flags and the environment, builds the logger and the metrics
// registry, turns signals into cancellation and reloads, and runs ecp/app.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/ecp/grafana"
	"github.com/ecpio/ecp/internal/cmdline"
	"github.com/ecpio/ecp/internal/ops"
	"github.com/ecpio/ecp/internal/secret"
	"github.com/ecpio/ecp/internal/version"
	"github.com/ecpio/ecp/internal/webconfig"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// defaultGCPercent is the Go GC target `ecp serve` runs with unless GOGC
// is set. Go's 100 lets the heap grow to twice the live heap before a
// collection; for ecp that headroom was the largest part of its memory
// that held nothing (at 3,000 agents, 33 MB live in a heap of up to 70,
// besides 37 MiB of binary and the embedded etcd's file). At 50 the
// collector runs about twice as often: at 3,000 agents 20 MiB less
// resident (148 -> 128 MiB) for about 0.7 % more of a core.
const defaultGCPercent = 50

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	opts := app.DefaultOptions()
	var (
		logLevel  string
		logFormat string
		endpoints string
		// smtpPasswordFile keeps the SMTP password out of process lists.
		smtpPasswordFile string
		// grafanaTokenFile keeps the Grafana token out of process lists.
		grafanaTokenFile string
	)
	ka := cmdline.New("ecp", "Control plane for fleets of EMQX v5 Enterprise clusters.", stdout, stderr)

	serve := ka.Command("serve", "Run the control plane. The first system admin comes from ECP_ADMIN_USERNAME (default admin) and ECP_ADMIN_PASSWORD; without a password one is generated and printed once, when the user does not exist yet.")
	serve.Flag("web.listen-address", "Address the HTTP server (API, console, agent API, /metrics) listens on.").Default(app.DefaultListenAddress).StringVar(&opts.ListenAddress)
	serve.Flag("web.external-url", "URL under which agents and browsers reach ecp; registration commands use it. Default: http://<listen address>.").StringVar(&opts.ExternalURL)
	serve.Flag("web.config.file", webconfig.FlagHelp).StringVar(&opts.WebConfigFile)
	serve.Flag("web.enable-pprof", ops.PprofFlagHelp).BoolVar(&opts.EnablePprof)
	serve.Flag("data.dir", "Directory of the embedded etcd's data (unused with --etcd.endpoints).").Default(app.DefaultDataDir).StringVar(&opts.DataDir)
	serve.Flag("etcd.endpoints", "Comma-separated client URLs of an external etcd cluster; without them ecp embeds a single etcd member in --data.dir.").StringVar(&endpoints)
	serve.Flag("etcd.quota-backend-bytes", "Backend quota of the embedded etcd member in bytes (unused with --etcd.endpoints); past it etcd raises NOSPACE and refuses writes, shown in ecp_etcd_alarm and /-/ready.").Default(fmt.Sprint(app.DefaultEtcdQuotaBackendBytes)).Int64Var(&opts.EtcdQuotaBackendBytes)
	serve.Flag("etcd.tls.ca-file", "PEM CA bundle that verifies the external etcd's server certificates (https:// endpoints); the system's roots when empty.").StringVar(&opts.EtcdTLS.CAFile)
	serve.Flag("etcd.tls.cert-file", "PEM client certificate ecp presents to the external etcd (with --etcd.tls.key-file).").StringVar(&opts.EtcdTLS.CertFile)
	serve.Flag("etcd.tls.key-file", "PEM private key of --etcd.tls.cert-file.").StringVar(&opts.EtcdTLS.KeyFile)
	serve.Flag("secrets.key-file", "File holding the key (32 bytes, base64) that seals the secrets ecp stores in etcd; created (mode 0600) on first start when missing. Default: <--data.dir>/secrets.key. Replicas sharing an etcd need the same file.").StringVar(&opts.SecretsKeyFile)
	serve.Flag("config.file", "YAML configuration file (licence.totalConnections, licence.maxPerCluster, registration.tokenTTL); what it sets overrides the flags, and POST /-/reload or SIGHUP re-reads it.").StringVar(&opts.ConfigFile)
	serve.Flag("licence.total-connections", "Total connection quota ecp may split between clusters.").Default(fmt.Sprint(opts.Licence.TotalConnections)).IntVar(&opts.Licence.TotalConnections)
	serve.Flag("licence.max-per-cluster", "Most connections one cluster may be given.").Default(fmt.Sprint(opts.Licence.MaxPerCluster)).IntVar(&opts.Licence.MaxPerCluster)
	serve.Flag("registration.token-ttl", "How long a registration token stays valid.").Default(app.DefaultRegistrationTokenTTL.String()).DurationVar(&opts.RegistrationTokenTTL)
	serve.Flag("agent.report-interval", "How often agents report; a cluster whose agent is silent for 3 intervals turns abnormal. Agents are told the value when they register and with every report.").Default(app.DefaultReportInterval.String()).DurationVar(&opts.ReportInterval)
	serve.Flag("downloads.dir", "Directory holding agent-exporter-<os>-<arch> binaries (built by make dist), served at /downloads/agent-exporter/<os>/<arch>.").Default(app.DefaultDownloadsDir).StringVar(&opts.DownloadsDir)
	serve.Flag("web.session-ttl", "How long a login session lasts.").Default(app.DefaultSessionTTL.String()).DurationVar(&opts.SessionTTL)
	serve.Flag("web.read-timeout", "Longest time to read a request, headers and body; a slower body is cut with 408. Long-polls are not affected; 0 disables it.").Default(app.DefaultReadTimeout.String()).DurationVar(&opts.ReadTimeout)
	serve.Flag("web.max-connections", "Most connections ecp holds open; beyond it a connection is answered 503 with Retry-After and closed. 0 derives it from the open-file limit (ulimit -n), leaving a fifth of it (at least 256) for etcd, files and outgoing connections.").Default("0").IntVar(&opts.MaxConnections)
	serve.Flag("remote-write.url", "Remote-write 1.0 endpoint agent samples are forwarded to, stamped with project and cluster (Prometheus 2.42+ started with --web.enable-remote-write-receiver: http://HOST:9090/api/v1/write). Without it agents are told nothing is stored.").StringVar(&opts.RemoteWriteURL)
	serve.Flag("remote-write.batch-wait", "How long each remote-write sender waits for more agents' pushes to post with the one it holds, so the backend gets one call for many pushes; 0 posts what is queued at once.").Default(app.DefaultRemoteWriteBatchWait.String()).DurationVar(&opts.RemoteWriteBatchWait)
	serve.Flag("audit.retention", "How long audit records of state-changing API calls are kept; 0 keeps them forever.").Default(app.DefaultAuditRetention.String()).DurationVar(&opts.AuditRetention)
	serve.Flag("audit.max-records", "Most audit records kept (each at most 2 KiB), the oldest removed first; 0 keeps any number.").Default(fmt.Sprint(app.DefaultAuditMaxRecords)).IntVar(&opts.AuditMaxRecords)
	serve.Flag("prometheus.url", "Prometheus to reload (POST /-/reload, needs --web.enable-lifecycle) after ecp rewrites its rule files.").StringVar(&opts.Alerts.PrometheusURL)
	serve.Flag("prometheus.rules-dir", "Directory Prometheus loads rules from (rule_files: [DIR/*.rules.yml]); ecp writes one ecp_<project>.rules.yml per project with alerting on. Without it and --alertmanager.config-file alert settings are stored but nothing is written.").StringVar(&opts.Alerts.RulesDir)
	serve.Flag("alertmanager.url", "Alertmanager to reload after ecp rewrites its configuration, and to send test notifications through.").StringVar(&opts.Alerts.AlertmanagerURL)
	serve.Flag("alertmanager.config-file", "Alertmanager's configuration file, written by ecp (mode 0600): a route per project plus ecp's own webhook.").StringVar(&opts.Alerts.AlertmanagerConfigFile)
	serve.Flag("alertmanager.webhook-url", "URL Alertmanager reaches ecp's webhook at. Default: <--web.external-url>/api/v1/alertmanager/webhook.").StringVar(&opts.Alerts.WebhookURL)
	serve.Flag("alerts.history-retention", "How long resolved alerts stay in the history list.").Default(alerts.DefaultHistoryRetention.String()).DurationVar(&opts.Alerts.HistoryRetention)
	serve.Flag("smtp.smarthost", "host:port of the SMTP server Alertmanager sends alert e-mail through; without it projects cannot have e-mail recipients.").StringVar(&opts.Alerts.SMTP.Smarthost)
	serve.Flag("smtp.from", "Sender address of alert e-mail.").StringVar(&opts.Alerts.SMTP.From)
	serve.Flag("smtp.require-tls", "Insist on STARTTLS when sending alert e-mail (--no-smtp.require-tls for a plain relay).").Default("true").BoolVar(&opts.Alerts.SMTP.RequireTLS)
	serve.Flag("smtp.auth-username", "Username Alertmanager logs in to the SMTP server with, when it asks.").StringVar(&opts.Alerts.SMTP.Username)
	serve.Flag("smtp.auth-password-file", "File holding the SMTP password (read at start).").StringVar(&smtpPasswordFile)
	serve.Flag("grafana.url", "Grafana ecp provisions a folder per project into, with the fleet overview, cluster detail and data integration dashboards (needs --grafana.token-file).").StringVar(&opts.Grafana.URL)
	serve.Flag("grafana.token-file", "File holding a Grafana service-account token with the Editor role (read at start).").StringVar(&grafanaTokenFile)
	serve.Flag("grafana.resync-interval", "How often ecp re-provisions Grafana without a project change, repairing edits made there.").Default(grafana.DefaultResyncInterval.String()).DurationVar(&opts.Grafana.ResyncInterval)
	serve.Flag("log.level", "Only log messages with this severity or above: debug, info, warn or error.").Default("info").StringVar(&logLevel)
	serve.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").StringVar(&logFormat)

	versionCmd := ka.Command("version", "Print the version of ecp.")
	backups := addBackupCommands(ka.Application)

	if len(args) == 0 {
		ka.Usage(nil)
		return exitUsage
	}
	cmd, helped, err := ka.Parse(args)
	if helped {
		return exitOK
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ecp: %v (try --help)\n", err)
		return exitUsage
	}
	switch cmd {
	case versionCmd.FullCommand():
		_, _ = fmt.Fprintf(stdout, "ecp %s (revision %s, %s)\n", version.Version, version.Revision, runtime.Version())
		return exitOK
	case backups.save.FullCommand(), backups.restore.FullCommand():
		return backups.run(cmd, stdout, stderr)
	case serve.FullCommand():
	default:
		// --help was shown.
		return exitOK
	}

	if err := checkFlags(logLevel, logFormat, opts); err != nil {
		_, _ = fmt.Fprintf(stderr, "ecp: %v (try ecp serve --help)\n", err)
		return exitUsage
	}
	if smtpPasswordFile != "" {
		b, err := os.ReadFile(smtpPasswordFile)
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "ecp: --smtp.auth-password-file: %v\n", err)
			return exitUsage
		}
		opts.Alerts.SMTP.Password = secret.String(strings.TrimRight(string(b), "\r\n"))
	}
	if grafanaTokenFile != "" {
		b, err := os.ReadFile(grafanaTokenFile)
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "ecp: --grafana.token-file: %v\n", err)
			return exitUsage
		}
		opts.Grafana.Token = secret.String(strings.TrimSpace(string(b)))
	}
	logger := newLogger(stderr, logLevel, logFormat)
	if endpoints != "" {
		for _, e := range strings.Split(endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				opts.EtcdEndpoints = append(opts.EtcdEndpoints, e)
			}
		}
	}
	if !opts.EtcdTLS.IsZero() && len(opts.EtcdEndpoints) == 0 {
		_, _ = fmt.Fprintln(stderr, "ecp: --etcd.tls.* are for --etcd.endpoints; the embedded etcd makes its own certificates in --data.dir (try ecp serve --help)")
		return exitUsage
	}
	if u := os.Getenv("ECP_ADMIN_USERNAME"); u != "" {
		opts.AdminUsername = u
	}
	opts.AdminPassword = secret.String(os.Getenv("ECP_ADMIN_PASSWORD"))
	opts.Out = stdout

	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	opts.Reload = hup

	a, err := app.New(opts, logger, reg)
	if err != nil {
		logger.Error("start ecp", "err", err)
		return exitError
	}
	if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		logger.Error("ecp stopped", "err", err)
		return exitError
	}
	logger.Info("ecp stopped")
	return exitOK
}

// checkFlags catches bad flag values before anything starts, naming the
// flag and what it accepts.
func checkFlags(level, format string, opts app.Options) error {
	switch {
	case !slices.Contains([]string{"debug", "info", "warn", "error"}, level):
		return fmt.Errorf("--log.level must be one of debug, info, warn, error; got %q", level)
	case format != "logfmt" && format != "json":
		return fmt.Errorf("--log.format must be logfmt or json; got %q", format)
	case opts.Licence.TotalConnections < 1:
		return fmt.Errorf("--licence.total-connections must be at least 1; got %d", opts.Licence.TotalConnections)
	case opts.Licence.MaxPerCluster < 1 || opts.Licence.MaxPerCluster > opts.Licence.TotalConnections:
		return fmt.Errorf("--licence.max-per-cluster must be from 1 to --licence.total-connections (%d); got %d", opts.Licence.TotalConnections, opts.Licence.MaxPerCluster)
	case opts.ExternalURL != "" && !validExternalURL(opts.ExternalURL):
		return fmt.Errorf("--web.external-url must be an absolute http:// or https:// URL such as https://ecp.example.com; got %q", opts.ExternalURL)
	case opts.AuditRetention < 0:
		return fmt.Errorf("--audit.retention must not be negative; got %s", opts.AuditRetention)
	case opts.AuditMaxRecords < 0:
		return fmt.Errorf("--audit.max-records must not be negative; got %d", opts.AuditMaxRecords)
	case opts.EtcdQuotaBackendBytes < 0:
		return fmt.Errorf("--etcd.quota-backend-bytes must not be negative; got %d", opts.EtcdQuotaBackendBytes)
	case opts.ReadTimeout < 0:
		return fmt.Errorf("--web.read-timeout must not be negative; got %s", opts.ReadTimeout)
	case opts.MaxConnections < 0:
		return fmt.Errorf("--web.max-connections must not be negative (0 derives it from the open-file limit); got %d", opts.MaxConnections)
	case opts.ReportInterval < time.Second:
		return fmt.Errorf("--agent.report-interval must be at least 1s (agents are told whole seconds); got %s", opts.ReportInterval)
	case opts.RegistrationTokenTTL <= 0:
		return fmt.Errorf("--registration.token-ttl must be positive; got %s", opts.RegistrationTokenTTL)
	case (opts.EtcdTLS.CertFile == "") != (opts.EtcdTLS.KeyFile == ""):
		return errors.New("--etcd.tls.cert-file and --etcd.tls.key-file go together: give both or neither")
	}
	if err := opts.Alerts.Validate(); err != nil {
		return err
	}
	if err := opts.Grafana.Validate(); err != nil {
		return err
	}
	return nil
}

func validExternalURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // The flag is an enum of valid levels.
	hopts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}
