package app

import (
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/monitoring"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/remotewrite"
)

// buildMetrics mounts the metrics path: the remote-write gateway agents
// push to (ecp/remotewrite, forwarding to Options.RemoteWriteURL), whose
// senders join the run group, and the project monitoring overview
// (ecp/monitoring), fed with the reports fleet accepts and shared with the
// other replicas through etcd.
func (a *App) buildMetrics(env Env) error {
	g, err := remotewrite.New(remotewrite.Options{URL: a.opts.RemoteWriteURL, BatchWait: a.opts.RemoteWriteBatchWait}, a.fleet, a.logger.With("component", "remotewrite"), a.reg)
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
	// Its report in memory goes when the mirror applies the deletion, on
	// every replica.
	a.records.Subscribe(func(c registry.Change) {
		if c.New == nil {
			a.reports.Forget(c.Old.ID)
		}
	})
	// The project's clusters come from the replica's mirror of the specs,
	// as the cluster lists do.
	a.overview = monitoring.NewAPI(a.authz, a.records, a.fleet, a.reports)
	a.overview.Register(env.API, env.Adapter)
	return nil
}
