package app

import (
	"net/http"

	"github.com/ecpio/ecp/ecp/clusterspec"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/monitoring"
	"github.com/ecpio/ecp/ecp/remotewrite"
)

// agentAuthn adapts a function to remotewrite.Authenticator.
type agentAuthn func(*http.Request) (string, string, error)

func (f agentAuthn) AuthenticateAgent(r *http.Request) (string, string, error) { return f(r) }

// buildMetrics mounts the metrics path: the remote-write gateway agents
// push to (ecp/remotewrite, forwarding to Options.RemoteWriteURL), whose
// senders join the run group, and the project monitoring overview
// (ecp/monitoring), fed with the reports fleet accepts and shared with the
// other replicas through etcd.
func (a *App) buildMetrics(env Env) error {
	authn := agentAuthn(func(*http.Request) (string, string, error) {
		return "", "", &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
			Message: "this ecp does not serve the agent API"}
	})
	if f, ok := a.fleet.(interface {
		AuthenticateAgent(*http.Request) (string, string, error)
	}); ok {
		authn = f.AuthenticateAgent
	}
	g, err := remotewrite.New(remotewrite.Options{URL: a.opts.RemoteWriteURL}, authn, a.logger.With("component", "remotewrite"), a.reg)
	if err != nil {
		return err
	}
	g.Register(env.Root, env.Adapter)
	a.extensionRuns = append(a.extensionRuns, g.Run)
	if a.reports == nil {
		a.reports = monitoring.NewStore(nil)
	}
	// Replicas share what they heard through etcd, written on change.
	a.reports.Share(a.cli, kv.NewID(), a.logger.With("component", "monitoring"))
	a.extensionRuns = append(a.extensionRuns, a.reports.Run)
	// A deleted entry's shared snapshot goes with it.
	a.registry.KeepsKeys(monitoring.Keys)
	a.registry.OnDelete(func(spec clusterspec.Spec) { a.reports.Forget(spec.ID) })
	// The project's clusters come from the replica's mirror of the specs,
	// as the cluster lists do.
	monitoring.NewAPI(a.authz, a.clusters.Index(), a.fleet, a.reports).Register(env.API, env.Adapter)
	return nil
}
