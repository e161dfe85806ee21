package registry

// The start-up repairs of the records' derived keys: they run once, before
// the API serves, and make the name index and the allocation counters
// match the records whatever wrote them (an older version, or a writer
// around the Store).

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/quota"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// maxTxnOps stays under etcd's default limit of operations per transaction.
const maxTxnOps = 100

// retiredProjectIndexPrefix held one key per entry by project
// (<prefix><project>/<id>). Nothing reads it any more: the lists answer
// from the replica's Mirror, so its keys are
// dropped at start rather than left behind when their entries go.
const retiredProjectIndexPrefix = "/ecp/project-clusters/"

// DropProjectIndex deletes the keys of the retired project index and
// returns how many there were. It runs once at start.
func (st *Store) DropProjectIndex(ctx context.Context) (int64, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := st.cli.Delete(ctx, retiredProjectIndexPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("drop the retired project index: %w", err)
	}
	return resp.Deleted, nil
}

// ReindexNames gives every name in use a key in the name index, held by the
// entry that holds it already or else by the oldest entry with that name,
// and drops keys no entry's name matches. It runs once at start, after
// which every write keeps the index. Entries that shared a name before the
// index existed keep working; only new duplicates are refused. Each fix
// applies only if the key and its holder's spec did not change since the
// snapshot.
func (st *Store) ReindexNames(ctx context.Context) (added, removed int, err error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	snap, err := st.cli.Txn(ctx).Then(
		clientv3.OpGet(Prefix, clientv3.WithPrefix()),
		clientv3.OpGet(NameIndexPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, 0, fmt.Errorf("read specs and name index: %w", err)
	}
	rev := snap.Header.Revision
	var specs []Spec
	byID := map[string]Spec{}
	for _, item := range snap.Responses[0].GetResponseRange().Kvs {
		s, err := Decode(item.Value)
		if err != nil {
			return 0, 0, err
		}
		specs = append(specs, s)
		byID[s.ID] = s
	}
	have := map[string]string{} // name key -> holder id
	for _, item := range snap.Responses[1].GetResponseRange().Kvs {
		have[string(item.Key)] = string(item.Value)
	}
	want := map[string]string{}
	for k, id := range have {
		if s, ok := byID[id]; ok && NameKey(s.Project, s.Name) == k {
			want[k] = id
		}
	}
	slices.SortFunc(specs, func(a, b Spec) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	for _, s := range specs {
		if k := NameKey(s.Project, s.Name); want[k] == "" {
			want[k] = s.ID
		}
	}
	unchanged := func(key string) clientv3.Cmp {
		return clientv3.Compare(clientv3.ModRevision(key), "<", rev+1)
	}
	for k, id := range have {
		if _, ok := want[k]; ok {
			continue
		}
		resp, err := st.cli.Txn(ctx).If(unchanged(k), unchanged(Key(id))).Then(clientv3.OpDelete(k)).Commit()
		if err != nil {
			return added, removed, fmt.Errorf("drop stale name key: %w", err)
		}
		if resp.Succeeded {
			removed++
		}
	}
	for k, id := range want {
		if have[k] == id {
			continue
		}
		resp, err := st.cli.Txn(ctx).If(unchanged(k), unchanged(Key(id))).Then(clientv3.OpPut(k, id)).Commit()
		if err != nil {
			return added, removed, fmt.Errorf("add name key: %w", err)
		}
		if resp.Succeeded {
			added++
		}
	}
	return added, removed, nil
}

// Recount sets the allocation counters (the licence's, every
// organization's and every project's) to the sums of the specs, and
// returns how many it changed. It runs at start, before the API serves:
// counters of a deployment that predates them are filled in, and any drift
// (specs written around the Store) is repaired. Its writes apply only if
// no allocation changed since it read the specs (every change writes
// quota.AllocatedKey); otherwise it reads again.
func (st *Store) Recount(ctx context.Context) (int, error) {
	for range 10 {
		changed, done, err := st.recount(ctx)
		if err != nil || done {
			return changed, err
		}
	}
	return 0, fmt.Errorf("recount connection allocations: allocations kept changing; try again")
}

func (st *Store) recount(ctx context.Context) (changed int, done bool, err error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	snap, err := st.cli.Txn(ctx).Then(
		clientv3.OpGet(Prefix, clientv3.WithPrefix()),
		clientv3.OpGet(tenancy.ProjectsPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(quota.ProjectAllocatedPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(quota.OrgAllocatedPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(quota.AllocatedKey),
	).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("read specs and allocation counters: %w", err)
	}
	orgOf := map[string]string{}
	for _, item := range snap.Responses[1].GetResponseRange().Kvs {
		var p tenancy.Project
		if err := json.Unmarshal(item.Value, &p); err != nil {
			return 0, false, fmt.Errorf("decode %s: %w", item.Key, err)
		}
		orgOf[p.ID] = p.Org
	}
	want := map[string]int{}
	total := 0
	for _, item := range snap.Responses[0].GetResponseRange().Kvs {
		s, err := Decode(item.Value)
		if err != nil {
			return 0, false, err
		}
		total += s.MaxConnections
		want[quota.ProjectAllocatedPrefix+s.Project] += s.MaxConnections
		if org := orgOf[s.Project]; org != "" {
			want[quota.OrgAllocatedPrefix+org] += s.MaxConnections
		}
	}
	have := map[string]string{}
	for _, r := range snap.Responses[2:] {
		for _, item := range r.GetResponseRange().Kvs {
			have[string(item.Key)] = string(item.Value)
		}
	}
	var ops []clientv3.Op
	for k, n := range want {
		if n > 0 && have[k] != strconv.Itoa(n) {
			ops = append(ops, clientv3.OpPut(k, strconv.Itoa(n)))
		}
	}
	for k := range have {
		if k != quota.AllocatedKey && want[k] <= 0 {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	// quota.AllocatedKey goes last: writing it changes the revision every chunk
	// compares.
	if have[quota.AllocatedKey] != strconv.Itoa(total) && (total != 0 || have[quota.AllocatedKey] != "") {
		ops = append(ops, clientv3.OpPut(quota.AllocatedKey, strconv.Itoa(total)))
	}
	var allocRev int64
	if kvs := snap.Responses[4].GetResponseRange().Kvs; len(kvs) == 1 {
		allocRev = kvs[0].ModRevision
	}
	unchanged := clientv3.Compare(clientv3.ModRevision(quota.AllocatedKey), "=", allocRev)
	for start := 0; start < len(ops); start += maxTxnOps - 1 {
		chunk := ops[start:min(start+maxTxnOps-1, len(ops))]
		resp, err := st.cli.Txn(ctx).If(unchanged).Then(chunk...).Commit()
		if err != nil {
			return changed, false, fmt.Errorf("write allocation counters: %w", err)
		}
		if !resp.Succeeded {
			return changed, false, nil
		}
		changed += len(chunk)
	}
	return changed, true, nil
}
