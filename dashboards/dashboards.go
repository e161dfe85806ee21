// Package dashboards defines ecp's Grafana dashboards as code, with the
// Grafana foundation SDK: the fleet overview, one cluster's detail and data
// integration (rules, connectors, actions, sources).
//
// The JSON files beside this package are generated from it (go test
// ./dashboards -update) and committed, so Grafana's file provisioning can
// load them as they are (docker-compose mounts this folder). ecp itself
// builds per-project copies with Build and pushes them to Grafana through
// its HTTP API (ecp/grafana).
//
// Every query reads only series the agent exports (see
// agent-exporter/collector/metrics.go) and ecp's own ecp_cluster_state;
// ecp stamps `project` and `cluster` on every agent sample when it
// forwards it, and those two labels are the dashboards' variables. The
// dashboards never use `job` or `instance`, which differ between the pull
// and the push path.
package dashboards

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Names of the dashboards; each is also its file name without ".json".
const (
	NameFleet           = "ecp-fleet-overview"
	NameCluster         = "ecp-cluster-detail"
	NameDataIntegration = "ecp-data-integration"
)

// Base UIDs of the shared dashboards (the committed files). A project's
// copies add the project's key (see UID).
const (
	uidFleet           = "ecp-fleet"
	uidCluster         = "ecp-cluster"
	uidDataIntegration = "ecp-di"
)

// Tag every ecp dashboard carries; the dashboards link to each other by it.
const Tag = "ecp"

// Params choose between the shared dashboards and a project's copy.
type Params struct {
	// Project, when set, is the project id (the value of the `project`
	// label) the copy is for: the project variable is preset to it and
	// hidden, and UIDs and links name the project's copies.
	Project string
	// ProjectName is shown in the titles of a project's copies.
	ProjectName string
}

// Spec is one dashboard.
type Spec struct {
	// Name is the dashboard's name and file name without ".json".
	Name  string
	title string
	uid   string
	build func(p Params) *dashboard.DashboardBuilder //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
}

// Specs lists every dashboard in a stable order.
func Specs() []Spec {
	return []Spec{
		{Name: NameFleet, title: "EMQX fleet overview", uid: uidFleet, build: fleet},
		{Name: NameCluster, title: "EMQX cluster detail", uid: uidCluster, build: cluster},
		{Name: NameDataIntegration, title: "EMQX data integration", uid: uidDataIntegration, build: dataIntegration},
	}
}

// UID is the dashboard's uid: the base uid for the shared dashboard, plus
// the project's key for a project's copy (Grafana uids are unique per
// organisation and at most 40 characters).
func (s Spec) UID(p Params) string { return uidFor(s.uid, p) }

func uidFor(base string, p Params) string {
	if p.Project == "" {
		return base
	}
	return base + "-" + ProjectKey(p.Project)
}

// Title is the dashboard's title; a project's copy names the project.
func (s Spec) Title(p Params) string {
	if p.Project == "" {
		return s.title
	}
	name := p.ProjectName
	if name == "" {
		name = p.Project
	}
	return s.title + " — " + name
}

// ProjectKey is the part of Grafana uids derived from a project id: the id
// itself when short (ecp's ids are 16 hex digits), else a digest of it, so
// uids stay within Grafana's 40 characters whatever the id.
func ProjectKey(project string) string {
	if len(project) <= 20 {
		return project
	}
	h := sha256.Sum256([]byte(project))
	return hex.EncodeToString(h[:10])
}

// Build builds the dashboard for p.
func (s Spec) Build(p Params) (dashboard.Dashboard, error) { //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	d, err := s.build(p).Uid(s.UID(p)).Title(s.Title(p)).Build()
	if err != nil {
		return dashboard.Dashboard{}, fmt.Errorf("build dashboard %s: %w", s.Name, err) //nolint:staticcheck // Grafana's /api/dashboards/db takes the classic (v1) dashboard schema, not v2.
	}
	return d, nil
}

// JSON builds the dashboard for p as indented JSON ending in a newline,
// the form of the committed files.
func (s Spec) JSON(p Params) ([]byte, error) {
	d, err := s.Build(p)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode dashboard %s: %w", s.Name, err)
	}
	return append(b, '\n'), nil
}
