// Package fakeecp is an in-process fake of ecp's agent API for the agent's
// tests, built only on agentproto (the agent must not import ecp): register
// with single-use tokens, report, the desired-state long-poll, unregister,
// 401 CredentialRevoked and 429 with Retry-After.
package fakeecp

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/testbed"
)

// Server is a running fake ecp.
type Server struct {
	URL string

	mu          sync.Mutex
	tokens      map[string]string // token → state: "valid", "used", "expired"
	creds       map[string]bool
	clusterID   string
	interval    int
	firstReport int64
	desired     agentproto.DesiredState
	changed     chan struct{}
	reports     []agentproto.ReportRequest
	registers   []agentproto.RegisterRequest
	unregisters int
	limited     int
	retryAfter  int
	failing     bool
	requests    int
	writes      int
	logLines    map[string]int // raw line → times stored
	logBatches  map[string]bool
	logNodes    map[string]int // node of each stored line → lines
	closed      chan struct{}
	dashReplies []agentproto.DashboardSessionReply
	calls       []*Call
	onWrite     func()
	rwEnabled   bool
	conns       atomic.Int64
	// held counts the long-polls (held reports too) waiting for a change.
	held atomic.Int64
	// crowded answers polls at once, as ecp near its connection limit.
	crowded atomic.Bool
	// ignoreHold answers reports as an ecp older than held reports.
	ignoreHold bool
}

// Call is one request the fake answered, as it saw it.
type Call struct {
	Path, Proto string
	Start, End  time.Time
	Status      int
	// Hold is the timeout a long-poll or held report asked for (0 for a
	// report sent unheld); Revision the desired revision a long-poll or
	// report answered with.
	Hold     time.Duration
	Revision int64
}

type callKey struct{}

// callOf is the Call of r, for its handler to complete.
func callOf(r *http.Request) *Call {
	c, _ := r.Context().Value(callKey{}).(*Call)
	if c == nil {
		return &Call{}
	}
	return c
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Start runs a fake ecp until the test ends. New clusters get max
// connections 10, as in ecp.
func Start(t *testing.T) *Server { t.Helper(); return start(t, false) }

// StartTLS is Start over HTTPS with httptest's self-signed certificate,
// which a verifying client refuses.
func StartTLS(t *testing.T) *Server { t.Helper(); return start(t, true) }

func start(t *testing.T, tls bool) *Server {
	t.Helper()
	s := &Server{
		tokens:    map[string]string{},
		creds:     map[string]bool{},
		clusterID: "c-1",
		interval:  1,
		desired:   agentproto.DesiredState{Revision: 1, MaxConnections: 10},
		changed:   make(chan struct{}),
		closed:    make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentproto.PathRegister, s.register)
	mux.HandleFunc("POST "+agentproto.PathReport, s.auth(s.report))
	mux.HandleFunc("GET "+agentproto.PathDesired, s.auth(s.desiredPoll))
	mux.HandleFunc("POST "+agentproto.PathUnregister, s.auth(s.unregister))
	mux.HandleFunc("POST "+agentproto.PathWrite, s.auth(s.write))
	mux.HandleFunc("POST "+agentproto.PathLogs, s.auth(s.logs))
	mux.HandleFunc("POST "+agentproto.PathDashboardSession, s.auth(s.dashboardSession))
	srv := httptest.NewUnstartedServer(s.gate(mux))
	srv.Listener = &testbed.CountingListener{Listener: srv.Listener, N: &s.conns}
	if tls {
		srv.StartTLS()
	} else {
		// HTTP/1.1 and h2c, as ecp serves plain HTTP.
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
		srv.Start()
	}
	s.URL = srv.URL
	t.Cleanup(func() {
		close(s.closed)
		srv.Close()
	})
	return s
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(agentproto.ErrorBody{Error: agentproto.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// gate answers 503 while failing and 429 + Retry-After for the next
// rate-limited requests.
func (s *Server) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c := &Call{Path: r.URL.Path, Proto: r.Proto, Start: time.Now()}
		w := &statusWriter{ResponseWriter: rw}
		r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
		defer func() {
			s.mu.Lock()
			c.End, c.Status = time.Now(), w.status
			s.calls = append(s.calls, c)
			s.mu.Unlock()
		}()
		s.mu.Lock()
		s.requests++
		failing := s.failing
		limited := s.limited > 0
		if limited {
			s.limited--
		}
		ra := s.retryAfter
		s.mu.Unlock()
		switch {
		case failing:
			writeErr(w, http.StatusServiceUnavailable, "Unavailable", "ecp is down")
		case limited:
			w.Header().Set(agentproto.HeaderRetryAfter, strconv.Itoa(ra))
			writeErr(w, http.StatusTooManyRequests, agentproto.CodeRateLimited, "slow down")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		cred, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		ok := s.creds[cred]
		s.mu.Unlock()
		if !ok {
			writeErr(w, http.StatusUnauthorized, agentproto.CodeCredentialRevoked, "credential revoked")
			return
		}
		h(w, r)
	}
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req agentproto.RegisterRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "Invalid", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.tokens[req.Token] {
	case "valid":
	case "expired":
		// ecp's own wording (ecp/fleet), which the agent passes on.
		writeErr(w, http.StatusUnauthorized, agentproto.CodeTokenExpired, "the registration token expired at 2026-01-01T00:00:00Z; issue a new one")
		return
	default:
		writeErr(w, http.StatusUnauthorized, agentproto.CodeTokenInvalid, "the registration token is unknown or was already used; issue a new one")
		return
	}
	s.tokens[req.Token] = "used"
	// As ecp does, the desired state carries the registration's log
	// collection choice until ecp changes it.
	s.desired.LogCollection = req.LogCollection
	// Registering again binds the new agent and revokes the old one.
	s.creds = map[string]bool{}
	cred := fmt.Sprintf("cred-%d", len(s.registers)+1)
	s.creds[cred] = true
	s.registers = append(s.registers, req)
	writeJSON(w, agentproto.RegisterResponse{
		ClusterID: s.clusterID, Project: "p-1", Credential: cred,
		ReportIntervalSeconds: s.interval, FirstReportDelayMillis: s.firstReport, Desired: s.desired,
	})
}

func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	var req agentproto.ReportRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "Invalid", err.Error())
		return
	}
	s.mu.Lock()
	// Recorded on arrival, held or not.
	s.reports = append(s.reports, req)
	interval, desired, ignore := s.interval, s.desired, s.ignoreHold
	s.mu.Unlock()
	reply := func(d agentproto.DesiredState) any {
		return agentproto.ReportResponse{ReportIntervalSeconds: interval, Desired: d}
	}
	if ignore || !r.URL.Query().Has(agentproto.QueryTimeout) {
		callOf(r).Revision = desired.Revision
		writeJSON(w, reply(desired))
		return
	}
	w.Header().Set(agentproto.HeaderReportHeld, agentproto.ReportHeld)
	s.hold(w, r, reply, true)
}

func (s *Server) desiredPoll(w http.ResponseWriter, r *http.Request) {
	s.hold(w, r, func(d agentproto.DesiredState) any { return d }, false)
}

// hold answers r as a long-poll, ecp's way: reply(d) once the desired
// state d is newer than ?after=, at ?timeout= 204 or, for a held report
// (final), reply with the state in force.
func (s *Server) hold(w http.ResponseWriter, r *http.Request, reply func(agentproto.DesiredState) any, final bool) {
	after, err := strconv.ParseInt(r.URL.Query().Get(agentproto.QueryAfter), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "Invalid", "after must be an integer")
		return
	}
	wait, err := time.ParseDuration(r.URL.Query().Get(agentproto.QueryTimeout))
	if err != nil || wait <= 0 {
		wait = agentproto.MaxDesiredWait
	}
	wait = min(wait, agentproto.MaxDesiredWait)
	callOf(r).Hold = wait
	if s.crowded.Load() {
		// As ecp near its connection limit: at once, closing the connection.
		w.Header().Set(agentproto.HeaderHold, agentproto.HoldNextSend)
		w.Header().Set("Connection", "close")
		wait = 0
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	s.held.Add(1)
	defer s.held.Add(-1)
	for {
		s.mu.Lock()
		d, ch := s.desired, s.changed
		s.mu.Unlock()
		if d.Revision > after {
			callOf(r).Revision = d.Revision
			writeJSON(w, reply(d))
			return
		}
		select {
		case <-ch:
		case <-t.C:
			if final {
				callOf(r).Revision = d.Revision
				writeJSON(w, reply(d))
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		case <-s.closed:
			return
		}
	}
}

// IgnoreReportHold makes the fake answer every report at once without
// agentproto.HeaderReportHeld, as an ecp older than held reports does.
func (s *Server) IgnoreReportHold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignoreHold = true
}

// CallsTo counts the requests answered on path.
func (s *Server) CallsTo(path string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Path == path {
			n++
		}
	}
	return n
}

func (s *Server) unregister(w http.ResponseWriter, r *http.Request) {
	cred, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	delete(s.creds, cred)
	s.unregisters++
	s.mu.Unlock()
	writeJSON(w, struct{}{})
}

// IssueToken makes a single-use registration token valid.
func (s *Server) IssueToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = "valid"
}

// ExpireToken marks a token expired.
func (s *Server) ExpireToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = "expired"
}

func (s *Server) change(f func(d *agentproto.DesiredState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.desired)
	s.desired.Revision++
	close(s.changed)
	s.changed = make(chan struct{})
}

// SetMaxConnections changes the desired max connections (new revision).
func (s *Server) SetMaxConnections(n int) {
	s.change(func(d *agentproto.DesiredState) { d.MaxConnections = n })
}

// SetHold sets or lifts (nil) the hold: another entry's agent manages the
// cluster, so this one must not enforce (new revision).
func (s *Server) SetHold(p *agentproto.Problem) {
	s.change(func(d *agentproto.DesiredState) { d.Hold = p })
}

// RequestUnregister tells the agent, through the desired state, to leave.
func (s *Server) RequestUnregister() {
	s.change(func(d *agentproto.DesiredState) { d.Unregister = true })
}

// RevokeAll revokes every credential (entry deleted or re-registered).
func (s *Server) RevokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds = map[string]bool{}
}

// RateLimit answers the next n requests with 429 and Retry-After seconds.
func (s *Server) RateLimit(n, retryAfterSeconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.retryAfter = n, retryAfterSeconds
}

// SetFirstReportDelay sets the registration reply's place of the first
// report in the interval, as ecp does in a burst of registrations.
func (s *Server) SetFirstReportDelay(millis int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firstReport = millis
}

// SetInterval sets the report interval ecp tells agents, in seconds.
func (s *Server) SetInterval(seconds int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interval = seconds
}

// SetCrowded makes polls answered at once with agentproto.HeaderHold and
// their connection closed, as ecp does near its connection limit.
func (s *Server) SetCrowded(v bool) { s.crowded.Store(v) }

// SetFailing makes every request answer 503 (ecp unreachable).
func (s *Server) SetFailing(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = v
}

// Desired returns the current desired state.
func (s *Server) Desired() agentproto.DesiredState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.desired
}

// Reports returns a copy of the reports received so far.
func (s *Server) Reports() []agentproto.ReportRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]agentproto.ReportRequest(nil), s.reports...)
}

// Registrations returns the register requests accepted so far.
func (s *Server) Registrations() []agentproto.RegisterRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]agentproto.RegisterRequest(nil), s.registers...)
}

// write answers a remote-write push as an ecp without a remote-write
// backend does: taken, not stored, and the agent may pause pushing.
func (s *Server) write(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.writes++
	f := s.onWrite
	s.onWrite = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	if s.storesWrites() {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set(agentproto.HeaderRemoteWrite, agentproto.RemoteWriteDisabled)
	w.WriteHeader(http.StatusNoContent)
}

// StoreWrites makes the fake answer pushes as an ecp with a remote-write
// backend (by default it answers that it has none, and the agent pauses).
func (s *Server) StoreWrites() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rwEnabled = true
}

func (s *Server) storesWrites() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rwEnabled
}

// OnNextWrite calls f while ecp answers the next remote-write push (the
// agent then holds no long-poll on a one-connection transport).
func (s *Server) OnNextWrite(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onWrite = f
}

// Calls are the requests answered so far, in the order they ended.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		out[i] = *c
	}
	return out
}

// HeldPolls returns how many desired-state long-polls are being held now.
func (s *Server) HeldPolls() int64 { return s.held.Load() }

// Connections counts the TCP connections accepted so far.
func (s *Server) Connections() int64 { return s.conns.Load() }

// Writes counts the remote-write pushes answered.
func (s *Server) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// Requests counts every request, answered or refused.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Unregisters counts unregister calls.
func (s *Server) Unregisters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unregisters
}

// logs stores a log batch once per batch id, as ecp's duplicate window does.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	var b agentproto.LogBatch
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		writeErr(w, http.StatusBadRequest, "Invalid", err.Error())
		return
	}
	s.mu.Lock()
	if s.logLines == nil {
		s.logLines, s.logBatches = map[string]int{}, map[string]bool{}
	}
	if !s.logBatches[b.BatchID] {
		s.logBatches[b.BatchID] = true
		for _, l := range b.Lines {
			s.logLines[l.Raw]++
			if s.logNodes == nil {
				s.logNodes = map[string]int{}
			}
			s.logNodes[l.Node]++
		}
	}
	s.mu.Unlock()
	writeJSON(w, agentproto.LogBatchResponse{Accepted: len(b.Lines)})
}

// LogNodes returns how many stored lines named each node ("" for none).
func (s *Server) LogNodes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.logNodes)
}

// LogLines returns how many times each log line was stored.
func (s *Server) LogLines() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.logLines))
	for k, v := range s.logLines {
		out[k] = v
	}
	return out
}

// SetLogCollection changes the desired log collection (new revision).
func (s *Server) SetLogCollection(lc agentproto.LogCollection) {
	s.change(func(d *agentproto.DesiredState) { d.LogCollection = lc })
}

// RequestDashboardSession adds a dashboard session request to the desired
// state (new revision), as ecp does when a user opens the dashboard, and
// returns the key that opens the agent's sealed answer. role is the
// EMQX dashboard role asked for (agentproto.DashboardRole*, or "" as an
// ecp from before roles sends).
func (s *Server) RequestDashboardSession(id, role string) (*agentproto.DashboardKey, error) {
	key, pub, err := agentproto.NewDashboardKey()
	if err != nil {
		return nil, err
	}
	s.change(func(d *agentproto.DesiredState) {
		d.DashboardSessions = append(d.DashboardSessions, agentproto.DashboardSessionRequest{ID: id, PublicKey: pub, Role: role})
	})
	return key, nil
}

func (s *Server) dashboardSession(w http.ResponseWriter, r *http.Request) {
	var in agentproto.DashboardSessionReply
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, http.StatusBadRequest, "Invalid", err.Error())
		return
	}
	s.mu.Lock()
	s.dashReplies = append(s.dashReplies, in)
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// DashboardReplies returns the agent's answers to dashboard session requests.
func (s *Server) DashboardReplies() []agentproto.DashboardSessionReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]agentproto.DashboardSessionReply(nil), s.dashReplies...)
}
