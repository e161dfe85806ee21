// Package tenancy owns organizations, projects and role bindings, and the
// one Authorizer every ecp route asks before it acts.
//
// Roles: system-admin (everything), org-admin (every project of its
// organization), project-admin (its project), project-viewer (read its
// project).
//
// Visibility rule, applied by every route through Authorizer: a caller who
// holds no role that lets them see a resource gets 404 for it, exactly as if
// it did not exist, so ids of other tenants cannot be probed; a caller who
// can see it (viewer or better) but lacks the right for the action gets 403.
// Anonymous callers get 401 before either check.
//
// Keys it owns: /ecp/orgs/<id>, /ecp/org-names/<name>, /ecp/projects/<id>,
// /ecp/project-names/<org>/<name>, /ecp/role-bindings/<id> and the per-user
// index /ecp/user-roles/<username>/<id>.
package tenancy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/kv"
)

// Key prefixes owned by this package.
const (
	OrgsPrefix         = "/ecp/orgs/"
	OrgNamesPrefix     = "/ecp/org-names/"
	ProjectsPrefix     = "/ecp/projects/"
	ProjectNamesPrefix = "/ecp/project-names/"
	BindingsPrefix     = "/ecp/role-bindings/"
	UserRolesPrefix    = "/ecp/user-roles/"
)

// Roles a binding can grant.
const (
	RoleSystemAdmin   = "system-admin"
	RoleOrgAdmin      = "org-admin"
	RoleProjectAdmin  = "project-admin"
	RoleProjectViewer = "project-viewer"
)

// Sentinel errors.
var (
	ErrExists   = errors.New("tenancy: already exists")
	ErrNotFound = errors.New("tenancy: not found")
)

// Org is an organization.
type Org struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// Project belongs to one organization and holds managed clusters.
type Project struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Org       string    `json:"org"`
	CreatedAt time.Time `json:"createdAt"`
}

// Binding grants a user a role. Org is set for org-admin and, derived from
// the project, for project roles; Project for project roles.
type Binding struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Org       string    `json:"org,omitempty"`
	Project   string    `json:"project,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// UserGeneration is the generation of the user it was granted to (see
	// package auth): Access honours it only for that user, so a grant
	// racing the user's deletion gives nothing to a later user of the
	// name. 0 for bindings stored before generations were recorded.
	UserGeneration int64 `json:"userGeneration,omitempty"`
}

// BindingID is derived from the binding's content, so granting the same
// role twice is a conflict rather than a duplicate, and a binding can be
// deleted by its content as well as by id.
func BindingID(username, role, org, project string) string {
	h := sha256.Sum256([]byte(username + "\x00" + role + "\x00" + org + "\x00" + project))
	return hex.EncodeToString(h[:8])
}

// Store keeps tenancy records in etcd.
type Store struct {
	cli *clientv3.Client
	now func() time.Time
	// view is this replica's copy of the records (RunMirror).
	view *view
}

// NewStore returns a Store on cli.
func NewStore(cli *clientv3.Client) *Store {
	return &Store{cli: cli, now: time.Now, view: newView(cli)}
}

// RunMirror follows organizations, projects and role bindings into this
// replica's memory until ctx ends; once they have loaded, the Authorizer
// answers from memory (see view).
func (s *Store) RunMirror(ctx context.Context, logger *slog.Logger) {
	s.view.run(ctx, logger)
}

// wrote makes this replica's copy show a write Store just made, key k of
// table t, before the write returns (read-your-writes).
func (s *Store) wrote(ctx context.Context, t *kv.Table, k string) error {
	if !s.view.running.Load() {
		return nil
	}
	return t.Refresh(ctx, s.cli, k)
}

// CreateOrg stores a new organization; ErrExists when the name is taken.
func (s *Store) CreateOrg(ctx context.Context, name string) (Org, error) {
	o := Org{ID: kv.NewID(), Name: name, CreatedAt: s.now().UTC()}
	val, err := kv.Encode(OrgsPrefix+o.ID, o)
	if err != nil {
		return Org{}, err
	}
	// The name index and the record are written in one transaction, so two
	// replicas creating the same name at once cannot both win.
	ok, err := kv.Create(ctx, s.cli, OrgNamesPrefix+name, o.ID, clientv3.OpPut(OrgsPrefix+o.ID, val))
	if err != nil {
		return Org{}, err
	}
	if !ok {
		return Org{}, ErrExists
	}
	return o, s.wrote(ctx, s.view.orgs, o.ID)
}

// GetOrg returns an organization; ErrNotFound when absent.
func (s *Store) GetOrg(ctx context.Context, id string) (Org, error) {
	var o Org
	if !kv.ValidID(id) {
		return o, ErrNotFound
	}
	_, err := kv.Get(ctx, s.cli, OrgsPrefix+id, &o)
	if errors.Is(err, kv.ErrNotFound) {
		return o, ErrNotFound
	}
	return o, err
}

// ListOrgs returns every organization.
func (s *Store) ListOrgs(ctx context.Context) ([]Org, error) {
	return kv.List[Org](ctx, s.cli, OrgsPrefix)
}

// CreateProject stores a new project in org; ErrExists when the org already
// has a project of that name.
func (s *Store) CreateProject(ctx context.Context, org, name string) (Project, error) {
	p := Project{ID: kv.NewID(), Name: name, Org: org, CreatedAt: s.now().UTC()}
	val, err := kv.Encode(ProjectsPrefix+p.ID, p)
	if err != nil {
		return Project{}, err
	}
	ok, err := kv.Create(ctx, s.cli, ProjectNamesPrefix+org+"/"+name, p.ID, clientv3.OpPut(ProjectsPrefix+p.ID, val))
	if err != nil {
		return Project{}, err
	}
	if !ok {
		return Project{}, ErrExists
	}
	return p, s.wrote(ctx, s.view.projects, p.ID)
}

// GetProject returns a project; ErrNotFound when absent.
func (s *Store) GetProject(ctx context.Context, id string) (Project, error) {
	var p Project
	if !kv.ValidID(id) {
		return p, ErrNotFound
	}
	_, err := kv.Get(ctx, s.cli, ProjectsPrefix+id, &p)
	if errors.Is(err, kv.ErrNotFound) {
		return p, ErrNotFound
	}
	return p, err
}

// ListProjects returns every project.
func (s *Store) ListProjects(ctx context.Context) ([]Project, error) {
	return kv.List[Project](ctx, s.cli, ProjectsPrefix)
}

// ErrUserGone says the user generation a binding was for no longer exists.
var ErrUserGone = errors.New("tenancy: user no longer exists")

// CreateBinding stores b (its ID derived from its content); ErrExists when
// the same grant exists. When b.UserGeneration is set, only while that user
// generation exists (ErrUserGone otherwise), in the same transaction: a
// grant cannot outlive a deletion it raced.
func (s *Store) CreateBinding(ctx context.Context, b Binding) (Binding, error) {
	b.ID = BindingID(b.Username, b.Role, b.Org, b.Project)
	b.CreatedAt = s.now().UTC()
	key := BindingsPrefix + b.ID
	val, err := kv.Encode(key, b)
	if err != nil {
		return Binding{}, err
	}
	exists := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	if b.UserGeneration != 0 {
		exists = append(exists, clientv3.Compare(clientv3.CreateRevision(auth.UsersPrefix+b.Username), "=", b.UserGeneration))
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(exists...).
		Then(clientv3.OpPut(key, val), clientv3.OpPut(UserRolesPrefix+b.Username+"/"+b.ID, val)).
		Else(clientv3.OpGet(key, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return Binding{}, fmt.Errorf("create role binding: %w", err)
	}
	switch {
	case resp.Succeeded:
		return b, s.wrote(ctx, s.view.bindings, b.Username+"/"+b.ID)
	case resp.Responses[0].GetResponseRange().Count > 0:
		return Binding{}, ErrExists
	}
	return Binding{}, ErrUserGone
}

// GetBinding returns a binding; ErrNotFound when absent.
func (s *Store) GetBinding(ctx context.Context, id string) (Binding, error) {
	var b Binding
	if !kv.ValidID(id) {
		return b, ErrNotFound
	}
	_, err := kv.Get(ctx, s.cli, BindingsPrefix+id, &b)
	if errors.Is(err, kv.ErrNotFound) {
		return b, ErrNotFound
	}
	return b, err
}

// DeleteBinding removes b and its index entry.
func (s *Store) DeleteBinding(ctx context.Context, b Binding) error {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpDelete(BindingsPrefix+b.ID),
		clientv3.OpDelete(UserRolesPrefix+b.Username+"/"+b.ID),
	).Commit()
	if err != nil {
		return fmt.Errorf("delete role binding %s: %w", b.ID, err)
	}
	if resp.Responses[0].GetResponseDeleteRange().Deleted == 0 {
		return ErrNotFound
	}
	return s.wrote(ctx, s.view.bindings, b.Username+"/"+b.ID)
}

// ListBindings returns every binding.
func (s *Store) ListBindings(ctx context.Context) ([]Binding, error) {
	return kv.List[Binding](ctx, s.cli, BindingsPrefix)
}

// UserBindings returns the bindings of one user, through the per-user index
// (one range read per request, whatever the number of users).
func (s *Store) UserBindings(ctx context.Context, username string) ([]Binding, error) {
	return kv.List[Binding](ctx, s.cli, UserRolesPrefix+username+"/")
}

// ErrLastSystemAdmin says the binding is the last system-admin binding.
var ErrLastSystemAdmin = errors.New("tenancy: last system-admin binding")

// DeleteBindingKeepingAdmin deletes b like DeleteBinding, but a
// system-admin binding only while another one exists. The check and the
// delete are one transaction conditioned on the other admin bindings, so
// two admins revoking each other at once cannot leave none.
func (s *Store) DeleteBindingKeepingAdmin(ctx context.Context, b Binding) error {
	if b.Role != RoleSystemAdmin {
		return s.DeleteBinding(ctx, b)
	}
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	for range 10 {
		resp, err := s.cli.Get(ctx, BindingsPrefix, clientv3.WithPrefix())
		if err != nil {
			return fmt.Errorf("list role bindings: %w", err)
		}
		var others []clientv3.Cmp
		for _, item := range resp.Kvs {
			var x Binding
			if err := json.Unmarshal(item.Value, &x); err != nil {
				return fmt.Errorf("decode %s: %w", item.Key, err)
			}
			if x.Role == RoleSystemAdmin && x.ID != b.ID {
				others = append(others, clientv3.Compare(clientv3.CreateRevision(string(item.Key)), "=", item.CreateRevision))
			}
		}
		if len(others) == 0 {
			return ErrLastSystemAdmin
		}
		txn, err := s.cli.Txn(ctx).If(others...).Then(
			clientv3.OpDelete(BindingsPrefix+b.ID),
			clientv3.OpDelete(UserRolesPrefix+b.Username+"/"+b.ID),
		).Commit()
		if err != nil {
			return fmt.Errorf("delete role binding %s: %w", b.ID, err)
		}
		if txn.Succeeded {
			if txn.Responses[0].GetResponseDeleteRange().Deleted == 0 {
				return ErrNotFound
			}
			return s.wrote(ctx, s.view.bindings, b.Username+"/"+b.ID)
		}
	}
	return fmt.Errorf("delete role binding %s: system-admin bindings kept changing; try again", b.ID)
}
