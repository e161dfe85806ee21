package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestDashboardJump: the jump hands the browser a fresh EMQX login made by
// the agent, which EMQX (the simulator) accepts; a viewer of another project
// gets 404; the token reaches neither ecp's nor the agent's logs.
func TestDashboardJump(t *testing.T) {
	t.Parallel() // see TestMain
	s := startECP(t)
	ctx := t.Context()
	simURL := s.newSim()
	ps := s.projects("plant", "lab")
	plant, lab := ps[0], ps[1]
	m := s.manage(plant.ID, simURL)
	entry, setup, agent := m.entry, m.setup, m.agent

	noFollow := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	jump := func(t *testing.T, token string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/api/v1/clusters/"+entry.ID+"/dashboard", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}

	var token, viewerToken string
	t.Run("the redirect logs the browser in", func(t *testing.T) {
		start := time.Now()
		resp := jump(t, s.api.Token)
		took := time.Since(start)
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || resp.Header.Get("X-Ecp-Dashboard-Login") != "login_meta" {
			t.Fatalf("jump: %d %q (%s), want 302 with login_meta", resp.StatusCode, loc, resp.Header.Get("X-Ecp-Dashboard-Reason"))
		}
		t.Logf("jump answered in %s", took)
		meta := dashboardLogin(t, loc, simURL)
		if meta.Username != "admin" || meta.Version != "5.8.9" || meta.Token == "" || meta.License.Edition != "ee" || meta.Role != "administrator" {
			t.Fatalf("login_meta = %+v", meta)
		}
		token = meta.Token
		c := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 5 * time.Second}, Token: token}
		var nodes []map[string]any
		if err := c.Do(ctx, http.MethodGet, "/api/v5/nodes", nil, &nodes); err != nil {
			t.Fatalf("EMQX refuses the jump's token: %v", err)
		}
		if len(nodes) != 3 {
			t.Fatalf("nodes with the jump's token: %d, want 3", len(nodes))
		}
	})

	// issue #11 finding 1: a project viewer's jump carried the registered
	// administrator's session, with which the viewer created a
	// non-expiring EMQX API key. Now it carries a session of an EMQX
	// viewer user, which EMQX refuses for that write.
	t.Run("a viewer of the project gets an EMQX viewer session, no administrator", func(t *testing.T) {
		if err := s.api.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "plant-viewer", "password": "plant-viewer-password"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.api.Do(ctx, http.MethodPost, "/api/v1/role-bindings", map[string]string{"username": "plant-viewer", "role": "project-viewer", "project": plant.ID}, nil); err != nil {
			t.Fatal(err)
		}
		viewer, err := testbed.Login(ctx, s.base, "plant-viewer", "plant-viewer-password")
		if err != nil {
			t.Fatal(err)
		}
		resp := jump(t, viewer.Token)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("X-Ecp-Dashboard-Login") != "login_meta" {
			t.Fatalf("viewer's jump: %d %q (%s), want 302 with login_meta", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("X-Ecp-Dashboard-Reason"))
		}
		meta := dashboardLogin(t, resp.Header.Get("Location"), simURL)
		if meta.Role != "viewer" || meta.Username == "admin" || meta.Token == "" {
			t.Fatalf("viewer's login_meta = %+v, want an EMQX viewer", meta)
		}
		viewerToken = meta.Token
		c := &testbed.Client{BaseURL: simURL, HTTP: &http.Client{Timeout: 5 * time.Second}, Token: meta.Token}
		var nodes []map[string]any
		if err := c.Do(ctx, http.MethodGet, "/api/v5/nodes", nil, &nodes); err != nil {
			t.Fatalf("EMQX refuses the viewer's token for a read: %v", err)
		}
		err = c.Do(ctx, http.MethodPost, "/api/v5/api_key", map[string]any{"name": "viewer-escalation", "enable": true}, nil)
		var apiErr *testbed.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusForbidden || !strings.Contains(apiErr.Message, "UNAUTHORIZED_ROLE") {
			t.Fatalf("POST /api/v5/api_key with the viewer's jump token: %v, want 403 UNAUTHORIZED_ROLE", err)
		}
	})

	t.Run("a viewer of another project gets 404", func(t *testing.T) {
		if err := s.api.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "lab-viewer", "password": "lab-viewer-password"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.api.Do(ctx, http.MethodPost, "/api/v1/role-bindings", map[string]string{"username": "lab-viewer", "role": "project-viewer", "project": lab.ID}, nil); err != nil {
			t.Fatal(err)
		}
		viewer, err := testbed.Login(ctx, s.base, "lab-viewer", "lab-viewer-password")
		if err != nil {
			t.Fatal(err)
		}
		if resp := jump(t, viewer.Token); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("viewer of another project: %d %q, want 404", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("the jump is audited", func(t *testing.T) {
		var recs struct {
			Items []struct {
				Actor, Route, Target string
				Status               int
			} `json:"items"`
		}
		if err := s.api.Do(ctx, http.MethodGet, "/api/v1/audit", nil, &recs); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs.Items {
			if r.Route == "/api/v1/clusters/{id}/dashboard" && r.Actor == "admin" && r.Target == "cluster/"+entry.ID && r.Status == http.StatusFound {
				return
			}
		}
		t.Fatalf("no audit record of admin's jump into %s: %+v", entry.ID, recs.Items)
	})

	t.Run("the token is in no log", func(t *testing.T) {
		if token == "" {
			t.Skip("no token was handed out")
		}
		logs := map[string]string{"ecp": s.ecp.Tail(64 << 20), "agent stdout": agent.Tail(64 << 20)}
		if b, err := os.ReadFile(filepath.Join(setup.Dir, "agent.log")); err == nil {
			logs["agent.log"] = string(b)
		} else {
			t.Fatalf("read the agent's log: %v", err)
		}
		for name, text := range logs {
			if text == "" && name != "agent stdout" {
				t.Fatalf("%s log is empty: the check would prove nothing", name)
			}
			if strings.Contains(text, token) || (viewerToken != "" && strings.Contains(text, viewerToken)) {
				t.Fatalf("a dashboard token appears in the %s log", name)
			}
		}
		if !strings.Contains(logs["agent.log"], "dashboard session handed to ecp") {
			t.Fatalf("the agent's log does not show the hand-over")
		}
	})

	t.Run("a silent agent gives the plain redirect, not a hang", func(t *testing.T) {
		if err := agent.Stop(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp := jump(t, s.api.Token)
		took := time.Since(start)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != simURL || resp.Header.Get("X-Ecp-Dashboard-Login") != "none" ||
			!strings.Contains(resp.Header.Get("X-Ecp-Dashboard-Reason"), "did not answer") {
			t.Fatalf("jump with the agent stopped: %d %q %v", resp.StatusCode, resp.Header.Get("Location"), resp.Header)
		}
		// The client's 15 s timeout fails the test if ecp hangs.
		t.Logf("fallback answered in %s", took)
	})
}

// jumpMeta is the login_meta a dashboard jump hands the browser.
type jumpMeta struct {
	Username string `json:"username"`
	Token    string `json:"token"`
	Role     string `json:"role"`
	Version  string `json:"version"`
	License  struct {
		Edition string `json:"edition"`
	} `json:"license"`
}

// dashboardLogin decodes the login_meta of a jump's Location, which must
// be the hash form on the dashboard at simURL.
func dashboardLogin(t *testing.T, loc, simURL string) jumpMeta {
	t.Helper()
	prefix := simURL + "/#/dashboard/overview?login_meta="
	if !strings.HasPrefix(loc, prefix) {
		t.Fatalf("Location %q, want the hash form %q…", loc, prefix)
	}
	raw, err := url.QueryUnescape(strings.TrimPrefix(loc, prefix))
	if err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatalf("login_meta is not base64: %v", err)
	}
	var meta jumpMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	return meta
}
