package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

// jumpAgent is a fake agent for the dashboard jump: it long-polls its
// desired state and answers each dashboard request as mode says.
type jumpAgent struct {
	base, cred string
	// mode: "old" answers every request with the registered administrator
	// (an agent from before roles), "roles" with the role asked for,
	// "noviewer" refuses viewer requests.
	mode  atomic.Value
	mu    sync.Mutex
	roles []string
}

const (
	jumpAdminToken  = "emqx-administrator-token"
	jumpViewerToken = "emqx-viewer-token"
)

func (a *jumpAgent) run(ctx context.Context, t *testing.T) {
	seen := map[string]bool{}
	after := int64(0)
	for ctx.Err() == nil {
		var d agentproto.DesiredState
		st, err := a.call(ctx, http.MethodGet, agentproto.PathDesired+"?after="+strconv.FormatInt(after, 10)+"&timeout=5s", nil, &d)
		if err != nil || st == http.StatusNoContent {
			continue
		}
		after = d.Revision
		for _, req := range d.DashboardSessions {
			if seen[req.ID] {
				continue
			}
			seen[req.ID] = true
			a.mu.Lock()
			a.roles = append(a.roles, req.Role)
			a.mu.Unlock()
			reply := agentproto.DashboardSessionReply{RequestID: req.ID}
			login := agentproto.DashboardLogin{Username: "admin", Token: jumpAdminToken, Role: agentproto.DashboardRoleAdministrator, Version: "5.8.9", Edition: "ee"}
			switch mode := a.mode.Load().(string); {
			case req.Role == agentproto.DashboardRoleViewer && mode == "roles":
				login = agentproto.DashboardLogin{Username: "ecp_agent_viewer", Token: jumpViewerToken, Role: agentproto.DashboardRoleViewer, Version: "5.8.9", Edition: "ee"}
			case req.Role == agentproto.DashboardRoleViewer && mode == "noviewer":
				reply.Problem = &agentproto.Problem{Code: agentproto.ProblemDashboardViewerUnavailable, Message: "EMQX answered 403 UNAUTHORIZED_ROLE to POST /api/v5/users"}
			}
			if reply.Problem == nil {
				if reply.Sealed, err = agentproto.SealDashboardLogin(req.PublicKey, login); err != nil {
					t.Errorf("seal: %v", err)
				}
			}
			if st, err := a.call(ctx, http.MethodPost, agentproto.PathDashboardSession, reply, nil); err != nil || st != http.StatusNoContent {
				t.Errorf("answer %s: %d %v", req.ID, st, err)
			}
		}
	}
}

func (a *jumpAgent) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cred)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode, nil
}

func (a *jumpAgent) lastRole() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.roles) == 0 {
		return ""
	}
	return a.roles[len(a.roles)-1]
}

// loginMeta decodes the login_meta of a jump's Location.
func loginMeta(t *testing.T, loc string) (m struct{ Username, Token, Role string }) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	q, err := url.ParseQuery(strings.TrimPrefix(u.Fragment, "/dashboard/overview?"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(q.Get("login_meta"))
	if err != nil || json.Unmarshal(b, &m) != nil {
		t.Fatalf("Location %q carries no login_meta", loc)
	}
	return m
}

// TestSec01DashboardJumpNeverExceedsCallerRole replays issue #11 finding
// 1: a project viewer opened GET /clusters/{id}/dashboard and got a
// login_meta of the registered EMQX administrator. Now the request names
// the role the caller may have, a viewer gets an EMQX viewer session, and
// an agent that answers a viewer with an administrator login (one from
// before roles) or cannot make a viewer session gets 403, never the admin
// token.
func TestSec01DashboardJumpNeverExceedsCallerRole(t *testing.T) {
	opts := sharedEtcdOptions(t)
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	for user, role := range map[string]string{"vera": "project-viewer", "pam": "project-admin"} {
		h.must(201, "POST", "/api/v1/users", admin, map[string]string{"username": user, "password": user + "-password"})
		h.must(201, "POST", "/api/v1/role-bindings", admin, map[string]string{"username": user, "role": role, "project": project})
	}
	viewer, projectAdmin := h.login("vera", "vera-password"), h.login("pam", "pam-password")
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c", "serviceUrl": "http://emqx.example:18083"}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	var out agentproto.RegisterResponse
	registerAgent(h, reg.Token).decode(t, &out)

	a := &jumpAgent{base: h.app.URL(), cred: out.Credential}
	a.mode.Store("old")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.run(ctx, t) }()
	defer func() { cancel(); <-done }()

	jump := func(token string) reply { return h.do("GET", "/api/v1/clusters/"+id+"/dashboard", token, nil) }
	refused := func(t *testing.T, r reply, want string) {
		t.Helper()
		if r.status != http.StatusForbidden || r.header.Get("Location") != "" {
			t.Fatalf("viewer's jump: %d Location %q, want 403 saying %q", r.status, r.header.Get("Location"), want)
		}
		var e apiError
		r.decode(t, &e)
		if !strings.Contains(e.Error.Message, want) {
			t.Fatalf("viewer's jump refused with %q, want it to say %q", e.Error.Message, want)
		}
		if bytes.Contains(r.body, []byte(jumpAdminToken)) {
			t.Fatal("the administrator token reached the viewer")
		}
	}
	granted := func(t *testing.T, token, wantRole, wantToken string) {
		t.Helper()
		r := jump(token)
		if r.status != http.StatusFound || r.header.Get("X-Ecp-Dashboard-Login") != "login_meta" {
			t.Fatalf("jump: %d %s %v", r.status, r.body, r.header)
		}
		m := loginMeta(t, r.header.Get("Location"))
		if m.Role != wantRole || m.Token != wantToken || a.lastRole() != wantRole {
			t.Fatalf("login_meta role %q token %q (agent asked for %q), want %s %s", m.Role, m.Token, a.lastRole(), wantRole, wantToken)
		}
	}

	t.Run("an agent from before roles answers a viewer with the administrator: 403", func(t *testing.T) {
		refused(t, jump(viewer), "viewer session")
		if a.lastRole() != agentproto.DashboardRoleViewer {
			t.Fatalf("the request asked for role %q, want viewer", a.lastRole())
		}
		granted(t, projectAdmin, agentproto.DashboardRoleAdministrator, jumpAdminToken)
	})
	t.Run("an agent that knows roles: viewer session for the viewer, administrator for admins", func(t *testing.T) {
		a.mode.Store("roles")
		granted(t, viewer, agentproto.DashboardRoleViewer, jumpViewerToken)
		granted(t, projectAdmin, agentproto.DashboardRoleAdministrator, jumpAdminToken)
		granted(t, admin, agentproto.DashboardRoleAdministrator, jumpAdminToken)
	})
	t.Run("no viewer session to be had: 403, no fallback", func(t *testing.T) {
		a.mode.Store("noviewer")
		refused(t, jump(viewer), "UNAUTHORIZED_ROLE")
	})
}

// TestSec01TransferDropsHandSetServiceURL replays the transfer half of
// issue #11 finding 1: project A's admin set the service URL to a host of
// their own, then the cluster moved to project B, whose users' jumps (with
// their dashboard sessions in the URL) went to that host. A transfer now
// falls back to the dashboard URL the agent registered unless the request
// names the URL to keep, and the reply shows it.
func TestSec01TransferDropsHandSetServiceURL(t *testing.T) {
	opts := sharedEtcdOptions(t)
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	var orgs struct{ Items []struct{ ID string } }
	h.must(200, "GET", "/api/v1/orgs", admin, nil).decode(t, &orgs)
	other := h.id(h.must(201, "POST", "/api/v1/orgs/"+orgs.Items[0].ID+"/projects", admin, map[string]string{"name": "b"}))
	const planted = "https://collector.attacker.example/emqx"
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c", "serviceUrl": planted}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	h.must(200, "POST", agentproto.PathRegister, "", agentproto.RegisterRequest{Token: reg.Token, AgentVersion: "test", DashboardURL: "http://emqx.example:18083"})

	var c clusterJSON
	h.must(200, "POST", "/api/v1/clusters/"+id+"/transfer", admin, map[string]string{"project": other}).decode(t, &c)
	if c.Project != other || c.ServiceURL != "http://emqx.example:18083" {
		t.Fatalf("after transfer: project %s serviceUrl %q, want %s and the agent's http://emqx.example:18083", c.Project, c.ServiceURL, other)
	}
	if r := h.do("GET", "/api/v1/clusters/"+id+"/dashboard", admin, nil); strings.HasPrefix(r.header.Get("Location"), planted) {
		t.Fatalf("the jump still goes to the old project's URL: %s", r.header.Get("Location"))
	}
	t.Run("the registration guide names the URL the entry shows", func(t *testing.T) {
		// Re-registering after the transfer: the guide fills in what the
		// entry shows (the agent's URL), not placeholders the operator
		// would have to look up again.
		var guide struct {
			Placeholders []string
			Commands     []struct{ Register string }
		}
		h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &guide)
		if len(guide.Commands) == 0 || !strings.Contains(guide.Commands[0].Register, "--api-url http://emqx.example:18083") ||
			!slices.Equal(guide.Placeholders, []string{"<EMQX_USERNAME>"}) {
			t.Fatalf("guide after the transfer: placeholders %v, commands %+v; want the agent's http://emqx.example:18083 filled in", guide.Placeholders, guide.Commands)
		}
	})
	t.Run("kept when the transfer names it", func(t *testing.T) {
		h.must(200, "POST", "/api/v1/clusters/"+id+"/transfer", admin, map[string]string{"project": project, "serviceUrl": "https://emqx.plant.example"}).decode(t, &c)
		if c.ServiceURL != "https://emqx.plant.example" {
			t.Fatalf("serviceUrl %q after a transfer that names it", c.ServiceURL)
		}
	})
}

// TestSec01DashboardURLsAreHTTP replays the "javascript: dashboard URL"
// finding of issue #11: URLs that become links and redirect targets are
// refused unless they are absolute http(s) URLs with a host, whether a
// user or an agent sends them, with the field named.
func TestSec01DashboardURLsAreHTTP(t *testing.T) {
	opts := sharedEtcdOptions(t)
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	bad := []string{"javascript:alert(document.domain)//", "data:text/html,<script>alert(1)</script>", "//evil.example", "http://emqx.example:18083/#/x", "http:emqx"}
	field := func(t *testing.T, r reply, want string) {
		t.Helper()
		var e apiError
		r.decode(t, &e)
		if r.status != http.StatusBadRequest || e.Error.Field != want {
			t.Fatalf("%d %s, want 400 naming %s", r.status, r.body, want)
		}
	}
	for _, u := range bad {
		t.Run(u, func(t *testing.T) {
			field(t, h.do("POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "x", "serviceUrl": u}), "serviceUrl")
			field(t, h.do("PATCH", "/api/v1/clusters/"+id, admin, map[string]string{"serviceUrl": u}), "serviceUrl")
			var reg struct{ Token string }
			h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
			field(t, h.do("POST", agentproto.PathRegister, "", agentproto.RegisterRequest{Token: reg.Token, AgentVersion: "test", DashboardURL: u}), "dashboardUrl")
		})
	}
	var c clusterJSON
	h.must(200, "GET", "/api/v1/clusters/"+id, admin, nil).decode(t, &c)
	if c.ServiceURL != "" || c.State != "created" {
		t.Fatalf("after the refusals: serviceUrl %q state %s", c.ServiceURL, c.State)
	}
}
