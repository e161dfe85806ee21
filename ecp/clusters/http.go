package clusters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/kv"
	"github.com/ecpio/ecp/ecp/names"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// DefaultTokenTTL is how long a registration token stays valid.
const DefaultTokenTTL = 24 * time.Hour

// Arches are the agent builds a registration guide covers, in order.
var Arches = []string{"amd64", "arm64", "arm"}

// Options configure the API.
type Options struct {
	// ExternalURL is ecp's base URL as agents reach it; the registration
	// commands are rendered with it. Required.
	ExternalURL string
	// TokenTTL is the registration token lifetime; DefaultTokenTTL when zero.
	TokenTTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Mirror is the replica's mirror of the records the lists are
	// served from (its owner runs it). Required.
	Mirror *registry.Mirror
	// Registry runs deletions (registry.Delete); when nil, one over the
	// store and the fleet with nothing else subscribed.
	Registry *registry.Registry
}

// API serves the managed-cluster routes.
type API struct {
	opts Options
	// tokenTTL is opts.TokenTTL, replaceable on reload.
	tokenTTL atomic.Int64
	authz    *tenancy.Authorizer
	store    *registry.Store
	fleet    Fleet
	logger   *slog.Logger
	// index serves the lists from memory.
	index *registry.Mirror
	// registry deletes entries (every key of them, in one place).
	registry *registry.Registry
}

// NewAPI returns the API.
func NewAPI(opts Options, authz *tenancy.Authorizer, store *registry.Store, fleet Fleet, logger *slog.Logger) (*API, error) {
	if opts.ExternalURL == "" {
		return nil, errors.New("clusters: Options.ExternalURL is required")
	}
	if opts.Mirror == nil {
		return nil, errors.New("clusters: Options.Mirror is required")
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.ExternalURL = strings.TrimRight(opts.ExternalURL, "/")
	reg := opts.Registry
	if reg == nil {
		reg = registry.New(store, opts.Mirror, logger)
		reg.SetBinder(fleet)
	}
	api := &API{opts: opts, authz: authz, store: store, fleet: fleet, logger: logger, index: opts.Mirror, registry: reg}
	api.tokenTTL.Store(int64(opts.TokenTTL))
	return api, nil
}

// refresh brings the index up to a write this replica just made, so the
// caller's next list shows it. The write is done either way: a failed read
// back is logged, and the watch delivers the write moments later.
func (api *API) refresh(ctx context.Context, id string) {
	if err := api.index.Refresh(ctx, id); err != nil {
		api.logger.Warn("cluster list may lag behind a write", "cluster", id, "err", err)
	}
}

// SetTokenTTL changes the lifetime of registration tokens issued from now on.
func (api *API) SetTokenTTL(d time.Duration) {
	if d > 0 {
		api.tokenTTL.Store(int64(d))
	}
}

// Register mounts the routes on r (the /api/v1 router).
func (api *API) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/clusters", a.Handle(api.listAll)).Methods(http.MethodGet)
	r.Handle("/projects/{project}/clusters", a.Handle(api.list)).Methods(http.MethodGet)
	r.Handle("/projects/{project}/clusters", a.Handle(api.create)).Methods(http.MethodPost)
	r.Handle("/clusters/{id}", a.Handle(api.get)).Methods(http.MethodGet)
	r.Handle("/clusters/{id}", a.Handle(withEntry(api, tenancy.Admin, http.StatusOK, api.update))).Methods(http.MethodPatch)
	r.Handle("/clusters/{id}", a.Handle(api.delete)).Methods(http.MethodDelete)
	r.Handle("/clusters/{id}/registration", a.Handle(withEntry(api, tenancy.Admin, http.StatusCreated, api.issue))).Methods(http.MethodPost)
	r.Handle("/clusters/{id}/transfer", a.Handle(withEntry(api, tenancy.Admin, http.StatusOK, api.transfer))).Methods(http.MethodPost)
	r.Handle("/clusters/{id}/max-connections", a.Handle(withEntry(api, tenancy.Admin, http.StatusOK, api.setMaxConnections))).Methods(http.MethodPut)
	r.Handle("/clusters/{id}/dashboard", a.Handle(api.dashboard)).Methods(http.MethodGet)
}

// Cluster is one entry as the API shows it: the spec merged with what the
// agent side knows. Times the agent has not told yet are null.
type Cluster struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	Project         string     `json:"project"`
	State           string     `json:"state"`
	StateReason     *Reason    `json:"stateReason"`
	ServiceURL      string     `json:"serviceUrl"`
	Version         string     `json:"version"`
	Nodes           int        `json:"nodes"`
	NodesRunning    int        `json:"nodesRunning"`
	Connections     int        `json:"connections"`
	LiveConnections int        `json:"liveConnections"`
	MaxConnections  int        `json:"maxConnections"`
	StartedAt       *time.Time `json:"startedAt"`
	ManagedSince    *time.Time `json:"managedSince"`
	LastReportAt    *time.Time `json:"lastReportAt"`
	AgentVersion    string     `json:"agentVersion,omitempty"`
	// LogCollection is what the agent is told to do: the operator's
	// switch if set, else the agent's registration choice, with the
	// directory the agent registered.
	LogCollection agentproto.LogCollection `json:"logCollection"`
	CreatedAt     time.Time                `json:"createdAt"`
	UpdatedAt     time.Time                `json:"updatedAt"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (api *API) view(ctx context.Context, s registry.Spec) (Cluster, error) {
	st, err := api.fleet.Status(ctx, s.ID)
	if err != nil {
		return Cluster{}, fmt.Errorf("read status of cluster %s: %w", s.ID, err)
	}
	return toCluster(s, st), nil
}

// toCluster merges a spec with what the agent side knows of it.
func toCluster(s registry.Spec, st Status) Cluster {
	if st.State == "" {
		st.State = StateCreated
	}
	return Cluster{
		ID: s.ID, Name: s.Name, Project: s.Project, ServiceURL: serviceURL(s, st), MaxConnections: s.MaxConnections,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
		State: st.State, StateReason: st.StateReason, Version: st.Version, Nodes: st.Nodes, NodesRunning: st.NodesRunning,
		Connections: st.Connections, LiveConnections: st.LiveConnections, AgentVersion: st.AgentVersion,
		StartedAt: timePtr(st.StartedAt), ManagedSince: timePtr(st.ManagedSince), LastReportAt: timePtr(st.LastReportAt),
		LogCollection: s.EffectiveLogCollection(st.RegisteredLogCollection),
	}
}

// serviceURL is the entry's own service URL or, when the operator set
// none, the dashboard URL its agent registered with. An agent URL that
// fails the check (stored before ecp checked them at registration) is
// neither shown nor followed.
func serviceURL(s registry.Spec, st Status) string {
	if s.ServiceURL != "" {
		return s.ServiceURL
	}
	if agentproto.CheckDashboardURL(st.DashboardURL) != nil {
		return ""
	}
	return st.DashboardURL
}

// MaxNameRunes bounds a cluster's name (EMQX ECP's own bound).
const MaxNameRunes = 200

// ValidateName says what a cluster name must be, or "": the rule of
// package names with at most MaxNameRunes characters.
func ValidateName(name string) string {
	return names.Validate(name, MaxNameRunes)
}

// ValidateServiceURL says what a service URL must be, or "". Empty is
// allowed (no service URL yet); otherwise agentproto.CheckDashboardURL's
// rule, the one agents' dashboard URLs follow too.
func ValidateServiceURL(s string) string {
	if s == "" {
		return ""
	}
	if err := agentproto.CheckDashboardURL(s); err != nil {
		return "serviceUrl " + err.Error() + " (the cluster's dashboard)"
	}
	return ""
}

// list serves one project's entries, a page at a time (see ListPage).
func (api *API) list(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	page, err := api.List(r.Context(), ac, mux.Vars(r)["project"], listQueryOf(r.URL.Query()))
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, page)
}

// listAll is the fleet-wide view: every cluster of every project the caller
// can see, in one list.
func (api *API) listAll(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	q, err := parseListQuery(r.URL.Query(), "fleet")
	if err != nil {
		return err
	}
	projects, err := api.authz.Store().ListProjects(r.Context())
	if err != nil {
		return err
	}
	visible := make(map[string]bool, len(projects))
	for _, p := range projects {
		visible[p.ID] = ac.Project(p) >= tenancy.View
	}
	if err := api.index.Wait(r.Context()); err != nil {
		return err
	}
	page, err := api.page(r.Context(), "", func(project string) bool { return visible[project] }, q)
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, page)
}

// States a cluster can be in, for the ?state= filter.
var States = []string{fleet.StateCreated, fleet.StateRegistering, fleet.StateRunning, fleet.StateAbnormal}

// CreateRequest is a new entry as the caller gives it.
type CreateRequest struct {
	Name       string `json:"name"`
	ServiceURL string `json:"serviceUrl"`
}

func (api *API) create(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	p, err := api.authz.Project(r.Context(), ac, mux.Vars(r)["project"], tenancy.Admin, "")
	if err != nil {
		return err
	}
	var req CreateRequest
	if err := httpapi.Decode(r, &req); err != nil {
		return err
	}
	c, err := api.createIn(r.Context(), p, req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/clusters/"+c.ID)
	return httpapi.JSON(w, http.StatusCreated, c)
}

// createIn creates the entry in p, which the caller administers.
func (api *API) createIn(ctx context.Context, p tenancy.Project, req CreateRequest) (Cluster, error) {
	if msg := ValidateName(req.Name); msg != "" {
		return Cluster{}, httpapi.Invalid("name", "%s", msg)
	}
	if msg := ValidateServiceURL(req.ServiceURL); msg != "" {
		return Cluster{}, httpapi.Invalid("serviceUrl", "%s", msg)
	}
	now := api.opts.Now().UTC()
	spec := registry.Spec{
		ID: kv.NewID(), Name: req.Name, Project: p.ID, ServiceURL: req.ServiceURL,
		MaxConnections: registry.DefaultMaxConnections, CreatedAt: now, UpdatedAt: now,
	}
	audit.Annotate(ctx, audit.Note{Org: p.Org, Project: p.ID, Target: "cluster/" + spec.ID})
	if err := api.store.Create(ctx, spec); err != nil {
		return Cluster{}, registry.APIError(err)
	}
	api.refresh(ctx, spec.ID)
	return api.view(ctx, spec)
}

// entry is a cluster entry loaded for a caller.
type entry struct {
	access  *tenancy.Access
	spec    registry.Spec
	project tenancy.Project
}

// load reads the entry in the path for a caller who needs level want on its
// project: 404 when absent or invisible, 403 when only visible.
func (api *API) load(r *http.Request, want tenancy.Level) (entry, error) {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return entry{}, err
	}
	return api.loadEntry(r.Context(), ac, mux.Vars(r)["id"], want)
}

func (api *API) get(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	c, err := api.Get(r.Context(), ac, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, c)
}

// PatchRequest is an edit of an entry; nil fields stay as they are.
type PatchRequest struct {
	Name          *string             `json:"name"`
	ServiceURL    *string             `json:"serviceUrl"`
	LogCollection *LogCollectionPatch `json:"logCollection"`
}

// LogCollectionPatch switches the agent's log shipping.
type LogCollectionPatch struct {
	Enabled *bool `json:"enabled"`
}

type logCollectionPatch = LogCollectionPatch

// checkLogCollection validates a log collection switch. Switching it on
// needs a directory to tail, which only the agent knows: an agent that
// registered without one is refused. With no agent bound the switch is
// kept, and applies once an agent registers with a directory.
func (api *API) checkLogCollection(ctx context.Context, id string, lc *logCollectionPatch) error {
	if lc.Enabled == nil {
		return httpapi.Invalid("logCollection.enabled", "logCollection.enabled is required: true to ship the cluster's EMQX logs, false to stop")
	}
	if !*lc.Enabled {
		return nil
	}
	st, err := api.fleet.Status(ctx, id)
	if err != nil {
		return fmt.Errorf("read status of cluster %s: %w", id, err)
	}
	if st.State != StateCreated && st.RegisteredLogCollection.Dir == "" {
		return httpapi.Invalid("logCollection.enabled", "the agent of cluster %s registered no log directory; re-register it with --emqx-log-collection-dir to collect logs", id)
	}
	return nil
}

// withEntry is the shape of every route on one entry: authorize the caller
// for level want on the entry's project (404 or 403 before anything else,
// the body included, is read), decode the body into req when it is not
// nil, run do and answer its result with status.
func withEntry[Req, Res any](api *API, want tenancy.Level, status int, do func(context.Context, entry, Req) (Res, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		e, err := api.load(r, want)
		if err != nil {
			return err
		}
		var req Req
		if _, none := any(req).(struct{}); !none {
			if err := httpapi.Decode(r, &req); err != nil {
				return err
			}
		}
		res, err := do(r.Context(), e, req)
		if err != nil {
			return err
		}
		return httpapi.JSON(w, status, res)
	}
}

func (api *API) update(ctx context.Context, e entry, req PatchRequest) (Cluster, error) {
	spec := e.spec
	if req.Name == nil && req.ServiceURL == nil && req.LogCollection == nil {
		return Cluster{}, httpapi.Invalid("", "nothing to change: give name, serviceUrl and/or logCollection (max connections change through PUT /clusters/{id}/max-connections)")
	}
	if req.Name != nil {
		if msg := ValidateName(*req.Name); msg != "" {
			return Cluster{}, httpapi.Invalid("name", "%s", msg)
		}
	}
	if req.ServiceURL != nil {
		if msg := ValidateServiceURL(*req.ServiceURL); msg != "" {
			return Cluster{}, httpapi.Invalid("serviceUrl", "%s", msg)
		}
	}
	if req.LogCollection != nil {
		if err := api.checkLogCollection(ctx, spec.ID, req.LogCollection); err != nil {
			return Cluster{}, err
		}
	}
	updated, err := api.store.Update(ctx, spec.ID, func(s *registry.Spec) error {
		if req.Name != nil {
			s.Name = *req.Name
		}
		if req.ServiceURL != nil {
			s.ServiceURL = *req.ServiceURL
		}
		if req.LogCollection != nil {
			s.LogCollection = &registry.LogCollectionSpec{Enabled: *req.LogCollection.Enabled}
		}
		return nil
	})
	if errors.Is(err, registry.ErrNotFound) {
		return Cluster{}, httpapi.NotFound("no cluster %s", spec.ID)
	}
	if err != nil {
		// A rename to a name another entry of the project has.
		return Cluster{}, registry.APIError(err)
	}
	return api.updated(ctx, updated)
}

// updated is the new view of a changed entry, after making this replica's
// index hold the change (read-your-writes).
func (api *API) updated(ctx context.Context, updated registry.Spec) (Cluster, error) {
	api.refresh(ctx, updated.ID)
	return api.view(ctx, updated)
}

func (api *API) delete(w http.ResponseWriter, r *http.Request) error {
	e, err := api.load(r, tenancy.Admin)
	if err != nil {
		return err
	}
	if err := api.remove(r.Context(), e); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (api *API) remove(ctx context.Context, e entry) error {
	id := e.spec.ID
	// What a deletion removes, and in which order, is registry.Delete's.
	if _, err := api.registry.Delete(ctx, id); err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return httpapi.NotFound("no cluster %s", id)
		}
		return err
	}
	api.refresh(ctx, id)
	return nil
}

// TransferRequest moves an entry to another project.
type TransferRequest struct {
	Project string `json:"project"`
	// ServiceURL, when given, is the service URL the entry keeps in its
	// new project ("" for the agent's dashboard URL). When absent, a
	// service URL set by hand is dropped (see transfer).
	ServiceURL *string `json:"serviceUrl"`
}

func (api *API) transfer(ctx context.Context, e entry, req TransferRequest) (Cluster, error) {
	ac, spec := e.access, e.spec
	if req.Project == "" {
		return Cluster{}, httpapi.Invalid("project", "project (the id of the project to move the cluster to) is required")
	}
	if req.Project == spec.Project {
		return Cluster{}, httpapi.Invalid("project", "cluster %s is already in project %s", spec.ID, spec.Project)
	}
	if req.ServiceURL != nil {
		if msg := ValidateServiceURL(*req.ServiceURL); msg != "" {
			return Cluster{}, httpapi.Invalid("serviceUrl", "%s", msg)
		}
	}
	// The caller must administer the target too: moving a cluster into a
	// project is as much a change of that project as creating one there.
	target, err := api.authz.Project(ctx, ac, req.Project, tenancy.Admin, "project")
	if err != nil {
		return Cluster{}, err
	}
	// A service URL set by hand in the old project is where the new
	// project's users would be sent, with their dashboard sessions, by
	// every jump (issue #11 finding 1). It does not move along silently:
	// the entry falls back to the dashboard URL its agent registered,
	// unless the request names the URL to keep; the reply shows the
	// result either way.
	keep := ""
	if req.ServiceURL != nil {
		keep = *req.ServiceURL
	}
	updated, err := api.store.Update(ctx, spec.ID, func(s *registry.Spec) error {
		s.Project = target.ID
		s.ServiceURL = keep
		return nil
	})
	if errors.Is(err, registry.ErrNotFound) {
		return Cluster{}, httpapi.NotFound("no cluster %s", spec.ID)
	}
	if err != nil {
		// The target project's or organization's quota may refuse it.
		return Cluster{}, registry.APIError(err)
	}
	api.logger.Info("cluster entry transferred", "cluster", spec.ID, "from", spec.Project, "to", target.ID,
		"serviceUrlKept", keep != "", "serviceUrlDropped", spec.ServiceURL != "" && spec.ServiceURL != keep)
	return api.updated(ctx, updated)
}

// MaxConnectionsRequest sets an entry's max connections.
type MaxConnectionsRequest struct {
	MaxConnections *int `json:"maxConnections"`
}

func (api *API) setMaxConnections(ctx context.Context, e entry, req MaxConnectionsRequest) (Cluster, error) {
	spec := e.spec
	if req.MaxConnections == nil || *req.MaxConnections < 1 {
		return Cluster{}, httpapi.Invalid("maxConnections", "maxConnections is required: an integer from 1 to the licence's per-cluster ceiling (%d)", api.store.Licence().MaxPerCluster)
	}
	updated, err := api.store.SetMaxConnections(ctx, spec.ID, *req.MaxConnections)
	if errors.Is(err, registry.ErrNotFound) {
		return Cluster{}, httpapi.NotFound("no cluster %s", spec.ID)
	}
	if err != nil {
		return Cluster{}, registry.APIError(err)
	}
	return api.updated(ctx, updated)
}

func (api *API) dashboard(w http.ResponseWriter, r *http.Request) error {
	e, err := api.load(r, tenancy.View)
	if err != nil {
		return err
	}
	target, role, err := api.target(r.Context(), e)
	if err != nil {
		return err
	}
	return api.jump(w, r, e.spec, target, role)
}
