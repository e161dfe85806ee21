package fleet

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
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
	select {
	case <-f.ready:
	default:
		return "", "", &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
			Message: "ecp is loading its state; retry later", RetryAfter: f.opts.RetryAfter}
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
// accepted report to observe. The observed report route is mounted first,
// so it is the one gorilla/mux matches.
func (f *Fleet) RegisterObserved(r *mux.Router, observe ReportObserver) {
	if observe != nil {
		r.Handle(agentproto.PathReport, f.adapter.Handle(f.limited(f.observedReport(observe)))).Methods(http.MethodPost)
	}
	f.Register(r)
}

// observedReport runs handleReport on a copy of the body and, when fleet
// answered 200, decodes the copy again for observe. The second decode costs
// microseconds once per report interval per agent.
func (f *Fleet) observedReport(observe ReportObserver) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, httpapi.MaxBodyBytes))
		if err != nil {
			return httpapi.Invalid("", "request body is over %d bytes or unreadable", httpapi.MaxBodyBytes)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &codeWriter{ResponseWriter: w}
		if err := f.handleReport(sw, r); err != nil {
			return err
		}
		if sw.code != http.StatusOK {
			return nil
		}
		p, err := f.authenticate(r)
		if err != nil {
			return nil // Revoked between the two checks: nothing to observe.
		}
		var req agentproto.ReportRequest
		if json.Unmarshal(body, &req) == nil {
			observe(p.clusterID, &req)
		}
		return nil
	}
}

// codeWriter remembers the status a handler wrote.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *codeWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return c.ResponseWriter.Write(b)
}

func (c *codeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
