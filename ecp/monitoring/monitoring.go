// Package monitoring serves a project's monitoring overview,
// GET /api/v1/projects/{project}/monitoring: connections, rules and
// connectors summed over the project's clusters, and the list of abnormal
// rules, connectors, actions and sources with a deep link into the page of
// that object on its cluster's own EMQX dashboard.
//
// The data is the latest agent report of each cluster: the Store keeps,
// per cluster, the counts and the abnormal list of the last report this
// replica accepted (fleet hands them over through fleet.ReportObserver),
// and connections come from fleet's status, which every replica shares.
// Membership is read from the cluster entries at query time, so a cluster
// transferred to another project shows there at once.
//
// With several replicas (Store.Share), a replica writes a cluster's
// snapshot to etcd only when its counts or abnormal list changed (an object
// going abnormal, changing status or recovering; not the counters in an
// object's reason, which move with every collection), and every replica
// watches those keys, so a report served by one replica shows on all of
// them within the watch's latency, at the cost of one etcd write per change
// rather than per report. The replica that took the latest report shows its
// reasons as reported; the others show them as of the last change. The overview says which clusters no
// replica has a report of yet (reported=false).
package monitoring

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// Snapshot is what the Store keeps of one cluster's latest report.
type Snapshot struct {
	CollectedAt time.Time
	ReceivedAt  time.Time
	Reachable   bool
	Rules       agentproto.ResourceCounts
	Connectors  agentproto.ResourceCounts
	Actions     agentproto.ResourceCounts
	Sources     agentproto.ResourceCounts
	Abnormal    []agentproto.Resource
}

// Store holds the latest report snapshot of each cluster, in memory.
type Store struct {
	now  func() time.Time
	mu   sync.RWMutex
	snap map[string]Snapshot

	// Set by Share: the etcd client, this replica's name, the snapshots
	// waiting to be written and the last content written or seen per
	// cluster.
	cli     *clientv3.Client
	replica string
	logger  *slog.Logger
	pending map[string]Snapshot
	written map[string]Snapshot
	wake    chan struct{}
}

// NewStore returns an empty Store; now is the clock (time.Now when nil).
func NewStore(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, snap: map[string]Snapshot{}}
}

// Observe records a report; its signature is fleet.ReportObserver.
func (s *Store) Observe(clusterID string, req *agentproto.ReportRequest) {
	em := req.EMQX
	sn := Snapshot{CollectedAt: req.CollectedAt, ReceivedAt: s.now(), Reachable: em.Reachable,
		Rules: em.Rules, Connectors: em.Connectors, Actions: em.Actions, Sources: em.Sources,
		Abnormal: slices.Clone(em.Abnormal)}
	s.mu.Lock()
	s.snap[clusterID] = sn
	s.queueLocked(clusterID, sn)
	s.mu.Unlock()
}

// Snapshot returns the cluster's latest snapshot, if any.
func (s *Store) Snapshot(clusterID string) (Snapshot, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	sn, ok := s.snap[clusterID]
	return sn, ok
}

// Forget drops what the Store keeps of a cluster, a write not yet made
// included.
func (s *Store) Forget(clusterID string) {
	s.mu.Lock()
	delete(s.snap, clusterID)
	delete(s.pending, clusterID)
	delete(s.written, clusterID)
	s.mu.Unlock()
}

// Clusters lists a project's cluster entries; the replica's mirror of the
// specs (*registry.Mirror) implements it.
type Clusters interface {
	ListProject(ctx context.Context, project string) ([]registry.Spec, error)
}

// Statuses gives what fleet knows of a cluster; *fleet.Fleet implements it.
type Statuses interface {
	Status(ctx context.Context, clusterID string) (fleet.Status, error)
}

// API serves the overview.
type API struct {
	authz    *tenancy.Authorizer
	clusters Clusters
	statuses Statuses
	store    *Store
}

// NewAPI returns the overview API.
func NewAPI(authz *tenancy.Authorizer, clusters Clusters, statuses Statuses, store *Store) *API {
	return &API{authz: authz, clusters: clusters, statuses: statuses, store: store}
}

// Register mounts the route on r (the /api/v1 router).
func (api *API) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/projects/{project}/monitoring", a.Handle(api.overview)).Methods(http.MethodGet)
}

// Overview is the reply of GET /projects/{project}/monitoring.
type Overview struct {
	Project     string          `json:"project"`
	Connections ConnectionCount `json:"connections"`
	Rules       RuleCount       `json:"rules"`
	Connectors  StatusCount     `json:"connectors"`
	Actions     StatusCount     `json:"actions"`
	Sources     StatusCount     `json:"sources"`
	// Clusters are the clusters counted, with their state and when their
	// latest report was collected.
	Clusters []ClusterSummary `json:"clusters"`
	// Abnormal lists every rule, connector, action and source that is
	// not healthy, rules first.
	Abnormal []Abnormal `json:"abnormal"`
}

// ConnectionCount counts connections: Total counts sessions (EMQX
// "connections"), Online the connected clients ("live_connections").
type ConnectionCount struct {
	Total  int `json:"total"`
	Online int `json:"online"`
}

// RuleCount counts rules; Running includes enabled rules whose counters
// show failures (they are listed as abnormal with status "failing").
type RuleCount struct {
	Total   int `json:"total"`
	Running int `json:"running"`
	Stopped int `json:"stopped"`
}

// StatusCount counts connectors, actions or sources; Disconnected is
// everything not connected (disconnected, connecting, stopped, inconsistent).
type StatusCount struct {
	Total        int `json:"total"`
	Connected    int `json:"connected"`
	Disconnected int `json:"disconnected"`
}

// ClusterSummary is one cluster of the overview.
type ClusterSummary struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
	// Reported says whether a report of the cluster reached ecp yet.
	Reported  bool `json:"reported"`
	Reachable bool `json:"reachable"`
	// CollectedAt is when the report the counts come from was collected.
	// Replicas share a report only when its counts or abnormal list
	// change, so elsewhere it is the time of the latest change; the
	// cluster's lastReportAt (GET /clusters/{id}) says when it last
	// reported.
	CollectedAt *time.Time `json:"collectedAt"`
}

// Abnormal is one unhealthy object with the link to its dashboard page.
type Abnormal struct {
	ClusterID   string `json:"clusterId"`
	ClusterName string `json:"clusterName"`
	Kind        string `json:"kind"`
	// ID is the id EMQX uses: "rule_0ab1", "http:my_http".
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// DashboardURL opens the object's page on the cluster's EMQX dashboard;
	// empty while the cluster has no service URL.
	DashboardURL string `json:"dashboardUrl,omitempty"`
}

func (api *API) overview(w http.ResponseWriter, r *http.Request) error {
	ac, err := api.authz.Caller(r)
	if err != nil {
		return err
	}
	out, err := api.Overview(r.Context(), ac, mux.Vars(r)["project"], r.URL.Query().Get("cluster"))
	if err != nil {
		return err
	}
	return httpapi.JSON(w, http.StatusOK, out)
}

// Overview is the project's overview for the caller, of one cluster of it
// unless cluster is "": 404 when the caller cannot see the project. The
// route and the console both call it.
func (api *API) Overview(ctx context.Context, ac *tenancy.Access, project, cluster string) (Overview, error) {
	p, err := api.authz.Project(ctx, ac, project, tenancy.View, "")
	if err != nil {
		return Overview{}, err
	}
	specs, err := api.clusters.ListProject(ctx, p.ID)
	if err != nil {
		return Overview{}, err
	}
	if cluster != "" {
		specs = slices.DeleteFunc(specs, func(s registry.Spec) bool { return s.ID != cluster })
		if len(specs) == 0 {
			return Overview{}, httpapi.Invalid("cluster", "cluster %s is not a cluster of project %s", cluster, p.ID)
		}
	}
	slices.SortFunc(specs, func(a, b registry.Spec) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	out := Overview{Project: p.ID, Clusters: []ClusterSummary{}, Abnormal: []Abnormal{}}
	for _, spec := range specs {
		st, err := api.statuses.Status(ctx, spec.ID)
		if err != nil {
			return Overview{}, fmt.Errorf("read status of cluster %s: %w", spec.ID, err)
		}
		cs := ClusterSummary{ID: spec.ID, Name: spec.Name, State: st.State}
		out.Connections.Total += st.Connections
		out.Connections.Online += st.LiveConnections
		if sn, ok := api.store.Snapshot(spec.ID); ok {
			cs.Reported, cs.Reachable = true, sn.Reachable
			at := sn.CollectedAt
			cs.CollectedAt = &at
			add(&out, spec, st, sn)
		}
		out.Clusters = append(out.Clusters, cs)
	}
	return out, nil
}

func add(out *Overview, spec registry.Spec, st fleet.Status, sn Snapshot) {
	stopped := 0
	for _, a := range sn.Abnormal {
		if a.Kind == agentproto.KindRule && a.Status == "stopped" {
			stopped++
		}
	}
	out.Rules.Total += sn.Rules.Total
	out.Rules.Stopped += stopped
	out.Rules.Running += sn.Rules.Total - stopped
	for _, c := range []struct {
		into *StatusCount
		from agentproto.ResourceCounts
	}{{&out.Connectors, sn.Connectors}, {&out.Actions, sn.Actions}, {&out.Sources, sn.Sources}} {
		c.into.Total += c.from.Total
		c.into.Connected += c.from.Healthy
		c.into.Disconnected += c.from.Total - c.from.Healthy
	}
	base := spec.ServiceURL
	if base == "" && agentproto.CheckDashboardURL(st.DashboardURL) == nil {
		// An agent URL stored before ecp checked them may be javascript:.
		base = st.DashboardURL
	}
	for _, a := range sn.Abnormal {
		out.Abnormal = append(out.Abnormal, Abnormal{ClusterID: spec.ID, ClusterName: spec.Name, Kind: a.Kind, ID: a.ID,
			Name: a.Name, Status: a.Status, Reason: a.Reason, DashboardURL: DashboardLink(base, a.Kind, a.ID)})
	}
}

// Dashboard pages of EMQX 5's dashboard (emqx/emqx-dashboard5,
// src/router/index.ts, hash history): the rule, action and source detail
// pages live under /rule, the connector detail page under /connector.
var dashboardPages = map[string]string{
	agentproto.KindRule:      "/#/rule/rules/",
	agentproto.KindAction:    "/#/rule/actions/",
	agentproto.KindSource:    "/#/rule/source/",
	agentproto.KindConnector: "/#/connector/",
}

// DashboardLink is the URL of the object's page on the dashboard at base,
// or "" without a base or for an unknown kind.
func DashboardLink(base, kind, id string) string {
	page, ok := dashboardPages[kind]
	if base == "" || !ok {
		return ""
	}
	return strings.TrimRight(base, "/") + page + url.PathEscape(id)
}
