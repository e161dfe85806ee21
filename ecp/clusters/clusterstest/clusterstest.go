// Package clusterstest is an in-memory clusters.Fleet for tests of the
// cluster API: it issues tokens (keeping only their hash, like the real
// one), reports scripted statuses and records what was forgotten; no agent
// ever registers with it (dashboard jumps fall back, agent calls are
// refused). Seed stores many entries at once for benchmarks.
package clusterstest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/clusters"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/internal/secret"
)

// Fleet is a fake clusters.Fleet; the zero value is not usable, use New.
type Fleet struct {
	mu        sync.Mutex
	now       func() time.Time
	tokens    map[string]string // cluster id -> token hash
	expires   map[string]time.Time
	statuses  map[string]clusters.Status
	projects  map[string]string // cluster id -> project, of scripted statuses
	forgotten []string
	issued    []secret.String
}

// New returns an empty fake.
func New() *Fleet {
	return &Fleet{now: time.Now, tokens: map[string]string{}, expires: map[string]time.Time{}, statuses: map[string]clusters.Status{}, projects: map[string]string{}}
}

// IssueRegistration implements clusters.Fleet.
func (f *Fleet) IssueRegistration(_ context.Context, clusterID string, ttl time.Duration) (secret.String, time.Time, error) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	tok := secret.String("ecpr_" + hex.EncodeToString(b))
	h := sha256.Sum256([]byte(tok.Reveal()))
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[clusterID] = hex.EncodeToString(h[:])
	f.expires[clusterID] = f.now().Add(ttl)
	f.issued = append(f.issued, tok)
	return tok, f.expires[clusterID], nil
}

// Status implements clusters.Fleet.
func (f *Fleet) Status(_ context.Context, clusterID string) (clusters.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.statuses[clusterID]
	if !ok {
		return clusters.Status{State: clusters.StateCreated}, nil
	}
	return st, nil
}

// States implements clusters.Fleet.
func (f *Fleet) States(_ context.Context, ids, out []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, id := range ids {
		out[i] = f.statuses[id].State
	}
	return nil
}

// StateCounts implements clusters.Fleet over the scripted statuses.
func (f *Fleet) StateCounts(_ context.Context, project string, visible func(string) bool, out map[string]int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, st := range f.statuses {
		p := f.projects[id]
		if st.State != "" && st.State != clusters.StateCreated && (p == project || project == "" && (visible == nil || visible(p))) {
			out[st.State]++
		}
	}
	return nil
}

// DashboardSession implements clusters.Fleet: no agent ever registers with
// the fake, so the jump falls back as it does for an entry without one.
func (f *Fleet) DashboardSession(_ context.Context, clusterID, _ string, _ time.Duration) (fleet.DashboardLogin, error) {
	return fleet.DashboardLogin{}, fmt.Errorf("cluster %s: %w", clusterID, fleet.ErrDashboardNoAgent)
}

// AuthenticateAgent refuses every agent, as an ecp that does not serve the
// agent API: the fake stands in for the agent side of the user API only.
func (f *Fleet) AuthenticateAgent(*http.Request) (clusterID, project string, err error) {
	return "", "", &httpapi.Error{Status: http.StatusServiceUnavailable, Code: httpapi.CodeUnavailable,
		Message: "this ecp does not serve the agent API"}
}

var _ clusters.Fleet = (*Fleet)(nil)

// Forget implements clusters.Fleet.
func (f *Fleet) Forget(_ context.Context, clusterID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tokens, clusterID)
	delete(f.statuses, clusterID)
	delete(f.projects, clusterID)
	f.forgotten = append(f.forgotten, clusterID)
	return nil
}

// SetStatus scripts what Status returns for clusterID, of project.
func (f *Fleet) SetStatus(project, clusterID string, st clusters.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses[clusterID] = st
	f.projects[clusterID] = project
}

// Forgotten lists the clusters Forget was called for.
func (f *Fleet) Forgotten() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.forgotten...)
}

// Issued lists every token issued, for leak checks.
func (f *Fleet) Issued() []secret.String {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]secret.String(nil), f.issued...)
}

// Seed stores specs as registry.Store would (spec, project and name index
// keys, and their max connections added to the allocation counter), many per etcd
// transaction: creating 10,000 entries one API call at a time takes a
// minute, and benchmarks are about reading them. It does not check the
// licence; the caller keeps the entries within it. Nor does it keep the
// per-organization and per-project allocation counters: a test that sets
// quotas seeds before the app starts, whose Recount fills them.
func Seed(ctx context.Context, cli *clientv3.Client, specs []registry.Spec) error {
	const perTxn = 60 // two keys each, under etcd's 128 operations per transaction
	allocated := 0
	for start := 0; start < len(specs); start += perTxn {
		var ops []clientv3.Op
		for _, s := range specs[start:min(start+perTxn, len(specs))] {
			b, err := s.Encode()
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(registry.Key(s.ID), string(b)),
				clientv3.OpPut(registry.NameKey(s.Project, s.Name), s.ID))
			allocated += s.MaxConnections
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("seed cluster specs: %w", err)
		}
	}
	resp, err := cli.Get(ctx, quota.AllocatedKey)
	if err != nil {
		return fmt.Errorf("read allocated connections: %w", err)
	}
	if len(resp.Kvs) == 1 {
		n, err := strconv.Atoi(string(resp.Kvs[0].Value))
		if err != nil {
			return fmt.Errorf("decode %s: %w", quota.AllocatedKey, err)
		}
		allocated += n
	}
	if _, err := cli.Put(ctx, quota.AllocatedKey, strconv.Itoa(allocated)); err != nil {
		return fmt.Errorf("write allocated connections: %w", err)
	}
	return nil
}
