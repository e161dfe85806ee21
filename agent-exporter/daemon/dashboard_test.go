package daemon_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// TestDashboardSession: a request in the desired state is answered once,
// with a fresh EMQX login sealed to the request's key that EMQX accepts;
// a failing EMQX is reported as a problem; the token is never logged.
func TestDashboardSession(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.SetInterval(30) // only the long-poll can bring the request in time
	ecp.IssueToken("tok-1")
	h := startDaemon(t, t.TempDir())
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok-1", emqx.URL, "public")...); code != cli.ExitOK {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 5*time.Second, "revision 1 applied", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.AppliedRevision == 1
	})

	key, err := ecp.RequestDashboardSession("req-1", agentproto.DashboardRoleAdministrator)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the agent answers req-1", func() bool { return len(ecp.DashboardReplies()) > 0 })
	got := ecp.DashboardReplies()[0]
	if got.RequestID != "req-1" || got.Problem != nil {
		t.Fatalf("reply %+v", got)
	}
	login, err := key.Open(got.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	if login.Username != "admin" || login.Version != "5.8.9" || login.Edition != "ee" || login.Role == "" {
		t.Fatalf("login %+v", login)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, emqx.URL+"/api/v5/nodes", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+login.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("EMQX answers the handed-over token with %d", resp.StatusCode)
	}

	// The same request keeps appearing in later desired states; it is
	// answered once.
	ecp.SetMaxConnections(20)
	eventually(t, 5*time.Second, "revision 3 applied", func() bool {
		r, ok := lastReport(ecp)
		return ok && r.AppliedRevision == 3
	})
	if n := len(ecp.DashboardReplies()); n != 1 {
		t.Fatalf("%d answers to one request, want 1", n)
	}
	if strings.Contains(h.logs.String(), login.Token) {
		t.Fatal("the dashboard token is in the agent's log")
	}

	t.Run("EMQX failing is reported, not waited for", func(t *testing.T) {
		if err := emqx.SetAPIFault(sim.APIFault{ErrorRate: 1, Status: http.StatusServiceUnavailable}); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = emqx.SetAPIFault(sim.APIFault{}) }()
		if _, err := ecp.RequestDashboardSession("req-2", agentproto.DashboardRoleAdministrator); err != nil {
			t.Fatal(err)
		}
		var r agentproto.DashboardSessionReply
		eventually(t, 5*time.Second, "the agent answers req-2", func() bool {
			for _, x := range ecp.DashboardReplies() {
				if x.RequestID == "req-2" {
					r = x
					return true
				}
			}
			return false
		})
		if r.Problem == nil || r.Problem.Code != agentproto.ProblemEMQXUnreachable || r.Sealed != "" {
			t.Fatalf("reply %+v, want EMQXUnreachable", r)
		}
	})
}
