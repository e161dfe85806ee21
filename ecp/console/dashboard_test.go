package console_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestOpenDashboardSaysWhyThereIsNoLogin: without an agent to make the
// login, "Open dashboard" tells the user why instead of dropping them on
// EMQX's login page, and links on to the dashboard.
func TestOpenDashboardSaysWhyThereIsNoLogin(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	e.api(200, "PATCH", "/api/v1/clusters/"+id, e.admin, map[string]string{"serviceUrl": "http://emqx.example:18083"})
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get("/projects/" + e.project + "/clusters/" + id + "/dashboard")
	mustStatus(t, p, http.StatusOK, "open dashboard without an agent")
	for _, want := range []string{"could not log you in", "no agent is registered", `href="http://emqx.example:18083"`} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("page lacks %q:\n%s", want, p.body)
		}
	}
}
