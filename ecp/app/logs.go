package app

import (
	"context"
	"net/http"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/logs"
)

// agentAuthenticator is what the log API needs of the agent side
// (fleet.Fleet.AuthenticateAgent).
type agentAuthenticator interface {
	AuthenticateAgent(r *http.Request) (clusterID, project string, err error)
}

// buildLogs mounts the log API (ecp/logs): agent ingestion, the system
// log-receiver setting and per-project queries, and adds its watch of the
// setting to the run group.
func (a *App) buildLogs(ctx context.Context, env Env) error {
	authn := func(*http.Request) (string, string, error) {
		return "", "", &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
			Message: "this ecp does not serve the agent API"}
	}
	if f, ok := a.fleet.(agentAuthenticator); ok {
		authn = f.AuthenticateAgent
	}
	lo := logs.DefaultOptions()
	lo.Seal = a.sealKey
	svc, err := logs.New(ctx, lo, a.cli, a.authz, authn, a.logger.With("component", "logs"), a.reg)
	if err != nil {
		return err
	}
	svc.Register(env.API, env.Root, env.Adapter)
	a.logs = svc
	a.logReceiverURL.Store(svc.ReceiverURL)
	a.extensionRuns = append(a.extensionRuns, svc.Run)
	return nil
}
