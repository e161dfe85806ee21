package fleet

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
)

// Hooks for the packages that serve the rest of the agent API (remote
// write) and read what agents report (the monitoring overview). They add
// nothing to fleet's own state.

// AuthenticateAgent checks the agent credential of r the way every agent
// call is checked (memory first, etcd only when memory disagrees) and
// returns the cluster the agent is bound to and the project the entry is in
// now: a transfer changes the project from the next call on. Errors are
// httpapi errors (401 with CredentialRevoked for a credential that no
// longer opens the door, 503 while the state is loading).
func (f *Fleet) AuthenticateAgent(r *http.Request) (clusterID, project string, err error) {
	if err := f.loading(); err != nil {
		return "", "", err
	}
	p, err := f.authenticate(r)
	if err != nil {
		return "", "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[p.clusterID]
	if e == nil || !e.hasSpec || !e.bound(p.credHash) {
		return "", "", revoked()
	}
	return p.clusterID, e.spec.Project, nil
}

// ReportObserver receives every report fleet accepted, after fleet has
// recorded it. It must not keep req's slices beyond the call unless it
// copies them, and must return quickly: it runs on the report's request.
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
