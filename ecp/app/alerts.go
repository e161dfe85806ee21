package app

import (
	"context"

	"github.com/ecpio/ecp/ecp/alerts"
)

// buildAlerts mounts alert settings, the alert lists and the Alertmanager
// webhook (ecp/alerts), and adds its leader loop, which applies the
// settings to Prometheus and Alertmanager, to the run group. Rules are
// evaluated at the agents' report interval, so each evaluation sees a new
// sample.
func (a *App) buildAlerts(ctx context.Context, env Env) error {
	o := alerts.Options{
		Config:      a.opts.Alerts,
		ExternalURL: a.opts.ExternalURL,
		Interval:    a.opts.ReportInterval,
		Seal:        a.sealKey,
		Clusters:    a.records,
	}
	a.policy = a.buildNotificationPolicy(env)
	o.Destinations = a.policy
	svc, err := alerts.New(ctx, o, a.cli, a.authz, a.logger.With("component", "alerts"), a.reg)
	if err != nil {
		return err
	}
	svc.Register(env.API, env.Root, env.Adapter)
	a.alerts = svc
	a.extensionRuns = append(a.extensionRuns, svc.Run)
	return nil
}
