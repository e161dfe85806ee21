package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
)

// One EMQX cluster, one entry, one agent. An agent says which cluster it is
// on (agentproto.ClusterIdentity: the cluster name and its node names, at
// registration and in every report); fleet keeps one key per (cluster
// name, node name) pair,
//
//	/ecp/fleet/identity/<sha256(name NUL node)>   {clusterId, bindRev}
//
// so that two identities sharing the name and any node collide on a key:
// a node added to or removed from the cluster leaves the other keys in
// place, and a node that joins a second managed cluster is caught.
//
// A key is held by the binding it names (bindRev zero: the binding made in
// the transaction that wrote the key, whose revision is its mod revision).
// A key whose binding ended (unregister, re-registration, deletion) holds
// nothing: every claim checks the holder's agent key in the same etcd
// transaction, so a key is released the moment its binding ends, with no
// clean-up that could be lost; the next binding that reports the pair
// takes the key over. Ending a binding still deletes its keys, as garbage
// collection (releaseIdentity), each guarded by its mod revision so that a
// key a new binding took meanwhile stays.
//
// Registration creates the keys in the transaction that binds the agent,
// each compared to what was read (absent, or held by an ended binding), so
// of two registrations racing for one cluster exactly one is bound; the
// other gets 409 ClusterAlreadyManaged and keeps its token. A report whose
// identity this replica has not checked for the binding (the first after a
// start, a node added) is checked the same way and claims what no live
// binding holds. If another live binding holds any pair (bound before this
// check existed, or a node joined later), the reporting entry is the later
// one: it turns abnormal with ClusterManagedElsewhere and its agent is told
// to hold (write nothing to EMQX) until the other binding ends. Its reports
// are checked again each time, so it recovers by itself.

// identityPrefix + sha256 of one (cluster name, node name) pair.
const identityPrefix = Prefix + "identity/"

// Limits on a reported identity. Node names are Erlang atoms, at most
// 255 characters; EMQX clusters have tens of nodes, not hundreds.
const (
	maxIdentityNodes = 256
	maxIdentityField = 255
)

// identities keeps "one EMQX cluster, one entry": it claims, checks and
// releases the identity keys and follows who holds each (memory's
// idHolders, under memory's lock).
type identities struct {
	*memory
	cli         *clientv3.Client
	etcdTimeout time.Duration
	// projectName names a project in a refusal (Options.ProjectName).
	projectName func(ctx context.Context, id string) (string, error)
	etcdWrites  *prometheus.CounterVec
}

// identityRecord is the value at an identity key.
type identityRecord struct {
	ClusterID string `json:"clusterId"`
	// BindRev is the binding that holds the key; zero when the key was
	// written with the binding (registration), whose revision is then the
	// key's mod revision.
	BindRev int64 `json:"bindRev,omitempty"`
}

// identityKeys returns the sorted keys of an identity, none when it is
// incomplete (an agent that could not read the name or the nodes).
func identityKeys(name string, nodes []string) []string {
	if name == "" {
		return nil
	}
	keys := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n == "" {
			continue
		}
		sum := sha256.Sum256([]byte(name + "\x00" + n))
		keys = append(keys, identityPrefix+hex.EncodeToString(sum[:]))
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// validateIdentity bounds what an agent says about its cluster; field
// names the JSON field of the name, nodesField that of the node list.
func validateIdentity(field, nodesField, name string, nodes []string) error {
	if len(name) > maxIdentityField {
		return httpapi.Invalid(field, "%s must be at most %d bytes", field, maxIdentityField)
	}
	if len(nodes) > maxIdentityNodes {
		return httpapi.Invalid(nodesField, "%s must list at most %d nodes", nodesField, maxIdentityNodes)
	}
	for _, n := range nodes {
		if len(n) > maxIdentityField {
			return httpapi.Invalid(nodesField, "each of %s must be at most %d bytes", nodesField, maxIdentityField)
		}
	}
	return nil
}

// identityHolder is what one identity key says, read from etcd.
type identityHolder struct {
	key       string
	exists    bool
	modRev    int64
	clusterID string
	bindRev   int64
	// live: the binding it names is still bound.
	live bool
}

// readHolders reads the identity keys and then the agent keys of the
// clusters they name, to tell live holders from ended ones. The claim that
// follows compares both, so the two reads need not share a revision.
func (ix *identities) readHolders(ctx context.Context, keys []string) ([]identityHolder, error) {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpGet(k)
	}
	resp, err := ix.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read cluster identity: %w", err)
	}
	hs := make([]identityHolder, len(keys))
	var ids []string
	for i, k := range keys {
		hs[i].key = k
		rr := resp.Responses[i].GetResponseRange()
		if rr == nil || len(rr.Kvs) == 0 {
			continue
		}
		p := rr.Kvs[0]
		rec, err := decode[identityRecord](p.Value)
		if err != nil {
			// Unreadable: treat as held by nobody, and overwrite it.
			hs[i].exists, hs[i].modRev = true, p.ModRevision
			continue
		}
		bind := rec.BindRev
		if bind == 0 {
			bind = p.ModRevision
		}
		hs[i] = identityHolder{key: k, exists: true, modRev: p.ModRevision, clusterID: rec.ClusterID, bindRev: bind}
		if !slices.Contains(ids, rec.ClusterID) {
			ids = append(ids, rec.ClusterID)
		}
	}
	if len(ids) == 0 {
		return hs, nil
	}
	ops = ops[:0]
	for _, id := range ids {
		ops = append(ops, clientv3.OpGet(agentKey(id), clientv3.WithKeysOnly()))
	}
	resp, err = ix.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("read holders of cluster identity: %w", err)
	}
	bound := map[string]int64{}
	for i, id := range ids {
		if rr := resp.Responses[i].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
			bound[id] = rr.Kvs[0].CreateRevision
		}
	}
	for i := range hs {
		if hs[i].clusterID != "" {
			hs[i].live = bound[hs[i].clusterID] == hs[i].bindRev
		}
	}
	return hs, nil
}

// claimCmps hold while a key read as free stays so: still absent, or
// unchanged and its binding still ended; or, for a key a younger binding
// holds, unchanged.
func (h identityHolder) claimCmps() []clientv3.Cmp {
	if !h.exists {
		return []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(h.key), "=", 0)}
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(h.key), "=", h.modRev)}
	if h.clusterID != "" && !h.live {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(agentKey(h.clusterID)), "!=", h.bindRev))
	}
	return cmps
}

// mine says whether the key is held by the binding (clusterID, bindRev).
func (h identityHolder) mine(clusterID string, bindRev int64) bool {
	return h.live && h.clusterID == clusterID && h.bindRev == bindRev
}

// heldElsewhere returns a live holder older than the binding (clusterID,
// bindRev): the binding made first keeps the cluster, so of two that share
// it the later one is refused or held, whichever reports first. bindRev
// zero is a registration, younger than every binding.
func heldElsewhere(hs []identityHolder, clusterID string, bindRev int64) (identityHolder, bool) {
	for _, h := range hs {
		if h.live && !h.mine(clusterID, bindRev) && (bindRev == 0 || h.bindRev < bindRev) {
			return h, true
		}
	}
	return identityHolder{}, false
}

// describeIdentity names the cluster the agent reported, in its own words.
func describeIdentity(name string, nodes []string) string {
	n := ""
	if len(nodes) > 0 {
		n = ", node " + nodes[0]
		if len(nodes) > 1 {
			n = fmt.Sprintf(", nodes %s and %d more", nodes[0], len(nodes)-1)
		}
	}
	return fmt.Sprintf("this EMQX cluster (cluster name %q%s)", name, n)
}

// managedElsewhereMessage says which entry holds the cluster, to a user of
// the entry with id: the holder is named only when it is in the same
// project, since no tenant may learn another's names.
func (ix *identities) managedElsewhereMessage(ctx context.Context, id, holderID, what string) string {
	const fix = "; one EMQX cluster is managed by one entry. If it is a different cluster, give it its own cluster name (cluster.name in emqx.conf)"
	// Read from etcd, not memory: a refusal is rare, and an entry created
	// a moment ago on another replica must not read as another project.
	var project, holderName string
	same := false
	cctx, cancel := context.WithTimeout(ctx, ix.etcdTimeout)
	resp, err := ix.cli.Txn(cctx).Then(clientv3.OpGet(registry.Key(id)), clientv3.OpGet(registry.Key(holderID))).Commit()
	cancel()
	if err == nil {
		specs := make([]registry.Spec, 2)
		ok := true
		for i := range specs {
			rr := resp.Responses[i].GetResponseRange()
			if rr == nil || len(rr.Kvs) == 0 {
				ok = false
				break
			}
			if specs[i], err = registry.Decode(rr.Kvs[0].Value); err != nil {
				ok = false
				break
			}
		}
		if ok && specs[0].Project != "" && specs[0].Project == specs[1].Project {
			same, project, holderName = true, specs[0].Project, specs[1].Name
		}
	}
	if !same {
		return what + " is already managed by an entry in another project; ask a system admin to unregister or delete that entry first" + fix
	}
	projectName := project
	if ix.projectName != nil {
		if n, err := ix.projectName(ctx, project); err == nil && n != "" {
			projectName = n
		}
	}
	return fmt.Sprintf("%s is already managed by cluster %q (id %s) in project %q; unregister its agent or delete that entry first%s",
		what, holderName, holderID, projectName, fix)
}

// clusterAlreadyManaged is the 409 a registration gets.
func clusterAlreadyManaged(msg string) error {
	return &httpapi.Error{Status: http.StatusConflict, Code: agentproto.CodeClusterAlreadyManaged, Message: msg}
}

// checkedAsReported says whether the identity last checked (idChecked)
// was for binding bindRev and the same cluster name and node names, in the
// same order, as em: it has the same fingerprint.
func (e *entry) checkedAsReported(bindRev int64, em *agentproto.EMQXStatus) bool {
	if e.idBindRev != bindRev || e.idName != em.ClusterName || len(e.idNodes) != len(em.Nodes) {
		return false
	}
	for i, n := range em.Nodes {
		if e.idNodes[i] != n.Name {
			return false
		}
	}
	return true
}

// heldBy is the outcome of checking a reported identity: whether it was
// checked (not when the report says nothing about identity), the cluster
// that holds it (empty: this binding does) and what to tell the operator.
// A value, not a pointer: it is made on every report.
type heldBy struct {
	Checked   bool
	ClusterID string
	Message   string
}

// applyIdentityLocked follows the identity keys through the shared watch:
// when a key moves away from a cluster, that cluster's next report checks
// its identity again (so a younger binding learns that an older one took
// the cluster). Callers hold memory's lock.
func (ix *identities) applyIdentityLocked(k kv) {
	holder := ""
	if !k.deleted {
		if rec, err := decode[identityRecord](k.value); err == nil {
			holder = rec.ClusterID
		}
	}
	prev, ok := ix.idHolders[k.key]
	if ok && k.modRev <= prev.modRev {
		return
	}
	if ok && prev.clusterID != holder {
		if e := ix.entries[prev.clusterID]; e != nil {
			e.idChecked = ""
		}
	}
	if holder == "" {
		delete(ix.idHolders, k.key)
	} else {
		ix.idHolders[k.key] = idHolder{clusterID: holder, modRev: k.modRev}
	}
}

// idHolder is the mirror of one identity key.
type idHolder struct {
	clusterID string
	modRev    int64
}

// releaseIdentity deletes the identity keys memory knows to name the
// cluster, after its binding ended. It is garbage collection only (a key of
// an ended binding holds nothing), so it is best effort: a key changed since
// memory saw it is left alone.
func (ix *identities) releaseIdentity(ctx context.Context, clusterID string) {
	ix.mu.Lock()
	var ops []clientv3.Op
	var cmps []clientv3.Cmp
	for key, h := range ix.idHolders {
		if h.clusterID == clusterID {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", h.modRev))
			ops = append(ops, clientv3.OpDelete(key))
		}
	}
	ix.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, ix.etcdTimeout)
	defer cancel()
	// One transaction per key: one key taken over must not keep the rest.
	for i := range ops {
		if _, err := ix.cli.Txn(cctx).If(cmps[i]).Then(ops[i]).Commit(); err != nil {
			ix.logger.Debug("could not release a cluster identity key; it holds nothing and stays until taken over", "cluster", clusterID, "err", err)
			return
		}
	}
}

// identityFingerprint names one identity checked for one binding.
func identityFingerprint(bindRev int64, keys []string) string {
	return fmt.Sprint(bindRev) + ":" + strings.Join(keys, ",")
}

// checkReportedIdentity checks the identity a report carries for the
// binding p and claims the keys no live binding holds. It touches etcd only
// when this replica has not checked this identity for this binding, or
// when it was held elsewhere last time. Its outcome is not Checked when
// the report says nothing about identity.
func (ix *identities) checkReportedIdentity(ctx context.Context, p principal, em *agentproto.EMQXStatus) (heldBy, error) {
	if !em.Reachable {
		return heldBy{}, nil
	}
	ix.mu.Lock()
	if e := ix.entries[p.clusterID]; e != nil && e.idChecked != "" && e.idHeldBy == "" && e.checkedAsReported(p.bindRev, em) {
		ix.mu.Unlock()
		return heldBy{Checked: true}, nil
	}
	ix.mu.Unlock()
	nodes := make([]string, len(em.Nodes))
	for i, n := range em.Nodes {
		nodes[i] = n.Name
	}
	keys := identityKeys(em.ClusterName, nodes)
	if len(keys) == 0 {
		return heldBy{}, nil
	}
	fp := identityFingerprint(p.bindRev, keys)
	ix.mu.Lock()
	e := ix.entries[p.clusterID]
	if e != nil && e.idChecked == fp && e.idHeldBy == "" {
		ix.mu.Unlock()
		return heldBy{Checked: true}, nil
	}
	ix.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, ix.etcdTimeout)
	defer cancel()
	for range maxCASAttempts {
		hs, err := ix.readHolders(cctx, keys)
		if err != nil {
			return heldBy{}, err
		}
		if h, ok := heldElsewhere(hs, p.clusterID, p.bindRev); ok {
			out := heldBy{Checked: true, ClusterID: h.clusterID, Message: ix.managedElsewhereMessage(ctx, p.clusterID, h.clusterID,
				describeIdentity(em.ClusterName, nodes)) + ". Until then this entry's agent does not enforce max connections on it."}
			ix.mu.Lock()
			if e := ix.entries[p.clusterID]; e != nil {
				e.idChecked, e.idHeldBy = fp, h.clusterID
				e.idBindRev, e.idName, e.idNodes = p.bindRev, em.ClusterName, nodes
			}
			ix.mu.Unlock()
			return out, nil
		}
		cmps := []clientv3.Cmp{bindCmp(p.clusterID, p.bindRev)}
		var puts []clientv3.Op
		val, err := encode(identityRecord{ClusterID: p.clusterID, BindRev: p.bindRev})
		if err != nil {
			return heldBy{}, err
		}
		for _, h := range hs {
			if h.mine(p.clusterID, p.bindRev) {
				continue
			}
			// Free, or held by a younger binding, which the watch then
			// tells to check again (applyIdentityLocked).
			cmps = append(cmps, h.claimCmps()...)
			puts = append(puts, clientv3.OpPut(h.key, val))
		}
		if len(puts) > 0 {
			resp, err := ix.cli.Txn(cctx).If(cmps...).Then(puts...).Else(clientv3.OpGet(agentKey(p.clusterID), clientv3.WithKeysOnly())).Commit()
			if err != nil {
				return heldBy{}, fmt.Errorf("claim identity of cluster %s: %w", p.clusterID, err)
			}
			if !resp.Succeeded {
				if rr := resp.Responses[0].GetResponseRange(); rr == nil || len(rr.Kvs) == 0 || rr.Kvs[0].CreateRevision != p.bindRev {
					return heldBy{}, errNotBound
				}
				continue // Someone claimed or released a key meanwhile: read again.
			}
			ix.etcdWrites.WithLabelValues("identity").Inc()
			ix.mu.Lock()
			for _, op := range puts {
				ix.applyIdentityLocked(kv{key: string(op.KeyBytes()), value: []byte(val), modRev: resp.Header.Revision})
			}
			ix.mu.Unlock()
		}
		ix.mu.Lock()
		if e := ix.entries[p.clusterID]; e != nil {
			e.idChecked, e.idHeldBy = fp, ""
			e.idBindRev, e.idName, e.idNodes = p.bindRev, em.ClusterName, nodes
		}
		ix.mu.Unlock()
		return heldBy{Checked: true}, nil
	}
	return heldBy{}, fmt.Errorf("claim identity of cluster %s: still conflicting after %d attempts", p.clusterID, maxCASAttempts)
}
