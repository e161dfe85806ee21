package app

import (
	"context"
	"errors"

	"github.com/gorilla/mux"
)

// buildFleet sets up the agent side of ecp.
func (a *App) buildFleet(_ context.Context) error {
	if a.opts.Fleet == nil {
		return errors.New("ecp/app: the agent side (ecp/fleet) is not wired yet; Options.Fleet is required")
	}
	a.fleet = a.opts.Fleet
	return nil
}

func (a *App) registerFleetRoutes(_ *mux.Router) {}
