package daemon

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agent-exporter/control"
	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/ops"
	"github.com/ecpio/ecp/internal/secret"
	"github.com/ecpio/ecp/internal/version"
)

func (a *App) routes() http.Handler {
	r := mux.NewRouter()
	// The web configuration's basic auth guards what scrapers and operators
	// call; the control API below keeps its own token, which the CLI reads
	// from the state directory (package webconfig).
	ops.Endpoints{
		Name: "agent-exporter", Gatherer: a.opts.Gatherer, Protect: a.srv.web.Protect, Pprof: a.opts.EnablePprof,
		NotReady: func() string {
			if !a.srv.ready.Load() {
				return "starting."
			}
			return ""
		},
		Reload: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if err := a.Reload(); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, "Reloaded")
		}),
	}.Register(r)
	r.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "EMQX Agent %s\n\n/metrics\n/-/healthy\n/-/ready\n", version.Version)
	}).Methods(http.MethodGet)

	c := r.NewRoute().Subrouter()
	c.Use(a.requireControlToken)
	c.HandleFunc(control.PathRegister, a.handleRegister).Methods(http.MethodPost)
	c.HandleFunc(control.PathUnregister, a.handleUnregister).Methods(http.MethodPost)
	c.HandleFunc(control.PathStatus, a.handleStatus).Methods(http.MethodGet)
	return r
}

func (a *App) requireControlToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.srv.token.Reveal())) != 1 {
			writeErr(w, &control.Error{Status: http.StatusUnauthorized, Code: control.CodeUnauthorized,
				Message: "the control token does not match: use the same --state.dir as the running agent"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, e *control.Error) {
	writeJSON(w, e.Status, control.ErrorBody{Error: *e})
}

func ctlErr(status int, code, format string, args ...any) *control.Error {
	return &control.Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func checkURL(flag, v string) *control.Error {
	u, err := url.Parse(v)
	if v == "" {
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--%s is required", flag)
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--%s %q: want an http:// or https:// URL with a host", flag, v)
	}
	return nil
}

func validateRegister(req control.RegisterRequest) *control.Error {
	for _, f := range []struct{ flag, v string }{
		{"ecp-url", req.ECPURL}, {"api-url", req.APIURL}, {"dashboard-url", req.DashboardURL},
	} {
		if e := checkURL(f.flag, f.v); e != nil {
			return e
		}
	}
	switch {
	case req.Token.IsZero():
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--token is required (the registration token from ecp)")
	case req.Username == "":
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--username is required (an EMQX dashboard user)")
	case req.Password.IsZero():
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "the EMQX password is required (--password, --password-file or the prompt)")
	case req.LogCollection.Enabled && req.LogCollection.Dir == "":
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--emqx-log-collection-dir is required with --emqx-log-collection-enabled")
	case req.LogCollection.Enabled:
		return checkLogDir(req.LogCollection.Dir)
	}
	return nil
}

// checkLogDir refuses, before the token is spent, an EMQX log directory the
// agent cannot read: registered with it, the agent would collect nothing
// and only say so in its own log.
func checkLogDir(dir string) *control.Error {
	_, err := os.ReadDir(dir)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--emqx-log-collection-dir %s does not exist on this host. "+
			"EMQX writes its logs to /opt/emqx/log (tar.gz, Docker) or /var/log/emqx (deb, rpm); its dashboard shows the directory as the node's log path. "+
			"Give that one, or register without --emqx-log-collection-enabled to collect no logs", dir)
	case errors.Is(err, fs.ErrPermission):
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--emqx-log-collection-dir %s: the agent may not read it; run the agent as the user EMQX runs as (the systemd unit uses emqx)", dir)
	default:
		return ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--emqx-log-collection-dir %s: %v", dir, err)
	}
}

func (a *App) handleRegister(w http.ResponseWriter, r *http.Request) {
	req, err := control.DecodeRegister(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeErr(w, ctlErr(http.StatusBadRequest, control.CodeBadRequest, "%v", err))
		return
	}
	if e := validateRegister(req); e != nil {
		writeErr(w, e)
		return
	}
	resp, e := a.register(r.Context(), req)
	if e != nil {
		a.log.Warn("registration failed", "code", e.Code, "err", e.Message)
		writeErr(w, e)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// register checks the EMQX login first (so a typo in the password never
// consumes the single-use token), then registers with ecp, then saves.
func (a *App) register(ctx context.Context, req control.RegisterRequest) (control.RegisterResponse, *control.Error) {
	a.regMu.Lock()
	defer a.regMu.Unlock()
	if s, _ := a.sess.current(); s != nil {
		return control.RegisterResponse{}, ctlErr(http.StatusConflict, control.CodeAlreadyRegistered,
			"already registered as cluster %s with %s; run `agent-exporter unregister` first", s.reg.ClusterID, s.reg.ECPURL)
	}
	hc := transport.New(transport.Options{InsecureSkipVerify: req.InsecureSkipVerify, Timeout: a.opts.HTTPTimeout})
	defer hc.CloseIdleConnections()
	ec, err := emqx.New(emqx.Config{APIURL: req.APIURL, Username: req.Username, Password: req.Password, HTTPClient: hc})
	if err != nil {
		return control.RegisterResponse{}, ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--api-url: %v", err)
	}
	if _, err := ec.Login(ctx); err != nil {
		return control.RegisterResponse{}, emqxError(req.APIURL, err)
	}
	ecp, err := ecpclient.New(req.ECPURL, "", hc)
	if err != nil {
		return control.RegisterResponse{}, ctlErr(http.StatusBadRequest, control.CodeBadRequest, "--ecp-url: %v", err)
	}
	rr, err := ecp.Register(ctx, agentproto.RegisterRequest{
		Token: req.Token.Reveal(), AgentVersion: version.Version, Hostname: hostname(),
		DashboardURL: req.DashboardURL, APIURL: req.APIURL, LogCollection: req.LogCollection,
		Cluster: a.clusterIdentity(ctx, ec),
	})
	if err != nil {
		return control.RegisterResponse{}, ecpError(req.ECPURL, err)
	}
	if rr.Credential == "" {
		return control.RegisterResponse{}, ctlErr(http.StatusBadGateway, control.CodeECPRefused, "ecp at %s answered the registration without a credential", req.ECPURL)
	}
	reg := state.Registration{
		ECPURL: req.ECPURL, ClusterID: rr.ClusterID, Project: rr.Project, Credential: secret.String(rr.Credential),
		RegisteredAt:       a.opts.Now().UTC(),
		EMQX:               state.EMQX{APIURL: req.APIURL, DashboardURL: req.DashboardURL, Username: req.Username, Password: req.Password},
		InsecureSkipVerify: req.InsecureSkipVerify, LogCollection: req.LogCollection,
	}
	if rr.ReportIntervalSeconds > 0 {
		reg.ReportInterval = secondsDuration(rr.ReportIntervalSeconds)
	}
	if err := a.dir.SaveRegistration(reg); err != nil {
		return control.RegisterResponse{}, ctlErr(http.StatusInternalServerError, control.CodeInternal,
			"registered with ecp as cluster %s but cannot save the credential in %s: %v", rr.ClusterID, a.dir.Path(), err)
	}
	a.dir.ClearEnded()
	s, err := a.newSession(reg, nil)
	if err != nil {
		return control.RegisterResponse{}, ctlErr(http.StatusInternalServerError, control.CodeInternal, "starting the session: %v", err)
	}
	s.firstReport = firstReportDelay(rr.FirstReportDelayMillis)
	a.install(s)
	a.log.Info("registered", "clusterId", rr.ClusterID, "project", rr.Project, "ecpUrl", req.ECPURL)
	a.applyDesired(s, rr.Desired)
	return control.RegisterResponse{ClusterID: rr.ClusterID, Project: rr.Project}, nil
}

// clusterIdentity reads which EMQX cluster this is, for ecp to refuse a
// second entry on it before the token is spent. Nil when EMQX does not say:
// ecp then checks at the first report.
func (a *App) clusterIdentity(ctx context.Context, ec *emqx.Client) *agentproto.ClusterIdentity {
	name, err := ec.ClusterName(ctx)
	if err != nil {
		a.log.Warn("cannot read the EMQX cluster name before registering; ecp checks it at the first report", "err", err)
		return nil
	}
	nodes, err := ec.Nodes(ctx)
	if err != nil {
		a.log.Warn("cannot read the EMQX nodes before registering; ecp checks them at the first report", "err", err)
		return nil
	}
	id := &agentproto.ClusterIdentity{Name: name}
	for _, n := range nodes {
		id.Nodes = append(id.Nodes, n.Node)
	}
	return id
}

func emqxError(apiURL string, err error) *control.Error {
	var apiErr *emqx.APIError
	switch {
	case errors.Is(err, emqx.ErrAuthFailed):
		return ctlErr(http.StatusBadGateway, control.CodeEMQXAuthFailed,
			"EMQX at %s refused the username or password (%v); check --username and the password of an EMQX dashboard user", apiURL, err)
	case transport.IsTLSError(err):
		return ctlErr(http.StatusBadGateway, control.CodeEMQXTLS,
			"TLS with EMQX at %s failed: %v; fix the certificate, or pass --insecure-skip-verify if you trust this network", apiURL, err)
	case errors.As(err, &apiErr):
		return ctlErr(http.StatusBadGateway, control.CodeEMQXError, "EMQX at %s answered the login with an error: %v; is --api-url EMQX's dashboard listener?", apiURL, err)
	default:
		return ctlErr(http.StatusBadGateway, control.CodeEMQXUnreachable, "cannot reach EMQX at %s (--api-url): %v", apiURL, err)
	}
}

func ecpError(ecpURL string, err error) *control.Error {
	var apiErr *ecpclient.APIError
	if errors.As(err, &apiErr) {
		switch {
		// ecp's message says what is wrong with the token and what to do;
		// wrapping it in the agent's own words said everything twice.
		case apiErr.Code == agentproto.CodeTokenExpired:
			return ctlErr(http.StatusBadGateway, control.CodeTokenExpired, "%s",
				cmp.Or(apiErr.Message, "the registration token expired; issue a new one"))
		case apiErr.Code == agentproto.CodeTokenInvalid:
			return ctlErr(http.StatusBadGateway, control.CodeTokenInvalid, "%s",
				cmp.Or(apiErr.Message, "the registration token is unknown or was already used; issue a new one"))
		case apiErr.Code == agentproto.CodeClusterAlreadyManaged:
			return ctlErr(http.StatusConflict, control.CodeClusterAlreadyManaged, "ecp refused the registration: %s", apiErr.Message)
		case apiErr.Status == http.StatusTooManyRequests:
			return ctlErr(http.StatusBadGateway, control.CodeRateLimited,
				"ecp is busy (429); try again in %s", max(apiErr.RetryAfter, secondsDuration(1)))
		default:
			return ctlErr(http.StatusBadGateway, control.CodeECPRefused, "ecp at %s refused the registration: %v", ecpURL, err)
		}
	}
	if transport.IsTLSError(err) {
		return ctlErr(http.StatusBadGateway, control.CodeECPTLS,
			"TLS with ecp at %s failed: %v; fix the certificate, or pass --insecure-skip-verify if you trust this network", ecpURL, err)
	}
	return ctlErr(http.StatusBadGateway, control.CodeECPUnreachable, "cannot reach ecp at %s (--ecp-url): %v", ecpURL, err)
}

func (a *App) handleUnregister(w http.ResponseWriter, r *http.Request) {
	var req control.UnregisterRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil {
		writeErr(w, ctlErr(http.StatusBadRequest, control.CodeBadRequest, "decoding unregister request: %v", err))
		return
	}
	a.regMu.Lock()
	defer a.regMu.Unlock()
	s, _ := a.sess.current()
	if s == nil {
		writeErr(w, ctlErr(http.StatusConflict, control.CodeNotRegistered, "the agent is not registered"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.HTTPTimeout)
	err := s.aside.Unregister(ctx)
	cancel()
	if err != nil && !errors.Is(err, ecpclient.ErrCredentialRevoked) && !req.Force {
		e := ecpError(s.reg.ECPURL, err)
		e.Message += "; the agent stays registered (pass --force to forget the credential anyway)"
		writeErr(w, e)
		return
	}
	reason := "unregistered by the operator"
	if err != nil {
		reason += " (ecp not told: " + err.Error() + ")"
	}
	a.endSession(s, reason)
	writeJSON(w, http.StatusOK, struct{}{})
}

func (a *App) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.Status())
}

// Status is what `agent-exporter status` shows.
func (a *App) Status() control.Status {
	st := control.Status{Version: version.Version}
	if snap := a.col.Latest(); snap != nil {
		st.EMQXReachable, st.EMQXProblem, st.LastCollectAt = snap.Up, snap.Problem, snap.CollectedAt
	}
	es := a.enf.State()
	st.DesiredRevision, st.DesiredMaxConnections, st.QuotaProblem = es.Revision, es.Wanted, es.Problem
	if es.Held != nil {
		// Not a failure, but what the operator must see beside the limit.
		st.QuotaProblem = es.Held
	}
	if es.AppliedOK {
		n := es.Applied
		st.AppliedMaxConnections = &n
	}
	s, ended := a.sess.status()
	if s != nil {
		st.Registered = true
		st.ClusterID, st.Project, st.ECPURL, st.EMQXAPIURL = s.reg.ClusterID, s.reg.Project, s.reg.ECPURL, s.reg.EMQX.APIURL
	}
	st.LastReportAt, st.LastReportError, st.ReportsBuffered = a.rep.status()
	if ended != nil {
		st.EndedAt, st.EndedReason = ended.At, ended.Reason
	}
	return st
}
