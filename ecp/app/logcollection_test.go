package app

import (
	"strconv"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

// TestLogCollectionSwitch runs the operator's log collection switch end to
// end: PATCH stores it, the cluster JSON shows the effective choice, a
// parked desired-state long-poll receives it, and switching on an agent
// that registered no log directory is refused naming the field.
func TestLogCollectionSwitch(t *testing.T) {
	h := startReal(t, testOptions(t))
	admin, project := setupProject(t, h)
	register := func(name string, lc agentproto.LogCollection) (string, agentproto.RegisterResponse) {
		t.Helper()
		id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": name}))
		var reg struct{ Token string }
		h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
		var out agentproto.RegisterResponse
		h.must(200, "POST", agentproto.PathRegister, "", agentproto.RegisterRequest{Token: reg.Token, AgentVersion: "test",
			DashboardURL: "http://emqx.example:18083", APIURL: "http://emqx.example:18083", LogCollection: lc}).decode(t, &out)
		return id, out
	}
	type view struct {
		LogCollection agentproto.LogCollection `json:"logCollection"`
	}
	registered := agentproto.LogCollection{Enabled: true, Dir: "/var/log/emqx"}
	id, agent := register("with-logs", registered)
	var c view
	h.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
	if c.LogCollection != registered {
		t.Fatalf("cluster log collection %+v, want the registration's %+v", c.LogCollection, registered)
	}

	rev := agent.Desired.Revision
	for _, on := range []bool{false, true} {
		polled := make(chan reply, 1)
		go func() {
			polled <- h.do("GET", agentproto.PathDesired+"?timeout=60s&after="+strconv.FormatInt(rev, 10), agent.Credential, nil)
		}()
		h.must(200, "PATCH", "/api/v1/clusters/"+id, admin, map[string]any{"logCollection": map[string]bool{"enabled": on}}).decode(t, &c)
		want := agentproto.LogCollection{Enabled: on, Dir: registered.Dir}
		if c.LogCollection != want {
			t.Fatalf("PATCH enabled=%v: cluster shows %+v, want %+v", on, c.LogCollection, want)
		}
		r := <-polled
		var d agentproto.DesiredState
		r.decode(t, &d)
		if r.status != 200 || d.LogCollection != want || d.Revision <= rev {
			t.Fatalf("PATCH enabled=%v: long-poll got %d %+v, want %+v at a revision after %d", on, r.status, d, want, rev)
		}
		rev = d.Revision
	}

	noDir, _ := register("without-logs", agentproto.LogCollection{})
	for name, body := range map[string]any{
		"enabled missing":       map[string]any{"logCollection": map[string]any{}},
		"enabled not a bool":    map[string]any{"logCollection": map[string]any{"enabled": "yes"}},
		"no registered log dir": map[string]any{"logCollection": map[string]any{"enabled": true}},
	} {
		t.Run(name, func(t *testing.T) {
			var e apiError
			h.must(400, "PATCH", "/api/v1/clusters/"+noDir, admin, body).decode(t, &e)
			if e.Error.Field != "logCollection.enabled" {
				t.Fatalf("400 names field %q (%s), want logCollection.enabled", e.Error.Field, e.Error.Message)
			}
		})
	}
	h.must(200, "PATCH", "/api/v1/clusters/"+noDir, admin, map[string]any{"logCollection": map[string]bool{"enabled": false}})
}
