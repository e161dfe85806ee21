package monitoring

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/ecp/tenancy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDashboardLink(t *testing.T) {
	tests := []struct {
		base, kind, id, want string
	}{
		{"http://emqx:18083", agentproto.KindRule, "rule_0ab1", "http://emqx:18083/#/rule/rules/rule_0ab1"},
		{"http://emqx:18083/", agentproto.KindConnector, "http:my_http", "http://emqx:18083/#/connector/http:my_http"},
		{"https://e.example/dash", agentproto.KindAction, "http:a b", "https://e.example/dash/#/rule/actions/http:a%20b"},
		{"http://emqx:18083", agentproto.KindSource, "mqtt:in", "http://emqx:18083/#/rule/source/mqtt:in"},
		{"", agentproto.KindRule, "rule_1", ""},
		{"http://emqx:18083", "node", "n1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.kind+" "+tt.id, func(t *testing.T) {
			if got := DashboardLink(tt.base, tt.kind, tt.id); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

type fakeClusters map[string][]registry.Spec

func (f fakeClusters) ListProject(_ context.Context, project string) ([]registry.Spec, error) {
	return append([]registry.Spec(nil), f[project]...), nil
}

type fakeStatuses map[string]fleet.Status

func (f fakeStatuses) Status(_ context.Context, id string) (fleet.Status, error) { return f[id], nil }

type world struct {
	router         *mux.Router
	p1, p2         string
	clusters       fakeClusters
	store          *Store
	viewer, nobody *auth.Principal
	systemAdmin    *auth.Principal
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := t.Context()
	ts := tenancy.NewStore(etcdtest.Client(t))
	org, err := ts.CreateOrg(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	p1, err := ts.CreateProject(ctx, org.ID, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ts.CreateProject(ctx, org.ID, "p2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.CreateBinding(ctx, tenancy.Binding{Username: "v", Role: tenancy.RoleProjectViewer, Project: p1.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.CreateBinding(ctx, tenancy.Binding{Username: "root", Role: tenancy.RoleSystemAdmin}); err != nil {
		t.Fatal(err)
	}
	w := &world{p1: p1.ID, p2: p2.ID, store: NewStore(nil),
		viewer: &auth.Principal{Username: "v"}, nobody: &auth.Principal{Username: "n"}, systemAdmin: &auth.Principal{Username: "root"}}
	w.clusters = fakeClusters{p1.ID: {
		{ID: "c1", Name: "alpha", Project: p1.ID, ServiceURL: "http://emqx-a:18083"},
		{ID: "c2", Name: "beta", Project: p1.ID},
		{ID: "c3", Name: "gamma", Project: p1.ID},
	}}
	statuses := fakeStatuses{
		"c1": {State: fleet.StateRunning, Connections: 10, LiveConnections: 7},
		"c2": {State: fleet.StateRunning, Connections: 5, LiveConnections: 5, DashboardURL: "http://emqx-b:18083/"},
		"c3": {State: fleet.StateRegistering},
	}
	collected := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	w.store.Observe("c1", &agentproto.ReportRequest{CollectedAt: collected, EMQX: agentproto.EMQXStatus{Reachable: true,
		Rules:      agentproto.ResourceCounts{Total: 3, Healthy: 1, Unhealthy: 2},
		Connectors: agentproto.ResourceCounts{Total: 2, Healthy: 1, Unhealthy: 1},
		Actions:    agentproto.ResourceCounts{Total: 1, Healthy: 1},
		Abnormal: []agentproto.Resource{
			{Kind: agentproto.KindRule, ID: "rule_stopped", Status: "stopped"},
			{Kind: agentproto.KindRule, ID: "rule_failing", Status: "failing", Reason: "failed 3, actions failed 0"},
			{Kind: agentproto.KindConnector, ID: "http:down", Name: "down", Status: "disconnected", Reason: "econnrefused"},
		}}})
	w.store.Observe("c2", &agentproto.ReportRequest{CollectedAt: collected, EMQX: agentproto.EMQXStatus{Reachable: true,
		Rules:      agentproto.ResourceCounts{Total: 1, Healthy: 1},
		Connectors: agentproto.ResourceCounts{Total: 1, Unhealthy: 1},
		Abnormal:   []agentproto.Resource{{Kind: agentproto.KindConnector, ID: "kafka:k", Status: "connecting"}},
	}})
	api := NewAPI(tenancy.NewAuthorizer(ts), w.clusters, statuses, w.store)
	w.router = mux.NewRouter()
	api.Register(w.router, httpapi.NewAdapter(slog.New(slog.DiscardHandler), prometheus.NewRegistry()))
	return w
}

func (w *world) get(t *testing.T, p *auth.Principal, path string, out any) int {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
	if p != nil {
		req = req.WithContext(auth.WithPrincipal(req.Context(), p))
	}
	rec := httptest.NewRecorder()
	w.router.ServeHTTP(rec, req)
	if out != nil && rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code
}

func TestOverview(t *testing.T) {
	w := newWorld(t)
	var got Overview
	if code := w.get(t, w.viewer, "/projects/"+w.p1+"/monitoring", &got); code != http.StatusOK {
		t.Fatalf("viewer: %d, want 200", code)
	}
	if got.Connections != (ConnectionCount{Total: 15, Online: 12}) {
		t.Errorf("connections %+v, want total 15 online 12", got.Connections)
	}
	if got.Rules != (RuleCount{Total: 4, Running: 3, Stopped: 1}) {
		t.Errorf("rules %+v, want total 4 running 3 stopped 1", got.Rules)
	}
	if got.Connectors != (StatusCount{Total: 3, Connected: 1, Disconnected: 2}) {
		t.Errorf("connectors %+v, want total 3 connected 1 disconnected 2", got.Connectors)
	}
	if got.Actions != (StatusCount{Total: 1, Connected: 1}) {
		t.Errorf("actions %+v", got.Actions)
	}
	wantAbnormal := []Abnormal{
		{ClusterID: "c1", ClusterName: "alpha", Kind: "rule", ID: "rule_stopped", Status: "stopped", DashboardURL: "http://emqx-a:18083/#/rule/rules/rule_stopped"},
		{ClusterID: "c1", ClusterName: "alpha", Kind: "rule", ID: "rule_failing", Status: "failing", Reason: "failed 3, actions failed 0", DashboardURL: "http://emqx-a:18083/#/rule/rules/rule_failing"},
		{ClusterID: "c1", ClusterName: "alpha", Kind: "connector", ID: "http:down", Name: "down", Status: "disconnected", Reason: "econnrefused", DashboardURL: "http://emqx-a:18083/#/connector/http:down"},
		// No service URL: the link uses the dashboard URL the agent registered with.
		{ClusterID: "c2", ClusterName: "beta", Kind: "connector", ID: "kafka:k", Status: "connecting", DashboardURL: "http://emqx-b:18083/#/connector/kafka:k"},
	}
	if len(got.Abnormal) != len(wantAbnormal) {
		t.Fatalf("abnormal %+v, want %+v", got.Abnormal, wantAbnormal)
	}
	for i := range wantAbnormal {
		if got.Abnormal[i] != wantAbnormal[i] {
			t.Errorf("abnormal[%d] = %+v, want %+v", i, got.Abnormal[i], wantAbnormal[i])
		}
	}
	if len(got.Clusters) != 3 || !got.Clusters[0].Reported || got.Clusters[2].Reported || got.Clusters[2].State != fleet.StateRegistering {
		t.Errorf("clusters %+v: want alpha and beta reported, gamma registering without a report", got.Clusters)
	}
}

func TestOverviewClusterFilter(t *testing.T) {
	w := newWorld(t)
	var got Overview
	if code := w.get(t, w.systemAdmin, "/projects/"+w.p1+"/monitoring?cluster=c2", &got); code != http.StatusOK {
		t.Fatalf("filter: %d", code)
	}
	if len(got.Clusters) != 1 || got.Clusters[0].ID != "c2" || got.Connections.Total != 5 || len(got.Abnormal) != 1 || got.Abnormal[0].ClusterID != "c2" {
		t.Fatalf("filtered overview %+v, want only c2", got)
	}
	if code := w.get(t, w.systemAdmin, "/projects/"+w.p1+"/monitoring?cluster=nope", nil); code != http.StatusBadRequest {
		t.Fatalf("unknown cluster: %d, want 400", code)
	}
}

func TestOverviewVisibility(t *testing.T) {
	w := newWorld(t)
	tests := []struct {
		name    string
		who     *auth.Principal
		project string
		want    int
	}{
		{"anonymous", nil, w.p1, http.StatusUnauthorized},
		{"no binding", w.nobody, w.p1, http.StatusNotFound},
		{"viewer of another project", w.viewer, w.p2, http.StatusNotFound},
		{"unknown project", w.systemAdmin, "nope", http.StatusNotFound},
		{"system admin, empty project", w.systemAdmin, w.p2, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code := w.get(t, tt.who, "/projects/"+tt.project+"/monitoring", nil); code != tt.want {
				t.Fatalf("got %d, want %d", code, tt.want)
			}
		})
	}
}

func TestStoreCopiesTheAbnormalList(t *testing.T) {
	s := NewStore(nil)
	req := &agentproto.ReportRequest{EMQX: agentproto.EMQXStatus{Abnormal: []agentproto.Resource{{Kind: "rule", ID: "r1"}}}}
	s.Observe("c1", req)
	req.EMQX.Abnormal[0].ID = "changed"
	if sn, _ := s.Snapshot("c1"); sn.Abnormal[0].ID != "r1" {
		t.Fatalf("store shares the report's slice: %q", sn.Abnormal[0].ID)
	}
	s.Forget("c1")
	if _, ok := s.Snapshot("c1"); ok {
		t.Fatal("Forget kept the snapshot")
	}
}
