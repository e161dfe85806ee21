package app

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/alerts"
)

// seer is one caller of TestEveryListShowsOnlyWhatTheCallerMaySee and what
// the tenancy rules let them see.
type seer struct {
	role     string
	username string
	token    string
	system   bool
	orgs     []string // orgs the caller may view
	projects []string // projects the caller may view
	// auditOrgs and auditProjects are the records of the audit log the
	// caller may read (admins only; nil audit means 403).
	audit         bool
	auditOrgs     []string
	auditProjects []string
}

func (s seer) seesOrg(id string) bool     { return s.system || slices.Contains(s.orgs, id) }
func (s seer) seesProject(id string) bool { return s.system || slices.Contains(s.projects, id) }

// items decodes a {"items": [...]} reply.
func items[T any](t *testing.T, r reply) []T {
	t.Helper()
	var out struct {
		Items []T `json:"items"`
	}
	r.decode(t, &out)
	return out.Items
}

// ids returns the sorted, distinct values of key(item).
func ids[T any](list []T, key func(T) string) []string {
	var out []string
	for _, it := range list {
		out = append(out, key(it))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// TestEveryListShowsOnlyWhatTheCallerMaySee is the content half of
// TestEveryRouteEveryRole: that table proves who gets which status, this
// proves what the 200s hold. Two orgs with two projects each, a cluster,
// an alert, audit records and role bindings in every project, and callers
// of every role (one and two projects, own org and the other): every list
// answers exactly what the caller may see, and every single read of
// something they may not see is 404.
//
// issue #11, tests that let the findings through: a list that returned
// every user's API tokens or every role binding passed the status table.
func TestEveryListShowsOnlyWhatTheCallerMaySee(t *testing.T) {
	h := startReal(t, testOptions(t))
	w := newTenants(t, h)
	admin := w.adminToken
	bind := func(u, role, org, project string) {
		h.must(201, "POST", "/api/v1/role-bindings", admin, map[string]string{"username": u, "role": role, "org": org, "project": project})
	}
	for _, u := range []string{"orgb-admin", "a1-only-admin", "b2-only-viewer"} {
		h.must(201, "POST", "/api/v1/users", admin, map[string]string{"username": u, "password": "password-" + u})
	}
	bind("orgb-admin", "org-admin", w.orgB, "")
	bind("a1-only-admin", "project-admin", "", w.a1)
	bind("b2-only-viewer", "project-viewer", "", w.b2)
	login := func(u string) string { return h.login(u, "password-"+u) }
	all := []string{w.a1, w.a2, w.b1, w.b2}
	seers := []seer{
		{role: "system-admin", username: "admin", token: admin, system: true, orgs: []string{w.orgA, w.orgB}, projects: all, audit: true},
		{role: "org-admin of A", username: "orga-admin", token: w.token[orgAdm], orgs: []string{w.orgA}, projects: []string{w.a1, w.a2},
			audit: true, auditOrgs: []string{w.orgA}},
		{role: "org-admin of B", username: "orgb-admin", token: login("orgb-admin"), orgs: []string{w.orgB}, projects: []string{w.b1, w.b2},
			audit: true, auditOrgs: []string{w.orgB}},
		{role: "project-admin of A1", username: "a1-only-admin", token: login("a1-only-admin"), orgs: []string{w.orgA}, projects: []string{w.a1},
			audit: true, auditProjects: []string{w.a1}},
		{role: "project-admin of A1 and A2", username: "a1-admin", token: w.token[prjAdm], orgs: []string{w.orgA}, projects: []string{w.a1, w.a2},
			audit: true, auditProjects: []string{w.a1, w.a2}},
		{role: "project-viewer of B2", username: "b2-only-viewer", token: login("b2-only-viewer"), orgs: []string{w.orgB}, projects: []string{w.b2}},
		{role: "project-viewer of A1 and A2", username: "a1-viewer", token: w.token[viewer], orgs: []string{w.orgA}, projects: []string{w.a1, w.a2}},
		{role: "no binding", username: "nobody", token: w.token[nobody]},
	}

	// What there is to see: a cluster, an alert and an audit record
	// (the cluster's creation) in every project; an API token of every
	// caller and of a user who is none of them.
	clusterOf := map[string]string{}
	for _, p := range all {
		clusterOf[p] = h.id(h.must(201, "POST", "/api/v1/projects/"+p+"/clusters", admin, map[string]string{"name": "c-" + p}))
	}
	tokenOf := map[string]string{}
	for _, s := range seers {
		tokenOf[s.username] = h.id(h.must(201, "POST", "/api/v1/api-tokens", s.token, map[string]string{"name": "tok-" + s.username}))
	}
	h.must(201, "POST", "/api/v1/api-tokens", w.otherUserToken, map[string]string{"name": "tok-other"})
	hook, err := alerts.WebhookToken(context.Background(), h.app.EtcdClient(), h.app.SecretsKey())
	if err != nil {
		t.Fatal(err)
	}
	alertOf := map[string]string{}
	starts := time.Now().UTC().Truncate(time.Second)
	for _, p := range all {
		fp := "fp-" + p
		h.must(204, "POST", alerts.WebhookPath, hook.Reveal(), map[string]any{"version": "4", "status": "firing", "alerts": []map[string]any{{
			"status": "firing", "fingerprint": fp, "startsAt": starts,
			"labels": map[string]string{"alertname": "EMQXConnectorAbnormal", "project": p, "cluster": clusterOf[p], "severity": "warning"},
		}}})
		alertOf[p] = alerts.AlertID(fp, starts)
	}
	type binding struct {
		ID, Username, Role, Org, Project string
	}
	allBindings := items[binding](t, h.must(200, "GET", "/api/v1/role-bindings", admin, nil))
	if len(allBindings) < 9 {
		t.Fatalf("the system admin sees %d bindings, want every one of the fixture's 9 or more: %+v", len(allBindings), allBindings)
	}
	projectOrg := map[string]string{w.a1: w.orgA, w.a2: w.orgA, w.b1: w.orgB, w.b2: w.orgB}

	for _, s := range seers {
		t.Run(s.role, func(t *testing.T) {
			get := func(path string) reply { return h.do("GET", path, s.token, nil) }
			ok := func(path string) reply {
				t.Helper()
				r := get(path)
				if r.status != http.StatusOK {
					t.Fatalf("GET %s = %d %s, want 200", path, r.status, r.body)
				}
				return r
			}
			hidden := func(path string) {
				t.Helper()
				if r := get(path); r.status != http.StatusNotFound {
					t.Errorf("GET %s = %d %s, want 404: the caller may not see it", path, r.status, r.body)
				}
			}
			equal := func(what string, got, want []string) {
				t.Helper()
				if !slices.Equal(sorted(got...), sorted(want...)) {
					t.Errorf("%s = %v, want exactly %v", what, sorted(got...), sorted(want...))
				}
			}

			// API tokens: only the caller's own, whatever their role.
			type token struct{ ID, Name, Username string }
			toks := items[token](t, ok("/api/v1/api-tokens"))
			equal("owners of the listed API tokens", ids(toks, func(k token) string { return k.Username }), []string{s.username})
			if !slices.ContainsFunc(toks, func(k token) bool { return k.ID == tokenOf[s.username] }) {
				t.Errorf("the caller's own token %s is not listed: %+v", tokenOf[s.username], toks)
			}

			// Role bindings: their own, and those on what they can see.
			var wantBindings []string
			for _, b := range allBindings {
				visible := b.Username == s.username
				switch b.Role {
				case "system-admin":
					visible = visible || s.system
				case "org-admin":
					visible = visible || s.seesOrg(b.Org)
				default:
					visible = visible || s.seesProject(b.Project)
				}
				if visible {
					wantBindings = append(wantBindings, b.ID)
				}
			}
			equal("listed role bindings", ids(items[binding](t, ok("/api/v1/role-bindings")), func(b binding) string { return b.ID }), wantBindings)

			// Users: the system admin sees the directory, others themselves.
			type user struct{ Username string }
			users := ids(items[user](t, ok("/api/v1/users")), func(u user) string { return u.Username })
			if s.system {
				for _, u := range []string{"admin", "orga-admin", "orgb-admin", "a1-admin", "a1-only-admin", "a1-viewer", "b2-only-viewer", "nobody", "other"} {
					if !slices.Contains(users, u) {
						t.Errorf("the system admin's user list %v lacks %s", users, u)
					}
				}
			} else {
				equal("listed users", users, []string{s.username})
			}

			// Orgs and projects, listed and read one by one.
			type named struct{ ID, Org, Project string }
			byID := func(n named) string { return n.ID }
			orgs := ids(items[named](t, ok("/api/v1/orgs")), byID)
			projects := ids(items[named](t, ok("/api/v1/projects")), byID)
			if s.system {
				if !slices.Contains(orgs, w.orgA) || !slices.Contains(orgs, w.orgB) {
					t.Errorf("the system admin's orgs %v lack A or B", orgs)
				}
				for _, p := range all {
					if !slices.Contains(projects, p) {
						t.Errorf("the system admin's projects %v lack %s", projects, p)
					}
				}
			} else {
				equal("listed orgs", orgs, s.orgs)
				equal("listed projects", projects, s.projects)
			}
			for _, o := range []string{w.orgA, w.orgB} {
				if !s.seesOrg(o) {
					hidden("/api/v1/orgs/" + o)
					hidden("/api/v1/orgs/" + o + "/projects")
					continue
				}
				var got named
				ok("/api/v1/orgs/"+o).decode(t, &got)
				if got.ID != o {
					t.Errorf("GET /orgs/%s answered org %q", o, got.ID)
				}
				var want []string
				for _, p := range all {
					if projectOrg[p] == o && s.seesProject(p) {
						want = append(want, p)
					}
				}
				equal("projects of org "+o, ids(items[named](t, ok("/api/v1/orgs/"+o+"/projects")), byID), want)
			}

			// Everything in a project: clusters, alerts, the overview.
			var wantClusters []string
			for _, p := range all {
				base := "/api/v1/projects/" + p
				c := clusterOf[p]
				if !s.seesProject(p) {
					for _, path := range []string{base, base + "/clusters", base + "/alerts", base + "/alert-settings", base + "/monitoring", "/api/v1/clusters/" + c} {
						hidden(path)
					}
					continue
				}
				wantClusters = append(wantClusters, c)
				var proj named
				ok(base).decode(t, &proj)
				if proj.ID != p {
					t.Errorf("GET %s answered project %q", base, proj.ID)
				}
				cl := items[named](t, ok(base+"/clusters"))
				equal("clusters of project "+p, ids(cl, byID), []string{c})
				equal("projects of the clusters of "+p, ids(cl, func(n named) string { return n.Project }), []string{p})
				var one named
				ok("/api/v1/clusters/"+c).decode(t, &one)
				if one.ID != c || one.Project != p {
					t.Errorf("GET /clusters/%s answered cluster %q of project %q, want project %s", c, one.ID, one.Project, p)
				}
				al := items[named](t, ok(base+"/alerts"))
				equal("alerts of project "+p, ids(al, byID), []string{alertOf[p]})
				equal("projects of the alerts of "+p, ids(al, func(n named) string { return n.Project }), []string{p})
				var ov struct {
					Project  string
					Clusters []named
				}
				ok(base+"/monitoring").decode(t, &ov)
				if ov.Project != p {
					t.Errorf("the overview of %s is of project %q", p, ov.Project)
				}
				equal("clusters of the overview of "+p, ids(ov.Clusters, byID), []string{c})
			}
			fleet := items[named](t, ok("/api/v1/clusters"))
			if s.system {
				for _, c := range wantClusters {
					if !slices.ContainsFunc(fleet, func(n named) bool { return n.ID == c }) {
						t.Errorf("GET /clusters lacks %s for the system admin", c)
					}
				}
			} else {
				equal("clusters of GET /clusters", ids(fleet, byID), wantClusters)
			}

			// Audit: admins read the records of what they administer.
			r := get("/api/v1/audit?limit=1000")
			if !s.audit {
				if r.status != http.StatusForbidden {
					t.Errorf("GET /audit = %d %s, want 403 for a caller who administers nothing", r.status, r.body)
				}
				return
			}
			if r.status != http.StatusOK {
				t.Fatalf("GET /audit = %d %s, want 200", r.status, r.body)
			}
			recs := items[struct{ ID, Org, Project, Target string }](t, r)
			seen := map[string]bool{}
			for _, rec := range recs {
				if !s.system && !slices.Contains(s.auditOrgs, rec.Org) && !slices.Contains(s.auditProjects, rec.Project) {
					t.Errorf("audit record %s (org %q, project %q, target %s) is outside what the caller administers", rec.ID, rec.Org, rec.Project, rec.Target)
				}
				seen[rec.Target] = true
			}
			for _, p := range all {
				admins := s.system || slices.Contains(s.auditOrgs, projectOrg[p]) || slices.Contains(s.auditProjects, p)
				if admins && !seen["cluster/"+clusterOf[p]] {
					t.Errorf("the audit log lacks the creation of cluster %s in %s, which the caller administers; targets: %v",
						clusterOf[p], p, slices.Sorted(maps.Keys(seen)))
				}
			}
		})
	}
}
