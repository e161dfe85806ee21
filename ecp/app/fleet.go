package app

import (
	"context"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/monitoring"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// agentSide is everything the app wires to the agent side, declared whole:
// the cluster API's clusters.Fleet and the agent authentication the log and
// remote-write APIs share. ecp runs *fleet.Fleet; this package's tests of
// the user API put clusterstest.Fleet in its place, which must implement
// all of it (no method is asserted for at run time).
type agentSide interface {
	clusters.Fleet
	AuthenticateAgent(r *http.Request) (clusterID, project string, err error)
}

var _ agentSide = (*fleet.Fleet)(nil)

// buildFleet sets up the agent side of ecp (ecp/fleet), unless a test of
// this package replaced it (Options.fleet).
func (a *App) buildFleet(_ context.Context) error {
	if a.opts.fleet != nil {
		a.fleet = a.opts.fleet
		return nil
	}
	fo := fleet.DefaultOptions()
	fo.TokenTTL = a.opts.RegistrationTokenTTL
	fo.ReportInterval = a.opts.ReportInterval
	// One adapter per registry: it owns the request latency histogram.
	fo.Adapter = a.adapter
	// Fleet's keys ride on the replica's one mirror of the records.
	fo.Records = a.records
	projects := tenancy.NewStore(a.cli)
	fo.ProjectName = func(ctx context.Context, id string) (string, error) {
		p, err := projects.GetProject(ctx, id)
		return p.Name, err
	}
	f, err := fleet.New(fo, a.cli, a.logger.With("component", "fleet"), a.reg)
	if err != nil {
		return err
	}
	a.fleet = f
	a.reports = monitoring.NewStore(nil)
	a.agentRoutes = func(r *mux.Router) { f.RegisterObserved(r, a.reports.Observe) }
	a.agentShortcut = f.Shortcut
	a.runFleet = f.Run
	a.fleetReady = f.Ready()
	return nil
}

// registerFleetRoutes mounts the agent API, when ecp runs its own fleet.
func (a *App) registerFleetRoutes(r *mux.Router) {
	if a.agentRoutes != nil {
		a.agentRoutes(r)
	}
}
