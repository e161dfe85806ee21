package app

import (
	"context"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/monitoring"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// buildFleet sets up the agent side of ecp (ecp/fleet), unless
// Options.Fleet replaces it.
func (a *App) buildFleet(_ context.Context) error {
	if a.opts.Fleet != nil {
		a.fleet = a.opts.Fleet
		return nil
	}
	fo := fleet.DefaultOptions()
	fo.TokenTTL = a.opts.RegistrationTokenTTL
	fo.ReportInterval = a.opts.ReportInterval
	// One adapter per registry: it owns the request latency histogram.
	fo.Adapter = a.adapter
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
