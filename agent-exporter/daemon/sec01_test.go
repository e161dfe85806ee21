package daemon_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/cli"
	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
)

// emqxCall does one EMQX API call with a bearer token and returns the
// status and the error code EMQX answered with.
func emqxCall(t *testing.T, base, method, path, token string, body any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Code
}

// askDashboard puts a dashboard request into the desired state and returns
// the agent's opened answer, or its problem.
func askDashboard(t *testing.T, ecp *fakeecp.Server, id, role string) (agentproto.DashboardLogin, *agentproto.Problem) {
	t.Helper()
	key, err := ecp.RequestDashboardSession(id, role)
	if err != nil {
		t.Fatal(err)
	}
	var r agentproto.DashboardSessionReply
	eventually(t, 5*time.Second, "the agent answers "+id, func() bool {
		for _, x := range ecp.DashboardReplies() {
			if x.RequestID == id {
				r = x
				return true
			}
		}
		return false
	})
	if r.Problem != nil {
		return agentproto.DashboardLogin{}, r.Problem
	}
	l, err := key.Open(r.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	return l, nil
}

// TestSec01ViewerRequestGetsEMQXViewerSession replays issue #11 finding 1
// on the agent's side: a request for a viewer session must yield a login
// of an EMQX user with role viewer, whose token EMQX refuses for
// POST /api/v5/api_key (the non-expiring key the attack created), never a
// login of the registered administrator; the viewer user comes back when
// it is deleted, its password changed or its role raised on the dashboard.
func TestSec01ViewerRequestGetsEMQXViewerSession(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.SetInterval(30)
	ecp.IssueToken("tok-1")
	dir := t.TempDir()
	h := startDaemon(t, dir)
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok-1", emqx.URL, "public")...); code != cli.ExitOK {
		t.Fatalf("register: %s", e)
	}
	admin := emqx.Login(t, "admin", "public")

	viewer := func(t *testing.T, id string) agentproto.DashboardLogin {
		t.Helper()
		l, p := askDashboard(t, ecp, id, agentproto.DashboardRoleViewer)
		if p != nil {
			t.Fatalf("viewer request %s not served: %+v", id, p)
		}
		if l.Role != agentproto.DashboardRoleViewer || l.Username != daemon.ViewerUsername {
			t.Fatalf("viewer request %s answered with user %q role %q, want %s viewer", id, l.Username, l.Role, daemon.ViewerUsername)
		}
		if st, code := emqxCall(t, emqx.URL, http.MethodGet, "/api/v5/nodes", l.Token, nil); st != http.StatusOK {
			t.Fatalf("EMQX refuses the viewer token for a read: %d %s", st, code)
		}
		st, code := emqxCall(t, emqx.URL, http.MethodPost, "/api/v5/api_key", l.Token, map[string]any{"name": "stolen", "enable": true})
		if st != http.StatusForbidden || code != "UNAUTHORIZED_ROLE" {
			t.Fatalf("POST /api/v5/api_key with the viewer's token: %d %s, want 403 UNAUTHORIZED_ROLE", st, code)
		}
		return l
	}

	first := viewer(t, "v-1")
	t.Run("the password is kept in the state dir, 0600, and logged nowhere", func(t *testing.T) {
		fi, err := os.Stat(filepath.Join(dir, state.ViewerFile))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", state.ViewerFile, fi.Mode().Perm())
		}
		v, ok, err := state.At(dir).LoadDashboardViewer()
		if err != nil || !ok || v.Password.IsZero() {
			t.Fatalf("viewer file: %+v %v %v", v, ok, err)
		}
		if strings.Contains(h.logs.String(), v.Password.Reveal()) || strings.Contains(h.logs.String(), first.Token) {
			t.Fatal("the viewer's password or token is in the agent's log")
		}
	})
	t.Run("an administrator request still gets the registered user", func(t *testing.T) {
		l, p := askDashboard(t, ecp, "a-1", agentproto.DashboardRoleAdministrator)
		if p != nil || l.Username != "admin" || l.Role != agentproto.DashboardRoleAdministrator {
			t.Fatalf("admin request: %+v %+v", l, p)
		}
	})
	t.Run("deleted on the dashboard", func(t *testing.T) {
		if st, code := emqxCall(t, emqx.URL, http.MethodDelete, "/api/v5/users/"+daemon.ViewerUsername, admin, nil); st != http.StatusNoContent {
			t.Fatalf("delete: %d %s", st, code)
		}
		viewer(t, "v-2")
	})
	t.Run("password changed by the viewer itself", func(t *testing.T) {
		l := viewer(t, "v-3")
		v, _, _ := state.At(dir).LoadDashboardViewer()
		st, code := emqxCall(t, emqx.URL, http.MethodPost, "/api/v5/users/"+daemon.ViewerUsername+"/change_pwd", l.Token,
			map[string]string{"old_pwd": v.Password.Reveal(), "new_pwd": "Chang3d-by-viewer"})
		if st != http.StatusNoContent {
			t.Fatalf("change_pwd: %d %s", st, code)
		}
		viewer(t, "v-4")
	})
	t.Run("raised to administrator on the dashboard", func(t *testing.T) {
		st, code := emqxCall(t, emqx.URL, http.MethodPut, "/api/v5/users/"+daemon.ViewerUsername, admin,
			map[string]string{"role": "administrator", "description": "raised"})
		if st != http.StatusOK {
			t.Fatalf("raise: %d %s", st, code)
		}
		viewer(t, "v-5")
	})
}
