package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/internal/secret"
)

// Limits on what an agent may send about itself.
const (
	maxShortField = 256
	maxURLField   = 2048
)

// IssueRegistration returns a new single-use registration token for the
// cluster, valid for ttl (Options.TokenTTL when ttl ≤ 0). It revokes the
// agent bound to the cluster, if any, and any token issued before: the next
// agent to register with this token is bound.
func (f *Fleet) IssueRegistration(ctx context.Context, clusterID string, ttl time.Duration) (secret.String, time.Time, error) {
	if ttl <= 0 {
		ttl = f.opts.TokenTTL
	}
	token, err := newToken()
	if err != nil {
		return "", time.Time{}, err
	}
	hash := hashSecret(token.Reveal())
	now := f.now()
	expires := now.Add(ttl)
	tokVal, err := encode(tokenRecord{ClusterID: clusterID, ExpiresAt: expires})
	if err != nil {
		return "", time.Time{}, err
	}
	cctx, cancel := f.etcdCtx(ctx)
	defer cancel()
	lease, err := f.cli.Grant(cctx, int64((ttl+tokenMemory)/time.Second))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("grant registration token lease: %w", err)
	}
	for range maxCASAttempts {
		f.mu.Lock()
		e := f.entryLocked(clusterID)
		prev := e.status.State
		if !e.hasStatus {
			prev = StateCreated
		}
		next := statusRecord{State: StateCreated, Reason: &Reason{Code: ReasonAwaitingRegistration,
			Message: "a registration token was issued; run the register command before " + expires.UTC().Format(time.RFC3339),
			Since:   now}, TokenHash: hash, TokenLease: int64(lease.ID), TokenExpiresAt: expires, UpdatedAt: now}
		oldLease := clientv3.LeaseID(e.status.TokenLease)
		ops := []clientv3.Op{
			clientv3.OpPut(tokenKey(hash), tokVal, clientv3.WithLease(lease.ID)),
			clientv3.OpDelete(agentKey(clusterID)),
		}
		if old := e.status.TokenHash; old != "" {
			ops = append(ops, clientv3.OpDelete(tokenKey(old)))
		}
		cmps := []clientv3.Cmp{statusCmp(e), clientv3.Compare(clientv3.CreateRevision(registry.Key(clusterID)), ">", 0)}
		f.mu.Unlock()
		val, err := encode(next)
		if err != nil {
			return "", time.Time{}, err
		}
		ops = append(ops, clientv3.OpPut(statusKey(clusterID), val))
		resp, err := f.cli.Txn(cctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(statusKey(clusterID)), clientv3.OpGet(agentKey(clusterID)), clientv3.OpGet(registry.Key(clusterID))).
			Commit()
		if err != nil {
			return "", time.Time{}, fmt.Errorf("store registration token of cluster %s: %w", clusterID, err)
		}
		rev := resp.Header.Revision
		f.mu.Lock()
		if resp.Succeeded {
			f.metrics.etcdWrites.WithLabelValues("issue_token").Inc()
			f.applyLocked(kv{key: agentKey(clusterID), modRev: rev, deleted: true})
			f.applyLocked(kv{key: statusKey(clusterID), value: []byte(val), modRev: rev})
			f.mu.Unlock()
			if oldLease != clientv3.NoLease {
				_, _ = f.cli.Revoke(cctx, oldLease) // Only garbage collection; it expires anyway.
			}
			f.metrics.tokens.Inc()
			if prev != StateCreated {
				f.metrics.transitions.WithLabelValues(StateCreated).Inc()
			}
			f.releaseIdentity(ctx, clusterID)
			f.logger.Info("registration token issued", "cluster", clusterID, "expiresAt", expires, "revokedState", prev)
			return token, expires, nil
		}
		f.applyGetsLocked(resp, 0, statusKey(clusterID), agentKey(clusterID), registry.Key(clusterID))
		specGone := !f.entries[clusterID].hasSpec
		f.mu.Unlock()
		if specGone {
			_, _ = f.cli.Revoke(cctx, lease.ID)
			return "", time.Time{}, fmt.Errorf("issue registration token for %s: %w", clusterID, ErrUnknownCluster)
		}
	}
	_, _ = f.cli.Revoke(cctx, lease.ID)
	return "", time.Time{}, fmt.Errorf("issue registration token for %s: still conflicting after %d attempts", clusterID, maxCASAttempts)
}

func tokenError(code, msg string) error {
	return &httpapi.Error{Status: http.StatusUnauthorized, Code: code, Message: msg}
}

func revoked() error {
	return &httpapi.Error{Status: http.StatusUnauthorized, Code: agentproto.CodeCredentialRevoked,
		Message: "this agent's credential is not valid (the cluster was deleted, re-registered or unregistered); register again with a new token"}
}

func checkLen(field, v string, limit int) error {
	if len(v) > limit {
		return httpapi.Invalid(field, "%s must be at most %d bytes", field, limit)
	}
	return nil
}

// handleRegister exchanges a registration token for the agent's credential.
// The token is consumed in the same transaction that binds the agent, so
// of two agents racing with one token exactly one is bound.
func (f *Fleet) handleRegister(w http.ResponseWriter, r *http.Request) error {
	var req agentproto.RegisterRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return httpapi.Invalid("token", "token is required: the registration token ecp issued for this cluster")
	}
	for _, c := range []struct {
		field, v string
		limit    int
	}{
		{"token", req.Token, maxShortField}, {"agentVersion", req.AgentVersion, maxShortField},
		{"hostname", req.Hostname, maxShortField}, {"dashboardUrl", req.DashboardURL, maxURLField},
		{"apiUrl", req.APIURL, maxURLField}, {"logCollection.dir", req.LogCollection.Dir, maxURLField},
	} {
		if err := checkLen(c.field, c.v, c.limit); err != nil {
			return err
		}
	}
	var idKeys []string
	if c := req.Cluster; c != nil {
		if err := validateIdentity("cluster.name", "cluster.nodes", c.Name, c.Nodes); err != nil {
			return err
		}
		idKeys = identityKeys(c.Name, c.Nodes)
	}
	// The dashboard URL becomes a link in the console and the target of
	// the dashboard jump: only http(s) with a host, or none (issue #11).
	if err := agentproto.CheckDashboardURL(req.DashboardURL); req.DashboardURL != "" && err != nil {
		return httpapi.Invalid("dashboardUrl", "dashboardUrl %q %v", req.DashboardURL, err)
	}
	f.metrics.registrations.WithLabelValues("attempt").Inc()
	ctx, cancel := f.etcdCtx(r.Context())
	defer cancel()
	hash := hashSecret(req.Token)
	got, err := f.cli.Get(ctx, tokenKey(hash))
	if err != nil {
		return fmt.Errorf("read registration token: %w", err)
	}
	if len(got.Kvs) == 0 {
		f.metrics.registrations.WithLabelValues(agentproto.CodeTokenInvalid).Inc()
		return tokenError(agentproto.CodeTokenInvalid, "the registration token is unknown or was already used; issue a new one")
	}
	tok, err := decode[tokenRecord](got.Kvs[0].Value)
	if err != nil {
		return err
	}
	now := f.now()
	if !now.Before(tok.ExpiresAt) {
		f.metrics.registrations.WithLabelValues(agentproto.CodeTokenExpired).Inc()
		return tokenError(agentproto.CodeTokenExpired, "the registration token expired at "+tok.ExpiresAt.UTC().Format(time.RFC3339)+"; issue a new one")
	}
	id := tok.ClusterID
	cred, err := newCredential(id)
	if err != nil {
		return err
	}
	agentVal, err := encode(agentRecord{CredentialHash: hashSecret(cred.Reveal()), AgentVersion: req.AgentVersion,
		Hostname: req.Hostname, DashboardURL: req.DashboardURL, APIURL: req.APIURL,
		LogCollection: req.LogCollection, RegisteredAt: now})
	if err != nil {
		return err
	}
	statusVal, err := encode(statusRecord{State: StateRegistering, Reason: &Reason{Code: ReasonAwaitingFirstReport,
		Message: "the agent registered; waiting for its first report", Since: now},
		AgentVersion: req.AgentVersion, UpdatedAt: now})
	if err != nil {
		return err
	}
	idVal, err := encode(identityRecord{ClusterID: id})
	if err != nil {
		return err
	}
	var resp *clientv3.TxnResponse
	for attempt := 1; ; attempt++ {
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(tokenKey(hash)), "=", got.Kvs[0].ModRevision),
			clientv3.Compare(clientv3.CreateRevision(registry.Key(id)), ">", 0)}
		ops := []clientv3.Op{clientv3.OpDelete(tokenKey(hash)), clientv3.OpPut(agentKey(id), agentVal), clientv3.OpPut(statusKey(id), statusVal),
			clientv3.OpGet(agentKey(id)), clientv3.OpGet(registry.Key(id))}
		if len(idKeys) > 0 {
			// The identity keys are created with the binding, each compared
			// to what was read: of two registrations racing for one EMQX
			// cluster exactly one is bound (identity.go).
			hs, err := f.readHolders(ctx, idKeys)
			if err != nil {
				return err
			}
			if h, ok := heldElsewhere(hs, id, 0); ok {
				f.metrics.registrations.WithLabelValues(agentproto.CodeClusterAlreadyManaged).Inc()
				msg := f.managedElsewhereMessage(r.Context(), id, h.clusterID, describeIdentity(req.Cluster.Name, req.Cluster.Nodes)) +
					". The registration token was not used."
				f.logger.Info("registration refused: cluster already managed", "cluster", id, "heldBy", h.clusterID)
				return clusterAlreadyManaged(msg)
			}
			for _, h := range hs {
				cmps = append(cmps, h.claimCmps()...)
				ops = append(ops, clientv3.OpPut(h.key, idVal))
			}
		}
		resp, err = f.cli.Txn(ctx).If(cmps...).Then(ops...).
			Else(clientv3.OpGet(registry.Key(id)), clientv3.OpGet(tokenKey(hash))).
			Commit()
		if err != nil {
			return fmt.Errorf("bind agent to cluster %s: %w", id, err)
		}
		if resp.Succeeded || len(idKeys) == 0 || attempt == maxCASAttempts {
			break
		}
		// Still the same token and entry: an identity key moved, read again.
		spec, tok := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
		if len(spec.Kvs) == 0 || len(tok.Kvs) == 0 || tok.Kvs[0].ModRevision != got.Kvs[0].ModRevision {
			break
		}
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		f.mu.Lock()
		f.applyGetsLocked(resp, 0, registry.Key(id))
		f.mu.Unlock()
		f.metrics.registrations.WithLabelValues(agentproto.CodeTokenInvalid).Inc()
		return tokenError(agentproto.CodeTokenInvalid, "the registration token was already used or its cluster was deleted; issue a new one")
	}
	f.metrics.etcdWrites.WithLabelValues("register").Inc()
	// The token's lease only kept an expired token around; drop it now so
	// that leases do not pile up with every registration.
	if lease := clientv3.LeaseID(got.Kvs[0].Lease); lease != clientv3.NoLease {
		if _, err := f.cli.Revoke(ctx, lease); err != nil {
			f.logger.Debug("could not revoke a used token's lease; it will expire", "err", err)
		}
	}
	f.mu.Lock()
	prev := StateCreated
	if e := f.entries[id]; e != nil && e.hasStatus {
		prev = e.status.State
	}
	f.applyGetsLocked(resp, 3, agentKey(id), registry.Key(id))
	f.applyLocked(kv{key: statusKey(id), value: []byte(statusVal), modRev: rev})
	for _, k := range idKeys {
		f.applyLocked(kv{key: k, value: []byte(idVal), modRev: rev})
	}
	e := f.entries[id]
	out := agentproto.RegisterResponse{ClusterID: id, Project: e.spec.Project, Credential: cred.Reveal(),
		ReportIntervalSeconds: f.intervalSeconds(), FirstReportDelayMillis: f.spread.firstReport(f.now(), id, f.opts.ReportInterval).Milliseconds(),
		Desired: desiredLocked(e, hashOf(cred.Reveal()))}
	f.mu.Unlock()
	f.metrics.registrations.WithLabelValues("ok").Inc()
	if prev != StateRegistering {
		f.metrics.transitions.WithLabelValues(StateRegistering).Inc()
	}
	f.logger.Info("agent registered", "cluster", id, "hostname", req.Hostname, "agentVersion", req.AgentVersion)
	return httpapi.JSON(w, http.StatusOK, out)
}

func (f *Fleet) intervalSeconds() int { return int(f.opts.ReportInterval / time.Second) }

// handleUnregister revokes the calling agent's credential; the entry goes
// back to created and stays.
func (f *Fleet) handleUnregister(w http.ResponseWriter, r *http.Request) error {
	p, err := f.authenticate(r)
	if err != nil {
		return err
	}
	now := f.now()
	val, err := encode(statusRecord{State: StateCreated, Reason: &Reason{Code: ReasonNotRegistered,
		Message: "the agent unregistered; issue a registration token to register one again", Since: now}, UpdatedAt: now})
	if err != nil {
		return err
	}
	ctx, cancel := f.etcdCtx(r.Context())
	defer cancel()
	resp, err := f.cli.Txn(ctx).If(bindCmp(p.clusterID, p.bindRev)).
		Then(clientv3.OpDelete(agentKey(p.clusterID)), clientv3.OpPut(statusKey(p.clusterID), val)).
		Else(clientv3.OpGet(agentKey(p.clusterID))).Commit()
	if err != nil {
		return fmt.Errorf("unregister agent of cluster %s: %w", p.clusterID, err)
	}
	rev := resp.Header.Revision
	f.mu.Lock()
	if !resp.Succeeded {
		f.applyGetsLocked(resp, 0, agentKey(p.clusterID))
		f.mu.Unlock()
		return revoked()
	}
	f.applyLocked(kv{key: agentKey(p.clusterID), modRev: rev, deleted: true})
	f.applyLocked(kv{key: statusKey(p.clusterID), value: []byte(val), modRev: rev})
	f.mu.Unlock()
	f.metrics.etcdWrites.WithLabelValues("unregister").Inc()
	f.metrics.transitions.WithLabelValues(StateCreated).Inc()
	f.releaseIdentity(r.Context(), p.clusterID)
	f.logger.Info("agent unregistered", "cluster", p.clusterID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Forget drops everything fleet stores about the cluster (its agent, state
// and pending token) after the entry was deleted; the agent is refused from
// then on. Forgetting an unknown cluster is not an error.
func (f *Fleet) Forget(ctx context.Context, clusterID string) error {
	cctx, cancel := f.etcdCtx(ctx)
	defer cancel()
	for range maxCASAttempts {
		got, err := f.cli.Get(cctx, statusKey(clusterID))
		if err != nil {
			return fmt.Errorf("read status of cluster %s: %w", clusterID, err)
		}
		ops := []clientv3.Op{clientv3.OpDelete(agentKey(clusterID)), clientv3.OpDelete(statusKey(clusterID))}
		tokenLease := clientv3.NoLease
		cmp := clientv3.Compare(clientv3.CreateRevision(statusKey(clusterID)), "=", 0)
		if len(got.Kvs) == 1 {
			cmp = clientv3.Compare(clientv3.ModRevision(statusKey(clusterID)), "=", got.Kvs[0].ModRevision)
			if rec, err := decode[statusRecord](got.Kvs[0].Value); err == nil && rec.TokenHash != "" {
				ops = append(ops, clientv3.OpDelete(tokenKey(rec.TokenHash)))
				tokenLease = clientv3.LeaseID(rec.TokenLease)
			}
		}
		resp, err := f.cli.Txn(cctx).If(cmp).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("forget cluster %s: %w", clusterID, err)
		}
		if !resp.Succeeded {
			continue
		}
		f.metrics.etcdWrites.WithLabelValues("forget").Inc()
		if tokenLease != clientv3.NoLease {
			_, _ = f.cli.Revoke(cctx, tokenLease) // Only garbage collection; it expires anyway.
		}
		rev := resp.Header.Revision
		f.mu.Lock()
		f.applyLocked(kv{key: agentKey(clusterID), modRev: rev, deleted: true})
		f.applyLocked(kv{key: statusKey(clusterID), modRev: rev, deleted: true})
		f.mu.Unlock()
		f.releaseIdentity(ctx, clusterID)
		f.logger.Info("cluster forgotten", "cluster", clusterID)
		return nil
	}
	return errors.New("forget cluster " + clusterID + ": still conflicting")
}
