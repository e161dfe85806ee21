package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/internal/secret"
)

// The dashboard jump (see the package doc's "Dashboard jump" section).
const (
	// dashboardPrefix + <cluster>/<request>: a pending request for a
	// dashboard login, {"publicKey"}, on a lease of DashboardRequestTTL.
	dashboardPrefix = Prefix + "dashboard/"
	// dashboardAnswersPrefix + <request>: the agent's sealed answer, on the
	// request's lease. It sorts after dashboardPrefix+... only by name; the
	// shared watch ignores it.
	dashboardAnswersPrefix = Prefix + "dashboard-answers/"
	// DashboardRequestTTL is how long a request and its answer live in etcd.
	DashboardRequestTTL = 30 * time.Second
	// DefaultDashboardWait is how long a user waits for the agent.
	DefaultDashboardWait = 5 * time.Second
)

// Errors of DashboardSession; the caller falls back to a plain redirect.
var (
	// ErrDashboardNoAgent: no agent is bound to the cluster.
	ErrDashboardNoAgent = errors.New("no agent is registered for the cluster")
	// ErrDashboardTimeout: the agent did not answer in time.
	ErrDashboardTimeout = errors.New("the cluster's agent did not answer in time")
	// ErrDashboardViewerUnavailable: the agent says it cannot make a
	// viewer session; the caller must not fall back to another login.
	ErrDashboardViewerUnavailable = errors.New("the cluster's agent cannot make an EMQX viewer session")
)

// DashboardLogin is a fresh EMQX dashboard login made by the agent. Token
// is a secret.String: it prints <secret> and is only revealed to build the
// login_meta of one redirect.
type DashboardLogin struct {
	Username string
	Token    secret.String
	Role     string
	Version  string
	Edition  string
}

// dashboards carries the dashboard jump between the console and the
// agent: a request is a key on a short lease that the agent's long-poll
// lists (memory's entries carry the pending ones, under memory's lock), the
// answer a key on the same lease that the asking replica watches.
type dashboards struct {
	*memory
	cli         *clientv3.Client
	etcdTimeout time.Duration
	// loaded waits for the first load (gate.waitReady).
	loaded func(ctx context.Context) error
}

type dashboardRecord struct {
	PublicKey string `json:"publicKey"`
	Role      string `json:"role"`
}

type dashboardAnswer struct {
	Sealed  string              `json:"sealed,omitempty"`
	Problem *agentproto.Problem `json:"problem,omitempty"`
}

// applyDashboardLocked mirrors a request key into its entry, so the
// cluster's desired state lists it and its long-poll wakes. The revision
// only grows: an expired request removes it without a new revision.
func (d *dashboards) applyDashboardLocked(k kv) {
	rest := strings.TrimPrefix(k.key, dashboardPrefix)
	id, req, ok := strings.Cut(rest, "/")
	if !ok || id == "" || req == "" || strings.Contains(req, "/") {
		return
	}
	e := d.entries[id]
	if e == nil {
		// A request is only made for a bound agent; one for a cluster this
		// replica does not know yet is useless to it.
		return
	}
	if k.deleted {
		delete(e.dashboard, req)
		return
	}
	rec, err := decode[dashboardRecord](k.value)
	if err != nil {
		d.logger.Warn("ignoring undecodable dashboard request", "key", k.key, "err", err)
		return
	}
	if e.dashboard == nil {
		e.dashboard = map[string]dashboardRecord{}
	}
	e.dashboard[req] = rec
	e.dashRev = max(e.dashRev, k.modRev)
	e.notify()
}

// addDashboardLocked puts e's pending requests into d.
func addDashboardLocked(e *entry, d *agentproto.DesiredState) {
	d.Revision = max(d.Revision, e.dashRev)
	for id, rec := range e.dashboard {
		d.DashboardSessions = append(d.DashboardSessions, agentproto.DashboardSessionRequest{ID: id, PublicKey: rec.PublicKey, Role: rec.Role})
	}
}

// DashboardSession asks the agent bound to clusterID for a fresh EMQX
// dashboard login of EMQX dashboard role role (agentproto.DashboardRole*)
// and waits for it up to wait (DefaultDashboardWait when zero). The
// caller checks the role of the login it gets: an agent that predates
// roles ignores the request's. The request is an etcd key on a short lease under fleet's prefix,
// so the shared watch of whichever replica holds the agent's long-poll
// wakes it; the agent's answer may land on any replica, which stores it,
// sealed to the key pair made here, on the same lease; this replica
// watches for it and opens it. Revoking the lease when done removes both.
func (d *dashboards) DashboardSession(ctx context.Context, clusterID, role string, wait time.Duration) (DashboardLogin, error) {
	if role != agentproto.DashboardRoleAdministrator && role != agentproto.DashboardRoleViewer {
		return DashboardLogin{}, fmt.Errorf("dashboard session role %q: want %s or %s", role, agentproto.DashboardRoleAdministrator, agentproto.DashboardRoleViewer)
	}
	if err := d.loaded(ctx); err != nil {
		return DashboardLogin{}, err
	}
	if wait <= 0 {
		wait = DefaultDashboardWait
	}
	d.mu.Lock()
	e := d.entries[clusterID]
	bound := e != nil && e.hasSpec && e.hasAgent
	d.mu.Unlock()
	if !bound {
		return DashboardLogin{}, ErrDashboardNoAgent
	}
	key, pub, err := agentproto.NewDashboardKey()
	if err != nil {
		return DashboardLogin{}, err
	}
	reqID, err := randomPart()
	if err != nil {
		return DashboardLogin{}, err
	}
	reqID = reqID[:22]
	val, err := encode(dashboardRecord{PublicKey: pub, Role: role})
	if err != nil {
		return DashboardLogin{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	lease, err := d.cli.Grant(ctx, int64(DashboardRequestTTL/time.Second))
	if err != nil {
		return DashboardLogin{}, fmt.Errorf("grant dashboard request lease: %w", err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), d.etcdTimeout)
		if _, err := d.cli.Revoke(rctx, lease.ID); err != nil {
			d.logger.Debug("revoke dashboard request lease; it expires by itself", "err", err)
		}
		rcancel()
	}()
	answerKey := dashboardAnswersPrefix + reqID
	// Watch before the request exists, so no answer can be missed.
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	events := d.cli.Watch(wctx, answerKey)
	if _, err := d.cli.Put(ctx, dashboardPrefix+clusterID+"/"+reqID, val, clientv3.WithLease(lease.ID)); err != nil {
		return DashboardLogin{}, fmt.Errorf("store dashboard request: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return DashboardLogin{}, ErrDashboardTimeout
		case wr, ok := <-events:
			if !ok {
				return DashboardLogin{}, ErrDashboardTimeout
			}
			if err := wr.Err(); err != nil {
				return DashboardLogin{}, fmt.Errorf("watch dashboard answer: %w", err)
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				ans, err := decode[dashboardAnswer](ev.Kv.Value)
				if err != nil {
					return DashboardLogin{}, fmt.Errorf("decode dashboard answer: %w", err)
				}
				if ans.Problem != nil && ans.Problem.Code == agentproto.ProblemDashboardViewerUnavailable {
					return DashboardLogin{}, fmt.Errorf("%w: %s", ErrDashboardViewerUnavailable, ans.Problem.Message)
				}
				if ans.Problem != nil {
					return DashboardLogin{}, fmt.Errorf("the agent could not log in to EMQX: %s: %s", ans.Problem.Code, ans.Problem.Message)
				}
				l, err := key.Open(ans.Sealed)
				if err != nil {
					return DashboardLogin{}, err
				}
				return DashboardLogin{Username: l.Username, Token: secret.String(l.Token), Role: l.Role, Version: l.Version, Edition: l.Edition}, nil
			}
		}
	}
}

// handleDashboardSession takes an agent's answer to a dashboard request of
// its own cluster and stores it, still sealed, on the request's lease.
func (f *Fleet) handleDashboardSession(w http.ResponseWriter, r *http.Request) error {
	p, err := f.authenticate(r)
	if err != nil {
		return err
	}
	var in agentproto.DashboardSessionReply
	if err := httpapi.Decode(r, &in); err != nil {
		return err
	}
	if in.RequestID == "" || strings.Contains(in.RequestID, "/") {
		return httpapi.Invalid("requestId", "requestId must name a pending dashboard session request")
	}
	if (in.Sealed == "") == (in.Problem == nil) {
		return httpapi.Invalid("sealed", "exactly one of sealed and problem must be set")
	}
	if err := checkLen("sealed", in.Sealed, 16<<10); err != nil {
		return err
	}
	if err := f.answer(r.Context(), p.clusterID, in); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// answer stores an agent's answer to a dashboard request of its own
// cluster, still sealed, on the request's lease.
func (d *dashboards) answer(ctx context.Context, clusterID string, in agentproto.DashboardSessionReply) error {
	ctx, cancel := context.WithTimeout(ctx, d.etcdTimeout)
	defer cancel()
	reqKey := dashboardPrefix + clusterID + "/" + in.RequestID
	got, err := d.cli.Get(ctx, reqKey)
	if err != nil {
		return fmt.Errorf("read dashboard request: %w", err)
	}
	if len(got.Kvs) == 0 || got.Kvs[0].Lease == 0 {
		return httpapi.NotFound("no pending dashboard session request %s for this cluster (it lives %s)", in.RequestID, DashboardRequestTTL)
	}
	val, err := encode(dashboardAnswer{Sealed: in.Sealed, Problem: in.Problem})
	if err != nil {
		return err
	}
	// Only the first answer counts, and only while the request exists.
	answerKey := dashboardAnswersPrefix + in.RequestID
	_, err = d.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(reqKey), "=", got.Kvs[0].ModRevision),
		clientv3.Compare(clientv3.CreateRevision(answerKey), "=", 0),
	).Then(clientv3.OpPut(answerKey, val, clientv3.WithLease(clientv3.LeaseID(got.Kvs[0].Lease)))).Commit()
	if err != nil {
		return fmt.Errorf("store dashboard answer: %w", err)
	}
	return nil
}
