package console_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestClusterListRenderReadsTenancyOnce: a render of the cluster list (and
// its 5-second refresh) reads etcd once, for the session; the user's
// generation, the caller's bindings, orgs and projects come from this
// replica's mirrors (ecp/auth, ecp/tenancy) and the clusters from the list
// index. It made four in-process API calls with about thirteen ranges
// before, and five ranges before the mirrors. The count is etcd's own (etcd_mvcc_range_total), so
// background work of the replica can only make it larger.
func TestClusterListRenderReadsTenancyOnce(t *testing.T) {
	e := start(t, nil)
	for _, name := range []string{"edge-a", "edge-b", "edge-c"} {
		e.createCluster(e.project, name)
	}
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/clusters"
	const renders = 20
	var part page
	reads0 := etcdtest.Ranges(t)
	for range renders / 2 {
		mustStatus(t, b.get(path), http.StatusOK, "list")
		part = b.do("GET", path, nil, map[string]string{"HX-Request": "true", "HX-Target": "cluster-table"})
		mustStatus(t, part, http.StatusOK, "list refresh")
	}
	perRender := (etcdtest.Ranges(t) - reads0) / renders
	t.Logf("etcd ranges per render: %.2f", perRender)
	if perRender > 1.5 {
		t.Errorf("a cluster list render reads etcd %.2f times, want at most 1 (the session; the user's generation and tenancy come from this replica's mirrors) and room for background work", perRender)
	}
	if !strings.Contains(part.body, "edge-b") || strings.Contains(part.body, "<optgroup") {
		t.Errorf("the refresh is not the table alone (clusters, no navigation):\n%s", part.body)
	}
}

// TestServicePagesKeepTheProjectCheck: the pages and polled fragments that
// call the services directly answer a caller who cannot see the project
// with the same 404 as the API, and their cluster filters list only the
// caller's own project.
func TestServicePagesKeepTheProjectCheck(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "line-1")
	e.createCluster(e.other, "secret-lab")
	e.user("olga", "project-viewer", e.other)
	b := e.browser()
	mustStatus(t, b.login("olga", "olga-password"), http.StatusSeeOther, "login")
	p := "/projects/" + e.project
	for _, tc := range []struct{ path, target string }{
		{p + "/clusters", ""},
		{p + "/clusters", "cluster-table"},
		{p + "/clusters/" + id, ""},
		{p + "/clusters/" + id + "/state", "cluster-state"},
		{p + "/clusters/" + id + "/status", "cluster-status"},
		{"/projects/" + e.other + "/clusters/" + id, ""},
		{p + "/monitoring", ""},
		{p + "/monitoring", "monitoring-body"},
		{p + "/alerts", ""},
		{p + "/alerts", "alerts-body"},
		{p + "/logs", ""},
	} {
		h := map[string]string{}
		if tc.target != "" {
			h = map[string]string{"HX-Request": "true", "HX-Target": tc.target}
		}
		got := b.do("GET", tc.path, nil, h)
		mustStatus(t, got, http.StatusNotFound, tc.path+" "+tc.target)
		if strings.Contains(got.body, "line-1") {
			t.Errorf("%s %s shows a cluster of a project olga cannot see", tc.path, tc.target)
		}
	}
	for _, tab := range []string{"monitoring", "alerts", "logs"} {
		// Logs answers 503 here (no log receiver) and still shows its form.
		own := b.get("/projects/" + e.other + "/" + tab)
		if !strings.Contains(own.body, ">secret-lab</option>") || strings.Contains(own.body, "line-1") {
			t.Errorf("the %s filter does not list exactly olga's project's clusters:\n%s", tab, own.body)
		}
	}
}
