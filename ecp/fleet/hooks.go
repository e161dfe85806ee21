package fleet

import (
	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
)

// Hooks for the packages that read what agents report (the monitoring
// overview); the one for the rest of the agent API (remote write, logs) is
// credentials.AuthenticateAgent. They add nothing to fleet's own state.

// ReportObserver receives every report fleet accepted, after fleet has
// recorded it. It must not keep req or its slices beyond the call (fleet
// reuses them for the next report) unless it copies them, and must return
// quickly: it runs on the report's request.
type ReportObserver func(clusterID string, req *agentproto.ReportRequest)

// RegisterObserved mounts the agent API like Register and also hands every
// accepted report to observe, from inside the report handler (after the
// report is recorded, before the reply), so the report is authenticated and
// decoded once. Call it before serving, once.
func (f *Fleet) RegisterObserved(r *mux.Router, observe ReportObserver) {
	f.mu.Lock()
	f.observe = observe
	f.mu.Unlock()
	f.Register(r)
}
