package app

import (
	"github.com/ecpio/ecp/ecp/grafana"
)

// buildGrafana adds the Grafana provisioner's leader loop to the run group
// when a Grafana URL and token are set. A URL without a token is only
// warned about: Grafana's own file provisioning (docker-compose) can still
// load the shared dashboards.
func (a *App) buildGrafana() error {
	cfg := a.opts.Grafana
	if cfg.URL == "" {
		return nil
	}
	if cfg.Token.IsZero() {
		a.logger.Warn("--grafana.url is set without --grafana.token-file; ecp does not provision project folders and dashboards", "url", cfg.URL)
		return nil
	}
	p, err := grafana.New(cfg, a.cli, a.logger.With("component", "grafana"), a.reg)
	if err != nil {
		return err
	}
	a.extensionRuns = append(a.extensionRuns, p.Run)
	return nil
}
