package clusters

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// The login-free dashboard jump.
//
// GET /clusters/{id}/dashboard (project viewer or better) asks the cluster's
// agent, through fleet, for a fresh EMQX dashboard login: fleet stores a
// request on a 30 s etcd lease, which wakes the agent's desired-state
// long-poll on whichever replica holds it; the agent logs in to EMQX's
// POST /api/v5/login (a new token, not its own API session) and posts the
// result sealed to a key pair this request made (HPKE); the answer reaches
// this replica through etcd, still sealed. The reply is then a 302 to
//
//	<serviceUrl>/#/dashboard/overview?login_meta=<base64 JSON>
//
// with login_meta = {"username","token","role","license":{"edition"},"version"},
// the form EMQX's dashboard reads for ECP (emqx-api.md §9). The hash form
// keeps the token out of the request line: browsers do not send the
// fragment, so it reaches neither EMQX's access log nor proxies; the
// dashboard strips login_meta from the URL once read, but the redirect URL
// may stay in the browser's history. ecp keeps the token in memory for
// this one reply only (secret.String), never logs or stores it in the
// clear; the jump is audited (who, which cluster).
//
// The session never gives more than the caller's role in ecp (issue #11
// finding 1): whoever may change the cluster (project admin, org admin,
// system admin) gets an EMQX administrator session, made with the user
// the agent registered; a project viewer gets a session of an EMQX
// dashboard user with EMQX's viewer role, which the agent keeps for this
// purpose. The request names the role; ecp checks the role EMQX answered
// and refuses with 403 a viewer's jump whose login is not a viewer's (an
// agent too old to know roles answers with the registered user) or which
// the agent says it cannot serve. It never falls back to an administrator
// login for a viewer.
//
// When no agent is bound, the agent does not answer within DashboardWait
// (agent silent, EMQX down) or it could not log in, the reply is the plain
// 302 to the service URL (the dashboard then asks for a login) with
// HeaderDashboardLogin "none" and HeaderDashboardReason saying why. It
// never hangs.

// Headers of the dashboard redirect.
const (
	// HeaderDashboardLogin is "login_meta" when the redirect carries a
	// login, "none" when it is the plain fallback.
	HeaderDashboardLogin = "X-Ecp-Dashboard-Login"
	// HeaderDashboardReason says why the fallback has no login.
	HeaderDashboardReason = "X-Ecp-Dashboard-Reason"
)

// DashboardWait bounds how long the jump waits for the agent.
const DashboardWait = 5 * time.Second

// Jump is where the dashboard jump sends the browser.
type Jump struct {
	// URL is the dashboard, with a login in its fragment when Login.
	URL   string
	Login bool
	// Reason says why the jump carries no login (the dashboard will ask
	// for one), when not Login.
	Reason string
}

// target is where e's dashboard jump goes and the EMQX dashboard role it
// asks for: never more than the caller's own role (issue #11 finding 1).
func (api *API) target(ctx context.Context, e entry) (target, role string, err error) {
	spec := e.spec
	st, err := api.fleet.Status(ctx, spec.ID)
	if err != nil {
		return "", "", fmt.Errorf("read status of cluster %s: %w", spec.ID, err)
	}
	target = serviceURL(spec, st)
	if target == "" {
		return "", "", httpapi.Conflict("cluster %s has no service URL; set one with PATCH /api/v1/clusters/%s {\"serviceUrl\": ...} to open its dashboard", spec.ID, spec.ID)
	}
	role = agentproto.DashboardRoleViewer
	if e.access.Project(e.project) >= tenancy.Admin {
		role = agentproto.DashboardRoleAdministrator
	}
	return target, role, nil
}

// jump redirects into the dashboard at target with a session of EMQX's
// dashboard role role (agentproto.DashboardRole*).
func (api *API) jump(w http.ResponseWriter, r *http.Request, spec registry.Spec, target, role string) error {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	j, err := api.session(r.Context(), spec, target, role)
	if err != nil {
		return err
	}
	if j.Login {
		w.Header().Set(HeaderDashboardLogin, "login_meta")
	} else {
		w.Header().Set(HeaderDashboardLogin, "none")
		w.Header().Set(HeaderDashboardReason, j.Reason)
	}
	http.Redirect(w, r, j.URL, http.StatusFound)
	return nil
}

// session asks spec's agent for a dashboard session of role and says
// where to send the browser.
func (api *API) session(ctx context.Context, spec registry.Spec, target, role string) (Jump, error) {
	audit.Annotate(ctx, audit.Note{Project: spec.Project, Target: "cluster/" + spec.ID, Read: true})
	l, err := api.fleet.DashboardSession(ctx, spec.ID, role, DashboardWait)
	if errors.Is(err, fleet.ErrDashboardViewerUnavailable) {
		api.logger.Info("dashboard jump refused: no viewer session", "cluster", spec.ID, "err", err)
		return Jump{}, httpapi.Forbidden(fmt.Sprintf("you may only view cluster %s, and its agent cannot make a read-only (EMQX viewer) dashboard session: %v; "+
			"a project admin can open the dashboard, or upgrade the agent and give it an EMQX administrator login", spec.ID, err))
	}
	if err == nil && role == agentproto.DashboardRoleViewer && l.Role != agentproto.DashboardRoleViewer {
		// The token is dropped here, never used: an agent that predates
		// roles answers with the registered (administrator) user.
		api.logger.Warn("dashboard jump refused: the agent answered a viewer request with another role", "cluster", spec.ID, "role", l.Role)
		return Jump{}, httpapi.Forbidden(fmt.Sprintf("you may only view cluster %s, and its agent answered with an EMQX %q session instead of a viewer session "+
			"(an agent older than this ecp); upgrade the agent, or ask a project admin to open the dashboard", spec.ID, l.Role))
	}
	if err != nil {
		reason := err.Error()
		if errors.Is(err, fleet.ErrDashboardTimeout) {
			reason += " (agent silent or EMQX slow); log in on the dashboard"
		}
		api.logger.Info("dashboard jump without login", "cluster", spec.ID, "err", err)
		return Jump{URL: target, Reason: reason}, nil
	}
	loc, err := LoginURL(target, l)
	if err != nil {
		return Jump{}, err
	}
	return Jump{URL: loc, Login: true}, nil
}

type loginMeta struct {
	Username string `json:"username"`
	Token    string `json:"token"`
	Role     string `json:"role,omitempty"`
	License  struct {
		Edition string `json:"edition"`
	} `json:"license"`
	Version string `json:"version"`
}

// LoginURL is the dashboard URL that logs the browser in with l: the
// overview route with login_meta in the query inside the hash.
func LoginURL(serviceURL string, l fleet.DashboardLogin) (string, error) {
	m := loginMeta{Username: l.Username, Token: l.Token.Reveal(), Role: l.Role, Version: l.Version}
	m.License.Edition = l.Edition
	if m.License.Edition == "" {
		m.License.Edition = "ee"
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	// Standard base64 as the dashboard decodes it (atob); '+', '/' and
	// '=' are escaped for the query.
	meta := base64.StdEncoding.EncodeToString(b)
	meta = strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D").Replace(meta)
	return strings.TrimRight(serviceURL, "/") + "/#/dashboard/overview?login_meta=" + meta, nil
}
