// Package backup saves and restores what ecp keeps in etcd (`ecp backup`,
// `ecp restore`): every key under /ecp/, read at one revision, as gzip'd
// JSON lines. A key on a lease (audit records and alert history for their
// retention, login sessions, registration tokens) is saved with the time
// its lease had left, and restored on a new lease of that time, keys that
// shared a lease sharing one again. Left out are the keys of running
// replicas (presence, digests, leaderships, see replicaKey): a restored
// one would stand for a replica that is gone until its lease ran out.
//
// A logical dump rather than an etcd snapshot works the same with the
// embedded member and an external cluster, needs no etcdutl and restores
// into any empty etcd (a new cluster, another version). Secrets stay sealed
// in the dump: the restore needs the same --secrets.key-file, kept apart
// from the backup.
package backup

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Prefix is where ecp keeps everything.
const Prefix = "/ecp/"

// Format names the dump's layout in its header.
const Format = "ecp-backup/1"

// page bounds the keys read per request, and txnOps the puts per
// transaction (etcd refuses more than 128 operations by default).
const (
	page   = 1000
	txnOps = 64
)

// header is the dump's first line.
type header struct {
	Format   string    `json:"format"`
	Revision int64     `json:"revision"`
	Taken    time.Time `json:"taken"`
}

// record is one key, its value and its create revision; a key on a lease
// names it (the old ID, to group keys) and the seconds it had left.
type record struct {
	Key       string `json:"k"`
	Value     []byte `json:"v"`
	CreateRev int64  `json:"c,omitempty"`
	Lease     int64  `json:"l,omitempty"`
	TTL       int64  `json:"t,omitempty"`
}

// replicaKey reports whether key belongs to a running replica: its
// presence, its digests, or an election it campaigns in.
func replicaKey(key string) bool {
	return strings.HasPrefix(key, Prefix+"fleet/replicas/") || strings.HasPrefix(key, Prefix+"fleet/digests/") ||
		strings.Contains(strings.TrimPrefix(key, Prefix), "leader")
}

// usersPrefix holds the users. Role bindings and API tokens name their
// user's generation, the create revision of the user's key, which a
// restore cannot keep (etcd numbers revisions itself): the users are saved
// first, and a restore rewrites each userGeneration that named a saved
// user's old revision to the new one. One that named an older, deleted
// user of the same name stays void, as it was.
const usersPrefix = Prefix + "users/"

// Summary counts the keys saved or restored by their area (the path
// segment after /ecp/: users, orgs, clusters, ...).
type Summary struct {
	Revision int64
	Keys     int
	Areas    map[string]int
}

// String is "N keys (area n, ...)".
func (s Summary) String() string {
	areas := make([]string, 0, len(s.Areas))
	for a := range s.Areas {
		areas = append(areas, a)
	}
	sort.Strings(areas)
	parts := make([]string, len(areas))
	for i, a := range areas {
		parts[i] = fmt.Sprintf("%s %d", a, s.Areas[a])
	}
	return fmt.Sprintf("%d keys (%s)", s.Keys, strings.Join(parts, ", "))
}

func (s *Summary) add(key string) {
	area, _, _ := strings.Cut(strings.TrimPrefix(key, Prefix), "/")
	s.Keys++
	s.Areas[area]++
}

// Save writes every unleased key under Prefix, as of one revision, to w.
func Save(ctx context.Context, cli *clientv3.Client, w io.Writer, now time.Time) (Summary, error) {
	sum := Summary{Areas: map[string]int{}}
	zw := gzip.NewWriter(w)
	enc := json.NewEncoder(zw)
	ttls := map[int64]int64{}
	// The users first, then the rest, all at the first read's revision.
	ranges := [][2]string{
		{usersPrefix, clientv3.GetPrefixRangeEnd(usersPrefix)},
		{Prefix, usersPrefix},
		{clientv3.GetPrefixRangeEnd(usersPrefix), clientv3.GetPrefixRangeEnd(Prefix)},
	}
	for _, rg := range ranges {
		from, end := rg[0], rg[1]
		for {
			opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
			if sum.Revision != 0 {
				opts = append(opts, clientv3.WithRev(sum.Revision))
			}
			resp, err := cli.Get(ctx, from, opts...)
			if err != nil {
				return sum, fmt.Errorf("read etcd: %w", err)
			}
			if sum.Revision == 0 {
				sum.Revision = resp.Header.Revision
				if err := enc.Encode(header{Format: Format, Revision: sum.Revision, Taken: now.UTC()}); err != nil {
					return sum, fmt.Errorf("write backup: %w", err)
				}
			}
			for _, kv := range resp.Kvs {
				rec := record{Key: string(kv.Key), Value: kv.Value, CreateRev: kv.CreateRevision, Lease: kv.Lease}
				if kv.Lease != 0 {
					if replicaKey(rec.Key) {
						continue
					}
					ttl, err := leaseTTL(ctx, cli, ttls, kv.Lease)
					if err != nil {
						return sum, err
					}
					if ttl <= 0 {
						continue // expired meanwhile
					}
					rec.TTL = ttl
				}
				if err := enc.Encode(rec); err != nil {
					return sum, fmt.Errorf("write backup: %w", err)
				}
				sum.add(string(kv.Key))
			}
			if !resp.More || len(resp.Kvs) == 0 {
				break
			}
			from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		}
	}
	if err := zw.Close(); err != nil {
		return sum, fmt.Errorf("write backup: %w", err)
	}
	return sum, nil
}

// leaseTTL returns the seconds lease id has left, asking etcd once per lease.
func leaseTTL(ctx context.Context, cli *clientv3.Client, ttls map[int64]int64, id int64) (int64, error) {
	if ttl, ok := ttls[id]; ok {
		return ttl, nil
	}
	resp, err := cli.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, fmt.Errorf("read lease %x: %w", id, err)
	}
	ttls[id] = resp.TTL
	return resp.TTL, nil
}

// ErrNotEmpty is returned by Restore when etcd already holds ecp's keys.
var ErrNotEmpty = errors.New("etcd already holds ecp's state")

// Restore writes the dump read from r into etcd, which must hold nothing
// under Prefix: a restore never merges into a live state.
func Restore(ctx context.Context, cli *clientv3.Client, r io.Reader) (Summary, error) {
	sum := Summary{Areas: map[string]int{}}
	resp, err := cli.Get(ctx, Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return sum, fmt.Errorf("read etcd: %w", err)
	}
	if resp.Count > 0 {
		return sum, fmt.Errorf("%w (%d keys under %s): restore into an empty etcd (a new data dir or cluster)", ErrNotEmpty, resp.Count, Prefix)
	}
	zr, err := gzip.NewReader(r)
	if err != nil {
		return sum, fmt.Errorf("read backup: not an ecp backup: %w", err)
	}
	dec := json.NewDecoder(bufio.NewReader(zr))
	var h header
	if err := dec.Decode(&h); err != nil {
		return sum, fmt.Errorf("read backup: the first line is not an %s header: %w", Format, err)
	}
	if h.Format != Format {
		return sum, fmt.Errorf("read backup: format %q, want %s", h.Format, Format)
	}
	sum.Revision = h.Revision
	var ops []clientv3.Op
	// generations maps each user to its old and new generation.
	generations := map[string][2]int64{}
	var pending []record
	usersDone := false
	// leases maps each saved lease to the one granted in its place.
	leases := map[int64]clientv3.LeaseID{}
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("write etcd: %w", err)
		}
		// Every key of the transaction was created at its revision.
		for _, rec := range pending {
			if name, ok := strings.CutPrefix(rec.Key, usersPrefix); ok {
				generations[name] = [2]int64{rec.CreateRev, resp.Header.Revision}
			}
		}
		ops, pending = ops[:0], pending[:0]
		return nil
	}
	for {
		var rec record
		if err := dec.Decode(&rec); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return sum, fmt.Errorf("read backup after %d keys: %w", sum.Keys, err)
		}
		if !strings.HasPrefix(rec.Key, Prefix) {
			return sum, fmt.Errorf("read backup: key %q is outside %s", rec.Key, Prefix)
		}
		if !strings.HasPrefix(rec.Key, usersPrefix) {
			if !usersDone {
				// The users came first; once written, their
				// generations are known.
				if err := flush(); err != nil {
					return sum, err
				}
				usersDone = true
			}
			rec.Value = regenerate(rec.Value, generations)
		}
		var opts []clientv3.OpOption
		if rec.Lease != 0 {
			id, ok := leases[rec.Lease]
			if !ok {
				grant, err := cli.Grant(ctx, max(rec.TTL, 1))
				if err != nil {
					return sum, fmt.Errorf("grant a lease of %ds for %s: %w", rec.TTL, rec.Key, err)
				}
				id, leases[rec.Lease] = grant.ID, grant.ID
			}
			opts = append(opts, clientv3.WithLease(id))
		}
		ops = append(ops, clientv3.OpPut(rec.Key, string(rec.Value), opts...))
		pending = append(pending, rec)
		sum.add(rec.Key)
		if len(ops) == txnOps {
			if err := flush(); err != nil {
				return sum, err
			}
		}
	}
	return sum, flush()
}

// regenerate rewrites the userGeneration of a role binding or API token
// (any JSON object with username and userGeneration) from the user's old
// generation to its new one; any other value is returned as it is.
func regenerate(value []byte, generations map[string][2]int64) []byte {
	if !bytes.Contains(value, []byte(`"userGeneration"`)) {
		return value
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(value, &obj) != nil {
		return value
	}
	var name string
	var gen int64
	if json.Unmarshal(obj["username"], &name) != nil || json.Unmarshal(obj["userGeneration"], &gen) != nil {
		return value
	}
	g, ok := generations[name]
	if !ok || g[0] != gen {
		return value
	}
	obj["userGeneration"] = json.RawMessage(strconv.FormatInt(g[1], 10))
	out, err := json.Marshal(obj)
	if err != nil {
		return value
	}
	return out
}
