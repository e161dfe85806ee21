package daemon

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/secret"
)

// dashboards answers ecp's dashboard session requests (the login-free
// jump, see README): each request id once, each in its own short call so
// the long-poll never waits on EMQX.
type dashboards struct {
	now     func() time.Time
	timeout time.Duration // of one answer, EMQX and ecp together
	log     *slog.Logger
	dir     *state.Dir // keeps the viewer user's password

	mu   sync.Mutex
	seen map[string]time.Time
	wg   sync.WaitGroup
	// viewerMu makes one request at a time check or recreate the viewer
	// user, so concurrent jumps do not replace each other's password.
	viewerMu sync.Mutex
}

// dashboardSeenFor is how long a request id is remembered; ecp keeps a
// request for 30 s, and it shows up in every desired state until then.
const dashboardSeenFor = 2 * time.Minute

// answer serves the requests of reqs not seen before, each in its own
// goroutine, ended with the session's context.
func (d *dashboards) answer(s *session, reqs []agentproto.DashboardSessionRequest) {
	if len(reqs) == 0 {
		return
	}
	now := d.now()
	d.mu.Lock()
	if d.seen == nil {
		d.seen = map[string]time.Time{}
	}
	for id, at := range d.seen {
		if now.Sub(at) > dashboardSeenFor {
			delete(d.seen, id)
		}
	}
	var fresh []agentproto.DashboardSessionRequest
	for _, r := range reqs {
		if _, ok := d.seen[r.ID]; !ok && len(d.seen) < 1000 {
			d.seen[r.ID] = now
			fresh = append(fresh, r)
		}
	}
	d.mu.Unlock()
	for _, r := range fresh {
		d.wg.Go(func() { d.answerOne(s, r) })
	}
}

// wait waits for the answers in flight.
func (d *dashboards) wait() { d.wg.Wait() }

// answerOne logs in to EMQX for a person and posts the login sealed
// to the request's key; on failure it tells ecp why, so the user is not
// left waiting. A viewer request is served by the viewer user, never by
// the registered one. The token is never logged.
func (d *dashboards) answerOne(s *session, req agentproto.DashboardSessionRequest) {
	ctx, cancel := context.WithTimeout(s.ctx, d.timeout)
	defer cancel()
	reply := agentproto.DashboardSessionReply{RequestID: req.ID}
	var sess emqx.DashboardSession
	var err error
	switch req.Role {
	case agentproto.DashboardRoleAdministrator, "":
		// "" is an ecp from before roles; it gets what it always got
		// (ecp's own check is the guard there).
		sess, err = s.emqx.NewDashboardSession(ctx)
	case agentproto.DashboardRoleViewer:
		sess, err = d.viewerSession(ctx, s)
	default:
		err = fmt.Errorf("%w: unknown dashboard role %q", errViewerUnavailable, req.Role)
	}
	switch {
	case errors.Is(err, errViewerUnavailable):
		reply.Problem = &agentproto.Problem{Code: agentproto.ProblemDashboardViewerUnavailable, Message: err.Error()}
	case errors.Is(err, emqx.ErrAuthFailed):
		reply.Problem = &agentproto.Problem{Code: agentproto.ProblemEMQXAuthFailed, Message: err.Error()}
	case err != nil:
		reply.Problem = &agentproto.Problem{Code: agentproto.ProblemEMQXUnreachable, Message: err.Error()}
	default:
		reply.Sealed, err = agentproto.SealDashboardLogin(req.PublicKey, agentproto.DashboardLogin{
			Username: sess.Username, Token: sess.Token.Reveal(), Role: sess.Role,
			Version: sess.Version, Edition: sess.License.Edition,
		})
		if err != nil {
			reply.Problem = &agentproto.Problem{Code: "DashboardSealFailed", Message: err.Error()}
			reply.Sealed = ""
		}
	}
	if reply.Problem != nil {
		d.log.Warn("dashboard session request not served", "request", req.ID, "role", req.Role, "err", reply.Problem.Message)
	}
	if err := s.aside.DashboardSession(ctx, reply); err != nil {
		d.log.Warn("answer dashboard session request", "request", req.ID, "err", err)
		return
	}
	d.log.Info("dashboard session handed to ecp", "request", req.ID, "role", req.Role, "ok", reply.Problem == nil)
}

// ViewerUsername is the EMQX dashboard user of role viewer the agent keeps
// for read-only jumps (EMQX allows letters, digits and underscores).
const ViewerUsername = "ecp_agent_viewer"

const viewerDescription = "read-only dashboard sessions of ecp project viewers; kept by agent-exporter, which recreates it when needed"

// errViewerUnavailable: no viewer session can be had from this EMQX with
// the registered user (it may not manage users, or EMQX has no roles).
var errViewerUnavailable = errors.New("no EMQX viewer session can be made")

// viewerSession logs in as the viewer user, creating it the first time and
// recreating it when its login stops working (deleted on the dashboard,
// password changed, which a viewer may do to itself) or when it no longer
// has the viewer role. Its password is random and lives only in the state
// directory (mode 0600) and in EMQX.
func (d *dashboards) viewerSession(ctx context.Context, s *session) (emqx.DashboardSession, error) {
	d.viewerMu.Lock()
	defer d.viewerMu.Unlock()
	v, ok, err := d.dir.LoadDashboardViewer()
	if err != nil {
		d.log.Warn("unreadable viewer user file; making a new viewer user", "err", err)
		ok = false
	}
	if ok && v.APIURL == s.reg.EMQX.APIURL && v.Username == ViewerUsername {
		sess, err := s.emqx.NewDashboardSessionAs(ctx, v.Username, v.Password)
		switch {
		case err == nil && sess.Role == agentproto.DashboardRoleViewer:
			return sess, nil
		case err == nil:
			d.log.Warn("the viewer user lost its viewer role; recreating it", "user", v.Username, "role", sess.Role)
		case errors.Is(err, emqx.ErrAuthFailed):
			d.log.Info("the viewer user cannot log in (deleted or password changed); recreating it", "user", v.Username)
		default:
			return emqx.DashboardSession{}, err
		}
	}
	return d.recreateViewer(ctx, s)
}

// recreateViewer replaces the viewer user with a fresh one: EMQX lets no
// administrator set another user's password without the old one, so an
// existing user of that name is deleted first (which also ends its
// sessions).
func (d *dashboards) recreateViewer(ctx context.Context, s *session) (emqx.DashboardSession, error) {
	if s.reg.EMQX.Username == ViewerUsername {
		return emqx.DashboardSession{}, fmt.Errorf("%w: the agent is registered with the user %s it keeps for viewers; register with another EMQX user", errViewerUnavailable, ViewerUsername)
	}
	pw := newViewerPassword()
	if err := s.emqx.DeleteDashboardUser(ctx, ViewerUsername); err != nil {
		return emqx.DashboardSession{}, viewerError(err)
	}
	if err := s.emqx.CreateDashboardUser(ctx, ViewerUsername, pw, agentproto.DashboardRoleViewer, viewerDescription); err != nil {
		return emqx.DashboardSession{}, viewerError(err)
	}
	if err := d.dir.SaveDashboardViewer(state.DashboardViewer{APIURL: s.reg.EMQX.APIURL, Username: ViewerUsername, Password: pw}); err != nil {
		return emqx.DashboardSession{}, fmt.Errorf("keeping the viewer user's password: %w", err)
	}
	d.log.Info("created the EMQX viewer user for read-only dashboard jumps", "user", ViewerUsername)
	sess, err := s.emqx.NewDashboardSessionAs(ctx, ViewerUsername, pw)
	if err != nil {
		return emqx.DashboardSession{}, err
	}
	if sess.Role != agentproto.DashboardRoleViewer {
		// EMQX without dashboard roles (open source) makes every user an
		// administrator; such a session must not reach a viewer.
		return emqx.DashboardSession{}, fmt.Errorf("%w: EMQX logged the new user %s in with role %q, not viewer", errViewerUnavailable, ViewerUsername, sess.Role)
	}
	return sess, nil
}

// viewerError marks EMQX's refusals to manage users (403
// UNAUTHORIZED_ROLE for a registered user that is itself a viewer, 400
// for a name or password EMQX will not take) as no viewer to be had; a
// refused registered login stays EMQXAuthFailed.
func viewerError(err error) error {
	var apiErr *emqx.APIError
	if !errors.Is(err, emqx.ErrAuthFailed) && errors.As(err, &apiErr) &&
		(apiErr.Status == http.StatusBadRequest || apiErr.Status == http.StatusForbidden) {
		return fmt.Errorf("%w: %w", errViewerUnavailable, err)
	}
	return err
}

// newViewerPassword draws 130 random bits (crypto/rand.Text); the "Ecp-"
// prefix gives every password the letters and the special character
// EMQX's password rules ask for (8 to 64 ASCII characters of two kinds).
func newViewerPassword() secret.String {
	return secret.String("Ecp-" + rand.Text())
}
