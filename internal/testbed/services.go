package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Tool is a third-party binary the product works with, and the command
// that installs it.
type Tool struct {
	Name    string
	Install string
}

// The real components ecp drives, as the repository's scripts install them.
var (
	Prometheus   = Tool{Name: "prometheus", Install: "bash scripts/install-prometheus.sh"}
	Alertmanager = Tool{Name: "prometheus-alertmanager", Install: "bash scripts/install-prometheus.sh"}
	Mailpit      = Tool{Name: "mailpit", Install: "bash scripts/install-mailpit.sh"}
	VictoriaLogs = Tool{Name: "victoria-logs", Install: "bash scripts/install-victorialogs.sh"}
)

// ErrToolMissing is returned by Find for a tool that is not installed.
var ErrToolMissing = errors.New("not installed")

// Find returns the path of t: on PATH, or in the repository's .tools
// directory under moduleDir where the install scripts put Go-built tools.
func (t Tool) Find(moduleDir string) (string, error) {
	if p, err := exec.LookPath(t.Name); err == nil {
		return p, nil
	}
	p, err := filepath.Abs(filepath.Join(moduleDir, ".tools", t.Name))
	if err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is %w: run `%s`", t.Name, ErrToolMissing, t.Install)
}

// StartMailpit runs Mailpit with its SMTP server on smtpAddr and its web UI
// and API on httpAddr, keeping its database in dir.
func StartMailpit(ctx context.Context, bin, dir, smtpAddr, httpAddr string) (*Proc, error) {
	p, err := Start("mailpit", bin, []string{"--smtp", smtpAddr, "--listen", httpAddr,
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--disable-version-check",
		"--database", filepath.Join(dir, "mailpit.db")}, nil, filepath.Join(dir, "mailpit.log"))
	if err != nil {
		return nil, err
	}
	return p, waitOrStop(ctx, p, "http://"+httpAddr+"/readyz")
}

// StartAlertmanager runs Alertmanager on addr with gossip off. Until ecp
// writes configFile, it starts from a route to nowhere.
func StartAlertmanager(ctx context.Context, bin, dir, addr, configFile string) (*Proc, error) {
	if _, err := os.Stat(configFile); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(configFile, []byte("route:\n  receiver: ecp-none\nreceivers:\n  - name: ecp-none\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write initial alertmanager config: %w", err)
		}
	}
	p, err := Start("alertmanager", bin, []string{"--config.file=" + configFile, "--storage.path=" + filepath.Join(dir, "alertmanager-data"),
		"--web.listen-address=" + addr, "--cluster.listen-address="}, nil, filepath.Join(dir, "alertmanager.log"))
	if err != nil {
		return nil, err
	}
	return p, waitOrStop(ctx, p, "http://"+addr+"/-/ready")
}

// PrometheusConfig is what StartPrometheus wires together.
type PrometheusConfig struct {
	// Interval is the scrape and rule evaluation interval; ecp renders its
	// rules for the agents' report interval, so they should match.
	Interval time.Duration
	// RulesDir is where ecp writes one rule file per project.
	RulesDir string
	// AlertmanagerAddr receives the alerts.
	AlertmanagerAddr string
	// ECPAddr is scraped for ecp's own metrics (ecp_cluster_state).
	ECPAddr string
}

// StartPrometheus runs Prometheus on addr with the remote-write receiver
// (agents' samples arrive through ecp) and the lifecycle API (ecp reloads it).
func StartPrometheus(ctx context.Context, bin, dir, addr string, cfg PrometheusConfig) (*Proc, error) {
	configFile := filepath.Join(dir, "prometheus.yml")
	config := fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
rule_files: [%[2]q]
alerting:
  alertmanagers:
    - static_configs: [{targets: [%[3]q]}]
scrape_configs:
  - job_name: ecp
    honor_labels: true
    static_configs: [{targets: [%[4]q]}]
`, model(cfg.Interval), filepath.Join(cfg.RulesDir, "*.rules.yml"), cfg.AlertmanagerAddr, cfg.ECPAddr)
	if err := os.MkdirAll(cfg.RulesDir, 0o755); err != nil {
		return nil, fmt.Errorf("create rules dir: %w", err)
	}
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil { //nolint:gosec // Prometheus's config holds no secret.
		return nil, fmt.Errorf("write prometheus config: %w", err)
	}
	p, err := Start("prometheus", bin, []string{"--config.file=" + configFile, "--storage.tsdb.path=" + filepath.Join(dir, "prometheus-data"),
		"--web.listen-address=" + addr, "--web.enable-lifecycle", "--web.enable-remote-write-receiver",
		// Each reload ecp posts re-discovers Alertmanager; alerts that fire
		// in that gap are re-sent only after the resend delay (1m by
		// default), longer than a demo or a test wants to wait.
		"--rules.alert.resend-delay=" + model(cfg.Interval)}, nil, filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	return p, waitOrStop(ctx, p, "http://"+addr+"/-/ready")
}

// StartVictoriaLogs runs VictoriaLogs on addr with its data in dir.
func StartVictoriaLogs(ctx context.Context, bin, dir, addr string) (*Proc, error) {
	p, err := Start("victoria-logs", bin, []string{"-storageDataPath=" + filepath.Join(dir, "victoria-logs-data"),
		"-httpListenAddr=" + addr, "-loggerLevel=ERROR"}, nil, filepath.Join(dir, "victoria-logs.log"))
	if err != nil {
		return nil, err
	}
	return p, waitOrStop(ctx, p, "http://"+addr+"/health")
}

func waitOrStop(ctx context.Context, p *Proc, readyURL string) error {
	if err := p.WaitReady(ctx, readyURL, 30*time.Second); err != nil {
		_ = p.Stop()
		return err
	}
	return nil
}

// model renders d as a Prometheus duration ("1s", "15s", "1m").
func model(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}
