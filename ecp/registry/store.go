package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/quota"
)

// NameIndexPrefix holds one key per entry name in a project,
// NameIndexPrefix+<project>/<name>, whose value is the id of the entry that
// has the name. It changes in the same transactions as the specs, so two
// creates, renames or transfers to one name in one project serialise in etcd
// and only one wins. Entries that shared a name before the index existed
// keep it; only the oldest holds the key (see ReindexNames). The prefix
// sorts outside the range the fleet watches, which need not see it.
const NameIndexPrefix = "/ecp/cluster-names/"

// NameKey is the name index key of name in project.
func NameKey(project, name string) string { return NameIndexPrefix + project + "/" + name }

// Sentinel errors.
var (
	ErrNotFound = errors.New("registry: cluster entry not found")
	ErrExists   = errors.New("registry: cluster entry exists")
)

// NameTaken refuses a name another entry of the same project has.
type NameTaken struct {
	Name, Project string
	// Holder is the id of the entry that has the name.
	Holder string
	// Transfer names the cluster whose move into Project was refused.
	Transfer string
}

func (e *NameTaken) Error() string {
	if e.Transfer != "" {
		return fmt.Sprintf("project %s already has a cluster named %q (cluster %s): rename one of them before moving cluster %s there",
			e.Project, e.Name, e.Holder, e.Transfer)
	}
	return fmt.Sprintf("name %q is already used by cluster %s in this project; cluster names are unique within a project", e.Name, e.Holder)
}

// APIError turns a *NameTaken into a 409 naming the field name and the
// entry that has the name ("cluster"), and a quota refusal into the 422 of
// quota.APIError; other errors are returned unchanged.
func APIError(err error) error {
	var taken *NameTaken
	if errors.As(err, &taken) {
		e := httpapi.Conflict("%s", taken.Error())
		e.Code = "NameTaken"
		e.Field = "name"
		e.Details = map[string]any{"cluster": taken.Holder, "project": taken.Project}
		return e
	}
	return quota.APIError(err)
}

// Store is the one writer of the record. Every change (Create,
// SetMaxConnections, Update, Delete) is one etcd software transaction over
// the record, its name key and the allocation counters, with the licence
// and quota checks (quota.Ledger's guards) and the name check run inside
// it: every key read is compared at its read revision on commit, and the
// change is decided again on a conflict, so a decision is always taken on
// current values, whichever replica made the other change.
type Store struct {
	cli    *clientv3.Client
	ledger *quota.Ledger
	now    func() time.Time

	// txnMu serialises this replica's own transactions: they all meet on
	// quota.AllocatedKey, so running them at once would only make etcd
	// refuse all but one and the rest retry. Correctness does not rest on
	// it (other replicas are not behind it): the compares in etcd do that.
	txnMu sync.Mutex
}

// NewStore returns the writer of the records in cli, guarded by ledger.
func NewStore(cli *clientv3.Client, ledger *quota.Ledger) *Store {
	return &Store{cli: cli, ledger: ledger, now: time.Now}
}

// Licence is the licence the guards enforce.
func (s *Store) Licence() quota.Licence { return s.ledger.Licence() }

// Ledger is the quota arithmetic guarding the store's writes; readers use it
// for the usage figures the cluster page shows beside an entry's limit.
func (s *Store) Ledger() *quota.Ledger { return s.ledger }

// Create stores a new entry with spec.MaxConnections allocated from the
// licence; a *quota.Refusal when it does not fit, a *NameTaken when its
// project has the name, ErrExists when the id is taken.
func (s *Store) Create(ctx context.Context, spec Spec) error {
	return s.txn(ctx, spec.ID, func(stm concurrency.STM) error {
		if stm.Rev(Key(spec.ID)) != 0 {
			return ErrExists
		}
		if err := claimName(stm, spec, ""); err != nil {
			return err
		}
		if err := s.ledger.Allocate(stm, spec.Project, spec.MaxConnections, 0); err != nil {
			return err
		}
		return put(stm, spec)
	}, quota.Prefetch(spec.Project)...)
}

// SetMaxConnections changes one entry's allocation; a *quota.Refusal when
// n is over the ceiling or needs more than the licence, the entry's
// organization or its project has remaining.
func (s *Store) SetMaxConnections(ctx context.Context, id string, n int) (Spec, error) {
	var out Spec
	err := s.txn(ctx, id, func(stm concurrency.STM) error {
		spec, err := readSpec(stm, id)
		if err != nil {
			return err
		}
		if err := s.ledger.Allocate(stm, spec.Project, n, spec.MaxConnections); err != nil {
			return err
		}
		spec.MaxConnections = n
		spec.UpdatedAt = s.now().UTC()
		out = spec
		return put(stm, spec)
	})
	return out, err
}

// Update changes fields of an entry that do not touch its allocation
// (name, service URL, project, log collection), in a transaction so it
// never undoes a concurrent max-connections change. fn must not change
// MaxConnections. A change of project moves the entry's allocation with
// it: a *quota.Refusal when the target project or its organization has not
// that much remaining.
func (s *Store) Update(ctx context.Context, id string, fn func(*Spec) error) (Spec, error) {
	var out Spec
	err := s.txn(ctx, id, func(stm concurrency.STM) error {
		spec, err := readSpec(stm, id)
		if err != nil {
			return err
		}
		before, project, name := spec.MaxConnections, spec.Project, spec.Name
		if err := fn(&spec); err != nil {
			return err
		}
		spec.MaxConnections = before
		if spec.Project != project || spec.Name != name {
			transfer := ""
			if spec.Project != project {
				transfer = id
			}
			if err := claimName(stm, spec, transfer); err != nil {
				return err
			}
			releaseName(stm, Spec{ID: id, Project: project, Name: name})
		}
		if spec.Project != project {
			if err := s.ledger.Move(stm, id, spec.MaxConnections, project, spec.Project); err != nil {
				return err
			}
		}
		spec.UpdatedAt = s.now().UTC()
		out = spec
		return put(stm, spec)
	})
	return out, err
}

// Delete removes the entry, its name key and the keys in also (what other
// packages keep of the entry, see Registry.Delete) and returns its
// allocation to the licence, in one transaction; ErrNotFound for an entry
// that does not exist.
func (s *Store) Delete(ctx context.Context, id string, also ...string) (Spec, error) {
	var out Spec
	err := s.txn(ctx, id, func(stm concurrency.STM) error {
		spec, err := readSpec(stm, id)
		if err != nil {
			return err
		}
		if err := s.ledger.Release(stm, spec.Project, spec.MaxConnections); err != nil {
			return err
		}
		stm.Del(Key(id))
		releaseName(stm, spec)
		for _, k := range also {
			stm.Del(k)
		}
		out = spec
		return nil
	})
	return out, err
}

func put(stm concurrency.STM, spec Spec) error {
	b, err := spec.Encode()
	if err != nil {
		return err
	}
	stm.Put(Key(spec.ID), string(b))
	return nil
}

// futureRevTries bounds the runs of one transaction that a lagging etcd
// member answers "future revision" (see txn).
const futureRevTries = 5

// txn runs apply in an etcd software transaction: every key read is
// compared at its read revision on commit, and apply is run again on a
// conflict, so a decision is always taken on current values.
func (s *Store) txn(ctx context.Context, id string, apply func(concurrency.STM) error, prefetch ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 4*kv.CallTimeout)
	defer cancel()
	s.txnMu.Lock()
	defer s.txnMu.Unlock()
	attempts := 0
	var err error
	for try := 1; ; try++ {
		_, err = concurrency.NewSTM(s.cli, func(stm concurrency.STM) error {
			attempts++
			return apply(stm)
		}, concurrency.WithAbortContext(ctx),
			// The keys known up front in one read instead of one round trip
			// each.
			concurrency.WithPrefetch(append([]string{Key(id), quota.AllocatedKey}, prefetch...)...))
		// The STM reads at the revision of its first read, from whichever
		// member the client's balancer picks (serializable reads). Against
		// a cluster of several members the next read may land on one that
		// has not applied that revision yet: etcd answers "future
		// revision" and the STM gives up instead of retrying. The member
		// catches up within milliseconds, so run the transaction again.
		if !errors.Is(err, rpctypes.ErrFutureRev) || try == futureRevTries || ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(try) * 10 * time.Millisecond)
	}
	s.ledger.Retried(attempts - 1)
	var refusal *quota.Refusal
	var taken *NameTaken
	if err != nil && !errors.As(err, &refusal) && !errors.As(err, &taken) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) {
		var passthrough passError
		if errors.As(err, &passthrough) {
			return passthrough.err
		}
		return fmt.Errorf("quota transaction: %w", err)
	}
	return err
}

// Pass wraps an error returned by an Update callback so it reaches the
// caller as is (for example an *httpapi.Error).
func Pass(err error) error { return passError{err: err} }

type passError struct{ err error }

func (p passError) Error() string { return p.err.Error() }
func (p passError) Unwrap() error { return p.err }

// claimName takes spec's name in spec's project for spec.ID, or returns a
// *NameTaken naming the entry that has it (transfer, when set, is the
// cluster being moved). A key whose holder is gone or has another name by
// now is stale and taken over. Reading the key and the holder's spec in the
// transaction makes etcd refuse the commit if either changed meanwhile.
func claimName(stm concurrency.STM, spec Spec, transfer string) error {
	k := NameKey(spec.Project, spec.Name)
	if holder := stm.Get(k); holder != "" && holder != spec.ID {
		other, err := readSpec(stm, holder)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		case other.Project == spec.Project && other.Name == spec.Name:
			return &NameTaken{Name: spec.Name, Project: spec.Project, Holder: holder, Transfer: transfer}
		}
	}
	stm.Put(k, spec.ID)
	return nil
}

// releaseName drops the name key of spec's old name and project if spec
// holds it (an entry that shares a name from before the index holds none).
func releaseName(stm concurrency.STM, old Spec) {
	k := NameKey(old.Project, old.Name)
	if stm.Get(k) == old.ID {
		stm.Del(k)
	}
}

func readSpec(stm concurrency.STM, id string) (Spec, error) {
	key := Key(id)
	if stm.Rev(key) == 0 {
		return Spec{}, ErrNotFound
	}
	return Decode([]byte(stm.Get(key)))
}

// Get reads one entry's spec from etcd; ErrNotFound when there is none.
func (s *Store) Get(ctx context.Context, id string) (Spec, error) {
	var spec Spec
	_, err := kv.Get(ctx, s.cli, Key(id), &spec)
	if errors.Is(err, kv.ErrNotFound) {
		return spec, ErrNotFound
	}
	return spec, err
}

// List reads every entry's spec from etcd at once; requests read the
// Mirror instead, this is for checks of what etcd holds.
func (s *Store) List(ctx context.Context) ([]Spec, error) {
	return kv.List[Spec](ctx, s.cli, Prefix)
}
