package app

import (
	"context"

	"github.com/ecpio/ecp/ecp/logs"
)

// buildLogs mounts the log API (ecp/logs): agent ingestion, the system
// log-receiver setting and per-project queries, and adds its watch of the
// setting to the run group.
func (a *App) buildLogs(ctx context.Context, env Env) error {
	lo := logs.DefaultOptions()
	lo.Seal = a.sealKey
	svc, err := logs.New(ctx, lo, a.cli, a.authz, a.fleet.AuthenticateAgent, a.logger.With("component", "logs"), a.reg)
	if err != nil {
		return err
	}
	svc.Register(env.API, env.Root, env.Adapter)
	a.logs = svc
	a.logReceiverURL.Store(svc.ReceiverURL)
	a.extensionRuns = append(a.extensionRuns, svc.Run)
	return nil
}
