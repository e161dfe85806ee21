package daemon

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agentproto"
)

// dashboards answers ecp's dashboard session requests (the login-free
// jump, see README): each request id once, each in its own short call so
// the long-poll never waits on EMQX.
type dashboards struct {
	mu   sync.Mutex
	seen map[string]time.Time
	wg   sync.WaitGroup
}

// dashboardSeenFor is how long a request id is remembered; ecp keeps a
// request for 30 s, and it shows up in every desired state until then.
const dashboardSeenFor = 2 * time.Minute

func (a *App) answerDashboards(s *session, reqs []agentproto.DashboardSessionRequest) {
	if len(reqs) == 0 {
		return
	}
	now := a.opts.Now()
	d := &a.dash
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
		d.wg.Go(func() { a.answerDashboard(s, r) })
	}
}

// answerDashboard logs in to EMQX for a person and posts the login sealed
// to the request's key; on failure it tells ecp why, so the user is not
// left waiting. The token is never logged.
func (a *App) answerDashboard(s *session, req agentproto.DashboardSessionRequest) {
	ctx, cancel := context.WithTimeout(s.ctx, a.opts.HTTPTimeout)
	defer cancel()
	reply := agentproto.DashboardSessionReply{RequestID: req.ID}
	sess, err := s.emqx.NewDashboardSession(ctx)
	switch {
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
		a.log.Warn("dashboard session request not served", "request", req.ID, "err", reply.Problem.Message)
	}
	if err := s.ecp.DashboardSession(ctx, reply); err != nil {
		a.log.Warn("answer dashboard session request", "request", req.ID, "err", err)
		return
	}
	a.log.Info("dashboard session handed to ecp", "request", req.ID, "ok", reply.Problem == nil)
}
