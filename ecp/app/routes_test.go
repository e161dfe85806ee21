package app

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/console"
)

// Roles of the route table, in the order of the expectations.
var roleNames = []string{"system-admin", "org-admin", "project-admin", "project-viewer", "no-binding", "anonymous"}

const (
	sysAdm = iota
	orgAdm
	prjAdm
	viewer
	nobody
	anon
)

// tenants is the world the table runs in: the roles are held in org A
// (org-admin of A; project-admin and project-viewer of A1 and A2); org B
// with B1 and B2 is the foreign tenant.
type tenants struct {
	h                          *harness
	token                      [6]string
	orgA, orgB                 string
	a1, a2, b1, b2             string
	seq                        atomic.Int64
	adminToken, otherUserToken string
}

func (w *tenants) unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, w.seq.Add(1))
}

func newTenants(t *testing.T, h *harness) *tenants {
	t.Helper()
	w := &tenants{h: h}
	admin := h.login("admin", testAdminPassword)
	w.adminToken = admin
	w.orgA = h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "org-a"}))
	w.orgB = h.id(h.must(201, "POST", "/api/v1/orgs", admin, map[string]string{"name": "org-b"}))
	w.a1 = h.id(h.must(201, "POST", "/api/v1/orgs/"+w.orgA+"/projects", admin, map[string]string{"name": "a1"}))
	w.a2 = h.id(h.must(201, "POST", "/api/v1/orgs/"+w.orgA+"/projects", admin, map[string]string{"name": "a2"}))
	w.b1 = h.id(h.must(201, "POST", "/api/v1/orgs/"+w.orgB+"/projects", admin, map[string]string{"name": "b1"}))
	w.b2 = h.id(h.must(201, "POST", "/api/v1/orgs/"+w.orgB+"/projects", admin, map[string]string{"name": "b2"}))
	users := []string{"", "orga-admin", "a1-admin", "a1-viewer", "nobody", "other"}
	for _, u := range users[1:] {
		h.must(201, "POST", "/api/v1/users", admin, map[string]string{"username": u, "password": "password-" + u})
	}
	bind := func(u, role, org, project string) {
		h.must(201, "POST", "/api/v1/role-bindings", admin, map[string]string{"username": u, "role": role, "org": org, "project": project})
	}
	bind("orga-admin", "org-admin", w.orgA, "")
	for _, p := range []string{w.a1, w.a2} {
		bind("a1-admin", "project-admin", "", p)
		bind("a1-viewer", "project-viewer", "", p)
	}
	w.token[sysAdm] = admin
	for i := orgAdm; i <= nobody; i++ {
		w.token[i] = h.login(users[i], "password-"+users[i])
	}
	w.otherUserToken = h.login("other", "password-other")
	return w
}

func (w *tenants) project(foreign bool) string {
	if foreign {
		return w.b1
	}
	return w.a1
}

func (w *tenants) org(foreign bool) string {
	if foreign {
		return w.orgB
	}
	return w.orgA
}

// cluster creates a cluster entry (as system admin) in A1 or B1.
func (w *tenants) cluster(foreign bool) string {
	return w.h.id(w.h.must(201, "POST", "/api/v1/projects/"+w.project(foreign)+"/clusters", w.adminToken,
		map[string]string{"name": w.unique("c"), "serviceUrl": "http://emqx.example:18083"}))
}

// freshUser creates a user with no roles.
func (w *tenants) freshUser() string {
	u := w.unique("u")
	w.h.must(201, "POST", "/api/v1/users", w.adminToken, map[string]string{"username": u, "password": "password-" + u})
	return u
}

type call struct {
	path string
	body any
}

type routeCase struct {
	// prepare builds the call for role r against the own (foreign=false)
	// or foreign tenant; it may create what the call acts on.
	prepare func(w *tenants, r int, foreign bool) call
	own     [6]int
	foreign [6]int
}

// same is for routes where the tenant makes no difference.
func same(codes [6]int) ([6]int, [6]int) { return codes, codes }

func fixed(path string, body any) func(*tenants, int, bool) call {
	return func(*tenants, int, bool) call { return call{path: path, body: body} }
}

// routeTable is every route of the app with the exact status each role
// gets on its own and on a foreign tenant.
func routeTable() map[string]routeCase {
	all := func(code int) [6]int { return [6]int{code, code, code, code, code, 401} }
	public := func(code int) [6]int { return [6]int{code, code, code, code, code, code} }
	onlySys := func(code int) [6]int { return [6]int{code, 403, 403, 403, 403, 401} }
	// Project-scoped reads: viewers and up; no binding is 404.
	read := func(code int) ([6]int, [6]int) {
		return [6]int{code, code, code, code, 404, 401}, [6]int{code, 404, 404, 404, 404, 401}
	}
	// Project-scoped changes: admins; viewer 403; no binding 404.
	change := func(code int) ([6]int, [6]int) {
		return [6]int{code, code, code, 403, 404, 401}, [6]int{code, 404, 404, 404, 404, 401}
	}
	rc := func(prepare func(*tenants, int, bool) call, own, foreign [6]int) routeCase {
		return routeCase{prepare: prepare, own: own, foreign: foreign}
	}
	clusterPath := func(suffix string, body any) func(*tenants, int, bool) call {
		return func(w *tenants, _ int, foreign bool) call {
			return call{path: "/api/v1/clusters/" + w.cluster(foreign) + suffix, body: body}
		}
	}
	// The grantee is a viewer of A1: admins of A1 (and A) see it, so they
	// may grant it more (issue #11 finding 10: a user they cannot see is
	// answered as absent).
	bindingBody := func(w *tenants, foreign bool) map[string]string {
		u := w.freshUser()
		w.h.must(201, "POST", "/api/v1/role-bindings", w.adminToken, map[string]string{"username": u, "role": "project-viewer", "project": w.a1})
		return map[string]string{"username": u, "role": "project-admin", "project": w.project(foreign)}
	}
	existingBinding := func(w *tenants, foreign bool) (map[string]string, string) {
		b := bindingBody(w, foreign)
		return b, w.h.id(w.h.must(201, "POST", "/api/v1/role-bindings", w.adminToken, b))
	}
	t := map[string]routeCase{}
	add := func(key string, prepare func(*tenants, int, bool) call, own, foreign [6]int) {
		t[key] = rc(prepare, own, foreign)
	}
	o, f := same(public(200))
	add("POST /api/v1/login", fixed("/api/v1/login", map[string]string{"username": "nobody", "password": "password-nobody"}), o, f)
	o, f = same(all(200))
	add("GET /api/v1/users", fixed("/api/v1/users", nil), o, f)
	o, f = same(onlySys(201))
	add("POST /api/v1/users", func(w *tenants, _ int, _ bool) call {
		u := w.unique("new")
		return call{path: "/api/v1/users", body: map[string]string{"username": u, "password": "password-" + u}}
	}, o, f)
	// Own: the caller's own user (anonymous: "nobody"). Foreign: another.
	users := []string{"admin", "orga-admin", "a1-admin", "a1-viewer", "nobody", "nobody"}
	add("PUT /api/v1/users/{username}/password", func(w *tenants, r int, foreign bool) call {
		u := users[r]
		current := "password-" + u
		if u == "admin" {
			current = testAdminPassword
		}
		password := current
		if foreign {
			u, current, password = w.freshUser(), "", "a-new-password"
		}
		return call{path: "/api/v1/users/" + u + "/password", body: map[string]string{"currentPassword": current, "password": password}}
	}, [6]int{204, 204, 204, 204, 204, 401}, [6]int{204, 404, 404, 404, 404, 401})
	add("DELETE /api/v1/users/{username}", func(w *tenants, r int, foreign bool) call {
		u := users[r]
		if foreign {
			u = w.freshUser()
		}
		return call{path: "/api/v1/users/" + u}
	}, [6]int{409, 403, 403, 403, 403, 401}, [6]int{204, 404, 404, 404, 404, 401})
	o, f = same(all(200))
	add("GET /api/v1/api-tokens", fixed("/api/v1/api-tokens", nil), o, f)
	o, f = same(all(201))
	add("POST /api/v1/api-tokens", fixed("/api/v1/api-tokens", map[string]string{"name": "ci"}), o, f)
	// Own: the caller's own token. Foreign: a token of another user.
	add("DELETE /api/v1/api-tokens/{id}", func(w *tenants, r int, foreign bool) call {
		owner := w.otherUserToken
		if !foreign && r != anon {
			owner = w.token[r]
		}
		id := w.h.id(w.h.must(201, "POST", "/api/v1/api-tokens", owner, map[string]string{"name": "t"}))
		return call{path: "/api/v1/api-tokens/" + id}
	}, all(204), [6]int{204, 404, 404, 404, 404, 401})
	o, f = same(all(200))
	add("GET /api/v1/orgs", fixed("/api/v1/orgs", nil), o, f)
	o, f = same(onlySys(201))
	add("POST /api/v1/orgs", func(w *tenants, _ int, _ bool) call {
		return call{path: "/api/v1/orgs", body: map[string]string{"name": w.unique("org")}}
	}, o, f)
	add("GET /api/v1/orgs/{org}", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/orgs/" + w.org(foreign)}
	}, [6]int{200, 200, 200, 200, 404, 401}, [6]int{200, 404, 404, 404, 404, 401})
	o, f = read(200)
	add("GET /api/v1/projects/{project}", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign)}
	}, o, f)
	add("GET /api/v1/orgs/{org}/projects", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/orgs/" + w.org(foreign) + "/projects"}
	}, [6]int{200, 200, 200, 200, 404, 401}, [6]int{200, 404, 404, 404, 404, 401})
	add("POST /api/v1/orgs/{org}/projects", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/orgs/" + w.org(foreign) + "/projects", body: map[string]string{"name": w.unique("p")}}
	}, [6]int{201, 201, 403, 403, 404, 401}, [6]int{201, 404, 404, 404, 404, 401})
	o, f = same(all(200))
	add("GET /api/v1/projects", fixed("/api/v1/projects", nil), o, f)
	add("GET /api/v1/role-bindings", fixed("/api/v1/role-bindings", nil), all(200), all(200))
	o, f = change(201)
	add("POST /api/v1/role-bindings", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/role-bindings", body: bindingBody(w, foreign)}
	}, o, f)
	o, f = change(204)
	add("DELETE /api/v1/role-bindings", func(w *tenants, _ int, foreign bool) call {
		b, _ := existingBinding(w, foreign)
		return call{path: "/api/v1/role-bindings", body: b}
	}, o, f)
	add("DELETE /api/v1/role-bindings/{id}", func(w *tenants, _ int, foreign bool) call {
		_, id := existingBinding(w, foreign)
		return call{path: "/api/v1/role-bindings/" + id}
	}, o, f)
	o, f = same(all(200))
	add("GET /api/v1/clusters", fixed("/api/v1/clusters?state=created", nil), o, f)
	o, f = read(200)
	add("GET /api/v1/projects/{project}/clusters", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/clusters"}
	}, o, f)
	o, f = change(201)
	add("POST /api/v1/projects/{project}/clusters", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/clusters", body: map[string]string{"name": w.unique("c")}}
	}, o, f)
	o, f = read(200)
	add("GET /api/v1/projects/{project}/monitoring", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/monitoring"}
	}, o, f)
	o, f = read(200)
	add("GET /api/v1/clusters/{id}", clusterPath("", nil), o, f)
	o, f = change(200)
	// A fresh name each time: cluster names are unique within a project.
	add("PATCH /api/v1/clusters/{id}", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/clusters/" + w.cluster(foreign), body: map[string]string{"name": w.unique("renamed")}}
	}, o, f)
	o, f = change(204)
	add("DELETE /api/v1/clusters/{id}", clusterPath("", nil), o, f)
	o, f = change(201)
	add("POST /api/v1/clusters/{id}/registration", clusterPath("/registration", nil), o, f)
	o, f = change(200)
	add("POST /api/v1/clusters/{id}/transfer", func(w *tenants, _ int, foreign bool) call {
		target := w.a2
		if foreign {
			target = w.b2
		}
		return call{path: "/api/v1/clusters/" + w.cluster(foreign) + "/transfer", body: map[string]string{"project": target}}
	}, o, f)
	add("PUT /api/v1/clusters/{id}/max-connections", clusterPath("/max-connections", map[string]int{"maxConnections": 20}), o, f)
	o, f = read(302)
	add("GET /api/v1/clusters/{id}/dashboard", clusterPath("/dashboard", nil), o, f)
	o, f = same(all(200))
	add("GET /api/v1/licence", fixed("/api/v1/licence", nil), o, f)
	// Quotas: members read; the admin above sets (system admin for an
	// organization, org admin for a project). null keeps the world
	// unbounded for the other rows.
	add("GET /api/v1/orgs/{org}/quota", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/orgs/" + w.org(foreign) + "/quota"}
	}, [6]int{200, 200, 200, 200, 404, 401}, [6]int{200, 404, 404, 404, 404, 401})
	add("PUT /api/v1/orgs/{org}/quota", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/orgs/" + w.org(foreign) + "/quota", body: map[string]any{"maxConnections": nil}}
	}, [6]int{200, 403, 403, 403, 404, 401}, [6]int{200, 404, 404, 404, 404, 401})
	o, f = read(200)
	add("GET /api/v1/projects/{project}/quota", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/quota"}
	}, o, f)
	add("PUT /api/v1/projects/{project}/quota", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/quota", body: map[string]any{"maxConnections": nil}}
	}, [6]int{200, 200, 403, 403, 404, 401}, [6]int{200, 404, 404, 404, 404, 401})
	o, f = same([6]int{200, 200, 200, 403, 403, 401})
	add("GET /api/v1/audit", fixed("/api/v1/audit", nil), o, f)
	o, f = read(200)
	add("GET /api/v1/projects/{project}/alert-settings", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alert-settings"}
	}, o, f)
	add("GET /api/v1/projects/{project}/alerts", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alerts?state=history"}
	}, o, f)
	o, f = change(200)
	add("PUT /api/v1/projects/{project}/alert-settings", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alert-settings", body: map[string]any{
			"enabled": true, "triggerCount": 2, "recoveryCount": 1, "severity": "warning", "webhooks": []map[string]string{{"url": "http://203.0.113.9/hook"}}}}
	}, o, f)
	// This app has no Alertmanager to send a test through.
	o, f = change(409)
	add("POST /api/v1/projects/{project}/alert-settings/test", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alert-settings/test"}
	}, o, f)
	o, f = change(204)
	add("DELETE /api/v1/alerts/{id}", func(w *tenants, _ int, foreign bool) call {
		token, err := alerts.WebhookToken(context.Background(), w.h.app.EtcdClient(), w.h.app.SecretsKey())
		if err != nil {
			w.h.t.Fatal(err)
		}
		starts := time.Now().UTC().Truncate(time.Second)
		fp := w.unique("fp")
		w.h.must(204, "POST", alerts.WebhookPath, token.Reveal(), map[string]any{"version": "4", "status": "firing", "alerts": []map[string]any{{
			"status": "firing", "fingerprint": fp, "startsAt": starts,
			"labels": map[string]string{"alertname": "EMQXConnectorAbnormal", "project": w.project(foreign), "cluster": "c1", "severity": "warning"},
		}}})
		return call{path: "/api/v1/alerts/" + alerts.AlertID(fp, starts)}
	}, o, f)
	// Silences live in Alertmanager, which this app has none of: whoever
	// may act on the project hears 409 AlertmanagerNotConfigured.
	o, f = read(409)
	add("GET /api/v1/projects/{project}/silences", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/silences"}
	}, o, f)
	o, f = change(409)
	add("POST /api/v1/projects/{project}/silences", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/silences", body: map[string]any{
			"cluster": "c1", "duration": "1h", "comment": "maintenance window"}}
	}, o, f)
	o, f = same(all(409))
	add("DELETE /api/v1/silences/{id}", fixed("/api/v1/silences/0b3f2c1e-5d6a-4b7c-8d9e-0f1a2b3c4d5e", nil), o, f)
	o, f = read(200)
	add("GET /api/v1/projects/{project}/alerts/storm", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alerts/storm"}
	}, o, f)
	// No storm to clear.
	o, f = change(409)
	add("DELETE /api/v1/projects/{project}/alerts/storm", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alerts/storm"}
	}, o, f)
	o, f = change(200)
	add("DELETE /api/v1/projects/{project}/alerts/history", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/alerts/history?count=1"}
	}, o, f)
	// The custom-alarm token: the routes that read or revoke one find it
	// made by the system admin first.
	withToken := func(w *tenants, _ int, foreign bool) call {
		path := "/api/v1/projects/" + w.project(foreign) + "/custom-alarm-token"
		w.h.must(201, "POST", path, w.adminToken, nil)
		return call{path: path}
	}
	o, f = read(200)
	add("GET /api/v1/projects/{project}/custom-alarm-token", withToken, o, f)
	o, f = change(201)
	add("POST /api/v1/projects/{project}/custom-alarm-token", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/custom-alarm-token"}
	}, o, f)
	o, f = change(204)
	add("DELETE /api/v1/projects/{project}/custom-alarm-token", withToken, o, f)
	// Custom alarms take the project's alarm token, never a user's.
	o, f = same(public(401))
	add("POST /api/v1/projects/{project}/custom-alarms", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/custom-alarms", body: map[string]any{
			"name": "LineStopped", "severity": "warning", "message": "line 3 stopped"}}
	}, o, f)
	o, f = same(onlySys(200))
	add("GET /api/v1/system/alerting", fixed("/api/v1/system/alerting", nil), o, f)
	add("GET /api/v1/system/notification-policy", fixed("/api/v1/system/notification-policy", nil), o, f)
	add("PUT /api/v1/system/notification-policy", fixed("/api/v1/system/notification-policy", map[string]any{"denyCidrs": []string{"198.51.100.0/24"}}), o, f)
	// Alertmanager's webhook takes its own token, never a user's.
	o, f = same(public(401))
	add("POST "+alerts.WebhookPath, fixed(alerts.WebhookPath, map[string]any{"version": "4", "alerts": []any{}}), o, f)
	add("POST "+alerts.RelayPath, func(w *tenants, _ int, foreign bool) call {
		return call{path: alerts.WebhookPath + "/" + w.project(foreign) + "/0123456789abcdef", body: map[string]any{"version": "4", "alerts": []any{}}}
	}, o, f)
	// Logs: this app has no log receiver, so whoever may read the project
	// hears 503 LogReceiverNotConfigured; a store at a closed port fails
	// the connection test (422).
	o, f = [6]int{503, 503, 503, 503, 404, 401}, [6]int{503, 404, 404, 404, 404, 401}
	add("GET /api/v1/projects/{project}/logs", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/logs"}
	}, o, f)
	add("GET /api/v1/projects/{project}/logs/count", func(w *tenants, _ int, foreign bool) call {
		return call{path: "/api/v1/projects/" + w.project(foreign) + "/logs/count"}
	}, o, f)
	o, f = same(onlySys(200))
	add("GET /api/v1/system/log-receiver", fixed("/api/v1/system/log-receiver", nil), o, f)
	o, f = same(onlySys(422))
	add("PUT /api/v1/system/log-receiver", fixed("/api/v1/system/log-receiver", map[string]any{"type": "victorialogs", "url": "http://127.0.0.1:1"}), o, f)
	add("POST /api/v1/system/log-receiver/test", fixed("/api/v1/system/log-receiver/test", nil), o, f)
	o, f = same(public(200))
	add("GET /api/v1/openapi.json", fixed("/api/v1/openapi.json", nil), o, f)
	add("GET /downloads/agent-exporter/{os}/{arch}", fixed("/downloads/agent-exporter/linux/arm64", nil), o, f)
	add("HEAD /downloads/agent-exporter/{os}/{arch}", fixed("/downloads/agent-exporter/linux/arm64", nil), o, f)
	add("GET /downloads/agent-exporter.service", fixed("/downloads/agent-exporter.service", nil), o, f)
	add("HEAD /downloads/agent-exporter.service", fixed("/downloads/agent-exporter.service", nil), o, f)
	add("GET /metrics", fixed("/metrics", nil), o, f)
	add("GET /-/healthy", fixed("/-/healthy", nil), o, f)
	add("HEAD /-/healthy", fixed("/-/healthy", nil), o, f)
	add("GET /-/ready", fixed("/-/ready", nil), o, f)
	add("HEAD /-/ready", fixed("/-/ready", nil), o, f)
	add("POST /-/reload", fixed("/-/reload", nil), o, f)
	// The agent API takes agent credentials and registration tokens, never
	// user tokens: every role is a stranger to it.
	o, f = same(public(401))
	add("POST "+agentproto.PathRegister, fixed(agentproto.PathRegister, agentproto.RegisterRequest{Token: "ecpr_not-a-token", AgentVersion: "t"}), o, f)
	add("POST "+agentproto.PathReport, fixed(agentproto.PathReport, agentproto.ReportRequest{}), o, f)
	add("POST "+agentproto.PathWrite, fixed(agentproto.PathWrite, nil), o, f)
	add("POST "+agentproto.PathUnregister, fixed(agentproto.PathUnregister, nil), o, f)
	add("POST "+agentproto.PathLogs, fixed(agentproto.PathLogs, agentproto.LogBatch{BatchID: "b"}), o, f)
	add("GET "+agentproto.PathDesired, fixed(agentproto.PathDesired+"?timeout=1s", nil), o, f)
	add("POST "+agentproto.PathDashboardSession, fixed(agentproto.PathDashboardSession, agentproto.DashboardSessionReply{RequestID: "r", Sealed: "x"}), o, f)
	return t
}

// anyMethod is the method part of the key of a route registered without
// .Methods(): it answers every method, so it must be in the table (and the
// table's author must say what each role gets) like any other route.
const anyMethod = "ANY"

// routeKeys walks the router: "METHOD template" of every route that
// handles requests. Only subrouter mounts (no handler of their own; the
// walk descends into them) and console pages are left out; a handler
// without .Methods() is "ANY template", one without a path "METHOD <any
// path>", so nothing reachable escapes the table.
func routeKeys(t *testing.T, r *mux.Router) []string {
	t.Helper()
	var keys []string
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if strings.HasPrefix(route.GetName(), console.RouteNamePrefix) {
			// Console pages authenticate by session cookie and CSRF token;
			// ecp/console tests them per role through the same API.
			return nil
		}
		if route.GetHandler() == nil {
			// A subrouter's mount: Walk visits its routes next.
			return nil
		}
		tpl, err := route.GetPathTemplate()
		if err != nil {
			tpl = "<any path>"
		}
		methods, err := route.GetMethods()
		if err != nil {
			methods = []string{anyMethod}
		}
		for _, m := range methods {
			keys = append(keys, m+" "+tpl)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func TestEveryRouteEveryRole(t *testing.T) {
	h := startReal(t, testOptions(t))
	w := newTenants(t, h)
	table := routeTable()
	keys := routeKeys(t, h.app.Router())
	for _, key := range keys {
		if _, ok := table[key]; !ok {
			t.Errorf("route %s has no entry in routeTable: add its expected status per role", key)
		}
	}
	for key := range table {
		if !slices.Contains(keys, key) {
			t.Errorf("routeTable has %s but the router has no such route", key)
		}
	}
	for _, key := range keys {
		tc, ok := table[key]
		if !ok {
			continue
		}
		method, _, _ := strings.Cut(key, " ")
		for _, foreign := range []bool{false, true} {
			want := tc.own
			tenant := "own"
			if foreign {
				want, tenant = tc.foreign, "foreign"
			}
			for r, role := range roleNames {
				t.Run(key+"/"+role+"/"+tenant, func(t *testing.T) {
					c := tc.prepare(w, r, foreign)
					got := h.do(method, c.path, w.token[r], c.body)
					if got.status != want[r] {
						t.Fatalf("%s %s as %s = %d %s, want %d", method, c.path, role, got.status, got.body, want[r])
					}
				})
			}
		}
	}
}
