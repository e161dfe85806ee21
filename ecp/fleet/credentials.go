package fleet

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
)

// credentials authenticates agents against the bindings memory holds,
// reading etcd only when memory disagrees (a binding made on another
// replica that the watch has not delivered yet).
type credentials struct {
	*memory
	cli         *clientv3.Client
	etcdTimeout time.Duration
	refused     prometheus.Counter
	// notLoaded is gate.loading: 503 until the state is loaded.
	notLoaded func() error
}

// AuthenticateAgent checks the agent credential of r the way every agent
// call is checked (memory first, etcd only when memory disagrees) and
// returns the cluster the agent is bound to and the project the entry is in
// now: a transfer changes the project from the next call on. Errors are
// httpapi errors (401 with CredentialRevoked for a credential that no
// longer opens the door, 503 while the state is loading).
func (c *credentials) AuthenticateAgent(r *http.Request) (clusterID, project string, err error) {
	if err := c.notLoaded(); err != nil {
		return "", "", err
	}
	p, err := c.authenticate(r)
	if err != nil {
		return "", "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[p.clusterID]
	if e == nil || !e.hasSpec || !e.bound(p.credHash) {
		return "", "", revoked()
	}
	return p.clusterID, e.spec.Project, nil
}

// principal is an authenticated agent.
type principal struct {
	clusterID string
	credHash  secretHash
	bindRev   int64
}

// authenticate checks the bearer credential against the bound agent's hash
// held in memory: one map lookup and one SHA-256, no etcd round trip. Only
// when memory disagrees does it read etcd, so a binding this replica has
// not seen yet through its watch is never refused.
func (c *credentials) authenticate(r *http.Request) (principal, error) {
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || cred == "" {
		return principal{}, httpapi.Unauthorized("an agent credential is required: Authorization: Bearer <credential>")
	}
	id, ok := credentialCluster(cred)
	if !ok {
		return principal{}, revoked()
	}
	h := hashOf(cred)
	if p, ok := c.lookup(id, h); ok {
		return p, nil
	}
	// Read the binding with the spec and the status at one revision, so
	// that memory never holds a binding without the spec it was made for.
	ctx, cancel := context.WithTimeout(r.Context(), c.etcdTimeout)
	defer cancel()
	resp, err := c.cli.Txn(ctx).Then(clientv3.OpGet(registry.Key(id)), clientv3.OpGet(agentKey(id)), clientv3.OpGet(statusKey(id))).Commit()
	if err != nil {
		return principal{}, fmt.Errorf("read agent of cluster %s: %w", id, err)
	}
	c.mu.Lock()
	c.applyGetsLocked(resp, 0, registry.Key(id), agentKey(id), statusKey(id))
	c.mu.Unlock()
	if p, ok := c.lookup(id, h); ok {
		return p, nil
	}
	c.refused.Inc()
	return principal{}, revoked()
}

func (c *credentials) lookup(id string, credHash secretHash) (principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[id]
	if e == nil || !e.bound(credHash) {
		return principal{}, false
	}
	return principal{clusterID: id, credHash: credHash, bindRev: e.bindRev}, true
}
