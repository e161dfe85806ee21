package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// issue #11 finding 7: quotas are set where a system admin sees the
// licence, through the API (its validation and refusals shown in the row),
// and a cluster's page shows its project's quota beside the licence, so a
// project admin sees the ceiling their refusal came from.
func TestSec07QuotasInConsole(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "c1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	sys := b.get("/system")
	mustStatus(t, sys, http.StatusOK, "system page")
	if !strings.Contains(sys.body, `id="quota-`+e.project+`"`) || !strings.Contains(sys.body, `id="quota-`+e.org+`"`) {
		t.Fatalf("system page lists no quota rows for the org and project:\n%s", sys.body)
	}
	p := b.post("/system/quota", url.Values{"kind": {"project"}, "id": {e.project}, "maxConnections": {"lots"}})
	mustStatus(t, p, http.StatusBadRequest, "quota that is not a number")
	if !strings.Contains(p.body, `id="quota-error-`+e.project+`"`) || !strings.Contains(p.body, "from 0 to the licence") {
		t.Fatalf("refusal not shown in the project's row:\n%s", p.body)
	}
	mustStatus(t, b.post("/system/quota", url.Values{"kind": {"project"}, "id": {e.project}, "maxConnections": {"25"}}), http.StatusSeeOther, "set project quota")
	mustStatus(t, b.post("/system/quota", url.Values{"kind": {"org"}, "id": {e.org}, "maxConnections": {"500"}}), http.StatusSeeOther, "set org quota")
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/quota", e.admin, nil)); !strings.Contains(got, `"maxConnections":25`) || !strings.Contains(got, `"remaining":15`) {
		t.Fatalf("project quota after the form: %s", got)
	}
	if got := string(e.api(200, "GET", "/api/v1/orgs/"+e.org+"/quota", e.admin, nil)); !strings.Contains(got, `"maxConnections":500`) {
		t.Fatalf("org quota after the form: %s", got)
	}
	detail := b.get("/projects/" + e.project + "/clusters/" + id)
	if !strings.Contains(detail.body, "Project quota: 10 of 25 allocated, <strong>15 remaining</strong> (bounded by the project's quota)") {
		t.Fatalf("cluster page does not show the project quota:\n%s", detail.body)
	}
	r := b.post("/projects/"+e.project+"/clusters/"+id+"/max-connections", url.Values{"maxConnections": {"30"}})
	mustStatus(t, r, http.StatusUnprocessableEntity, "over the project quota")
	if !strings.Contains(r.body, "project "+e.project+"&#39;s connection quota has 15 remaining") {
		t.Fatalf("refusal by the project quota not shown:\n%s", r.body)
	}
	// Emptying the field removes the quota.
	mustStatus(t, b.post("/system/quota", url.Values{"kind": {"project"}, "id": {e.project}, "maxConnections": {""}}), http.StatusSeeOther, "remove project quota")
	if got := string(e.api(200, "GET", "/api/v1/projects/"+e.project+"/quota", e.admin, nil)); !strings.Contains(got, `"maxConnections":null`) || !strings.Contains(got, `"limitedBy":"organization"`) {
		t.Fatalf("project quota after removal: %s", got)
	}
}
