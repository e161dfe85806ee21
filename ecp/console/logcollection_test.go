package console_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

// TestLogCollectionToggle: an admin switches the agent's log collection off
// and on from the cluster page; a viewer sees the state but no switch.
func TestLogCollectionToggle(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "with-logs")
	var reg struct{ Token string }
	if err := json.Unmarshal(e.api(201, "POST", "/api/v1/clusters/"+id+"/registration", e.admin, nil), &reg); err != nil {
		t.Fatal(err)
	}
	e.api(200, "POST", agentproto.PathRegister, "", agentproto.RegisterRequest{Token: reg.Token, AgentVersion: "test",
		LogCollection: agentproto.LogCollection{Enabled: true, Dir: "/var/log/emqx"}})
	e.user("victor", "project-viewer", e.project)

	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/clusters/" + id
	for _, step := range []struct {
		on            bool
		shows, button string
	}{
		{false, "off (<code>/var/log/emqx</code>)", "Start log collection"},
		{true, "on, <code>/var/log/emqx</code>", "Stop log collection"},
	} {
		p := b.post(path+"/log-collection", url.Values{"enabled": {map[bool]string{true: "true", false: "false"}[step.on]}})
		mustStatus(t, p, http.StatusSeeOther, "switch")
		var c struct {
			LogCollection agentproto.LogCollection `json:"logCollection"`
		}
		if err := json.Unmarshal(e.api(200, "GET", "/api/v1/clusters/"+id, e.admin, nil), &c); err != nil {
			t.Fatal(err)
		}
		if c.LogCollection.Enabled != step.on {
			t.Fatalf("after switching to %v the API shows %+v", step.on, c.LogCollection)
		}
		page := b.get(path)
		if !strings.Contains(page.body, step.shows) || !strings.Contains(page.body, step.button) {
			t.Fatalf("after switching to %v the page lacks %q or %q", step.on, step.shows, step.button)
		}
	}

	v := e.browser()
	mustStatus(t, v.login("victor", "victor-password"), http.StatusSeeOther, "viewer login")
	page := v.get(path)
	if !strings.Contains(page.body, "on, <code>/var/log/emqx</code>") || strings.Contains(page.body, "/log-collection") {
		t.Fatal("a viewer must see the log collection state but not its switch")
	}
}
