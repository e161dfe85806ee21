package destpolicy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// Key is the etcd key of the system admin's rules (stored).
const Key = "/ecp/system/notification-policy"

// Path is the API route, relative to /api/v1.
const Path = "/system/notification-policy"

// stored is the record at Key.
type stored struct {
	Rules
	UpdatedAt time.Time `json:"updatedAt"`
	UpdatedBy string    `json:"updatedBy"`
}

// Reply is GET/PUT's reply: the rules, who set them, and the dependencies
// refused whatever the rules say.
type Reply struct {
	Rules
	UpdatedAt    *time.Time   `json:"updatedAt"`
	UpdatedBy    string       `json:"updatedBy,omitempty"`
	Dependencies []Dependency `json:"dependencies"`
}

// Store keeps the rules in etcd, serves them to system admins and builds
// Checkers from them. Every decision reads the rules afresh, so a change
// made through any replica applies at once.
type Store struct {
	cli   *clientv3.Client
	authz *tenancy.Authorizer
	opts  Options
	now   func() time.Time
}

// NewStore returns a Store; opts are handed to every Checker.
func NewStore(cli *clientv3.Client, authz *tenancy.Authorizer, opts Options) *Store {
	return &Store{cli: cli, authz: authz, opts: opts, now: time.Now}
}

// Load returns a Checker for the rules in force now.
func (s *Store) Load(ctx context.Context) (*Checker, error) {
	st, err := s.read(ctx)
	if err != nil {
		return nil, err
	}
	return New(st.Rules, s.opts)
}

func (s *Store) read(ctx context.Context) (stored, error) {
	var st stored
	_, err := kv.Get(ctx, s.cli, Key, &st)
	if err != nil && !errors.Is(err, kv.ErrNotFound) {
		return stored{}, fmt.Errorf("read notification policy: %w", err)
	}
	return st, nil
}

// Register mounts GET and PUT Path on api (the /api/v1 router).
func (s *Store) Register(api *mux.Router, a *httpapi.Adapter) {
	api.Handle(Path, a.Handle(s.get)).Methods(http.MethodGet)
	api.Handle(Path, a.Handle(s.put)).Methods(http.MethodPut)
}

func systemAdmin(ac *tenancy.Access) error {
	if !ac.System {
		return httpapi.Forbidden("only a system admin may read or change the notification policy")
	}
	return nil
}

// Policy is the notification policy as a system admin reads it (GET
// Path); the console calls it too.
func (s *Store) Policy(ctx context.Context, ac *tenancy.Access) (Reply, error) {
	if err := systemAdmin(ac); err != nil {
		return Reply{}, err
	}
	st, err := s.read(ctx)
	if err != nil {
		return Reply{}, err
	}
	return s.reply(st), nil
}

// SetPolicy validates and stores a system admin's rules (PUT Path).
func (s *Store) SetPolicy(ctx context.Context, ac *tenancy.Access, in Rules) (Reply, error) {
	if err := systemAdmin(ac); err != nil {
		return Reply{}, err
	}
	audit.Annotate(ctx, audit.Note{Target: "notification-policy"})
	if err := in.Validate(); err != nil {
		return Reply{}, err
	}
	st := stored{Rules: normalise(in), UpdatedAt: s.now().UTC(), UpdatedBy: ac.Username}
	val, err := kv.Encode(Key, st)
	if err != nil {
		return Reply{}, err
	}
	pctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	if _, err := s.cli.Put(pctx, Key, val); err != nil {
		return Reply{}, fmt.Errorf("store notification policy: %w", err)
	}
	return s.reply(st), nil
}

func (s *Store) get(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	out, err := s.Policy(r.Context(), ac)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, out)
}

func (s *Store) put(w http.ResponseWriter, r *http.Request) error {
	ac, err := s.authz.Caller(r)
	if err != nil {
		return err
	}
	// A caller who is not a system admin hears 403 whatever they sent.
	if err := systemAdmin(ac); err != nil {
		return err
	}
	var in Rules
	if err := httpapi.Decode(r, &in); err != nil {
		return err
	}
	out, err := s.SetPolicy(r.Context(), ac, in)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, out)
}

func (s *Store) reply(st stored) Reply {
	out := Reply{Rules: normalise(st.Rules), UpdatedBy: st.UpdatedBy, Dependencies: []Dependency{}}
	if !st.UpdatedAt.IsZero() {
		at := st.UpdatedAt
		out.UpdatedAt = &at
	}
	if s.opts.Dependencies != nil {
		for _, d := range s.opts.Dependencies() {
			// host:port only: a URL may carry credentials or paths.
			if host, port, ok := splitEndpoint(d.Endpoint); ok {
				out.Dependencies = append(out.Dependencies, Dependency{Name: d.Name, Endpoint: fmt.Sprintf("%s:%d", host, port)})
			}
		}
	}
	return out
}

func normalise(r Rules) Rules {
	if r.AllowCIDRs == nil {
		r.AllowCIDRs = []string{}
	}
	if r.DenyCIDRs == nil {
		r.DenyCIDRs = []string{}
	}
	return r
}
