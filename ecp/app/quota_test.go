package app

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ecpio/ecp/ecp/quota"
)

type quotaJSON struct {
	Org            string `json:"org"`
	Project        string `json:"project"`
	MaxConnections *int   `json:"maxConnections"`
	Allocated      int    `json:"allocated"`
	Remaining      int    `json:"remaining"`
	LimitedBy      string `json:"limitedBy"`
	OverBy         int    `json:"overBy"`
}

type quotaError struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Field     string `json:"field"`
		Quota     string `json:"quota"`
		Project   string `json:"project"`
		Org       string `json:"org"`
		Remaining *int   `json:"remaining"`
		Total     int    `json:"total"`
		Allocated int    `json:"allocated"`
	} `json:"error"`
}

// shares is one organization with an attacker's and a victim's project,
// each with its own project admin.
type shares struct {
	admin, org, attacker, victim string
	mallory, victor              string
}

func newShares(t *testing.T, h *harness) shares {
	t.Helper()
	var s shares
	s.admin = h.login("admin", testAdminPassword)
	s.org = h.id(h.must(201, "POST", "/api/v1/orgs", s.admin, map[string]string{"name": "fleet"}))
	s.attacker = h.id(h.must(201, "POST", "/api/v1/orgs/"+s.org+"/projects", s.admin, map[string]string{"name": "attacker"}))
	s.victim = h.id(h.must(201, "POST", "/api/v1/orgs/"+s.org+"/projects", s.admin, map[string]string{"name": "victim"}))
	for u, p := range map[string]string{"mallory": s.attacker, "victor": s.victim} {
		h.must(201, "POST", "/api/v1/users", s.admin, map[string]string{"username": u, "password": "password-" + u})
		h.must(201, "POST", "/api/v1/role-bindings", s.admin, map[string]string{"username": u, "role": "project-admin", "project": p})
	}
	s.mallory, s.victor = h.login("mallory", "password-mallory"), h.login("victor", "password-victor")
	return s
}

// issue #11 finding 7: one project's admin allocated 9,970 of the
// licence's 10,000 connections and every other project got 422. Replayed:
// the system admin gives each project a quota of 5,000; the attacker's
// admin takes all of theirs, is refused one connection more with a 422
// naming the project quota and its figures, cannot raise their own quota,
// and the other project still gets its whole share.
func TestSec07ProjectQuotaKeepsOtherProjectsShare(t *testing.T) {
	h := start(t, testOptions(t)) // licence 10,000 total, 5,000 per cluster
	s := newShares(t, h)
	for _, p := range []string{s.attacker, s.victim} {
		var q quotaJSON
		h.must(200, "PUT", "/api/v1/projects/"+p+"/quota", s.admin, map[string]int{"maxConnections": 5000}).decode(t, &q)
		if q.MaxConnections == nil || *q.MaxConnections != 5000 || q.Allocated != 0 || q.Remaining != 5000 || q.LimitedBy != "project" {
			t.Fatalf("PUT quota answered %+v, want 5000, allocated 0, remaining 5000, limited by project", q)
		}
	}
	// The attack: as many clusters and connections as the licence gives.
	c1 := h.id(h.must(201, "POST", "/api/v1/projects/"+s.attacker+"/clusters", s.mallory, map[string]string{"name": "grab-1"}))
	h.must(200, "PUT", "/api/v1/clusters/"+c1+"/max-connections", s.mallory, map[string]int{"maxConnections": 4990})
	c2 := h.id(h.must(201, "POST", "/api/v1/projects/"+s.attacker+"/clusters", s.mallory, map[string]string{"name": "grab-2"}))
	r := h.must(422, "PUT", "/api/v1/clusters/"+c2+"/max-connections", s.mallory, map[string]int{"maxConnections": 4980})
	var e quotaError
	r.decode(t, &e)
	want := fmt.Sprintf("maxConnections 4980 needs 4970 more connections but project %s's connection quota has 0 remaining (quota 5000, allocated 5000)", s.attacker)
	if e.Error.Code != "QuotaExceeded" || e.Error.Field != "maxConnections" || e.Error.Quota != "project" || e.Error.Project != s.attacker ||
		e.Error.Remaining == nil || *e.Error.Remaining != 0 || e.Error.Total != 5000 || e.Error.Allocated != 5000 || e.Error.Message != want {
		t.Fatalf("refusal %s\nwant message %q with quota project, remaining 0, total 5000, allocated 5000", r.body, want)
	}
	h.must(422, "POST", "/api/v1/projects/"+s.attacker+"/clusters", s.mallory, map[string]string{"name": "grab-3"})
	// Nor can the attacker lift the ceiling, nor touch the other project's.
	h.must(403, "PUT", "/api/v1/projects/"+s.attacker+"/quota", s.mallory, map[string]int{"maxConnections": 10000})
	h.must(403, "PUT", "/api/v1/orgs/"+s.org+"/quota", s.mallory, map[string]int{"maxConnections": 10000})
	h.must(404, "PUT", "/api/v1/projects/"+s.victim+"/quota", s.mallory, map[string]int{"maxConnections": 0})
	// The other project still gets its share, to the last connection.
	v1 := h.id(h.must(201, "POST", "/api/v1/projects/"+s.victim+"/clusters", s.victor, map[string]string{"name": "fair-1"}))
	h.must(200, "PUT", "/api/v1/clusters/"+v1+"/max-connections", s.victor, map[string]int{"maxConnections": 5000})
	var q quotaJSON
	h.must(200, "GET", "/api/v1/projects/"+s.victim+"/quota", s.victor, nil).decode(t, &q)
	if q.Allocated != 5000 || q.Remaining != 0 || q.Org != s.org || q.Project != s.victim {
		t.Fatalf("victim's quota %+v, want allocated 5000, remaining 0", q)
	}
	var lic quota.Usage
	h.must(200, "GET", "/api/v1/licence", s.victor, nil).decode(t, &lic)
	if lic.Allocated != 10000 {
		t.Fatalf("licence allocated %d, want 10000 (5000 per project)", lic.Allocated)
	}
}

// TestSec07QuotaSemanticsOverHTTP: who sets what, the validation of the
// body, an org quota bounding projects without their own, lowering below
// the allocation shown as over, and transfers refused by the target's
// quota.
func TestSec07QuotaSemanticsOverHTTP(t *testing.T) {
	h := start(t, testOptions(t))
	s := newShares(t, h)
	h.must(201, "POST", "/api/v1/users", s.admin, map[string]string{"username": "olga", "password": "password-olga"})
	h.must(201, "POST", "/api/v1/role-bindings", s.admin, map[string]string{"username": "olga", "role": "org-admin", "org": s.org})
	olga := h.login("olga", "password-olga")
	for _, body := range []string{`{}`, `{"maxConnections": -1}`, `{"maxConnections": 10001}`, `{"maxConnections": 1.5}`, `{"maxConnections": "9"}`} {
		r := h.must(400, "PUT", "/api/v1/projects/"+s.victim+"/quota", olga, body)
		if !strings.Contains(string(r.body), `"field":"maxConnections"`) || !strings.Contains(string(r.body), "from 0 to the licence's total (10000), or null") {
			t.Errorf("PUT quota %s answered %s, want 400 naming maxConnections and its range", body, r.body)
		}
	}
	// The org admin sets project quotas, not the org's.
	h.must(403, "PUT", "/api/v1/orgs/"+s.org+"/quota", olga, map[string]int{"maxConnections": 100})
	h.must(200, "PUT", "/api/v1/orgs/"+s.org+"/quota", s.admin, map[string]int{"maxConnections": 100})
	h.must(200, "PUT", "/api/v1/projects/"+s.victim+"/quota", olga, map[string]int{"maxConnections": 30})
	c := h.id(h.must(201, "POST", "/api/v1/projects/"+s.attacker+"/clusters", s.mallory, map[string]string{"name": "a"}))
	var e quotaError
	h.must(422, "PUT", "/api/v1/clusters/"+c+"/max-connections", s.mallory, map[string]int{"maxConnections": 101}).decode(t, &e)
	if e.Error.Quota != "organization" || e.Error.Org != s.org || *e.Error.Remaining != 90 {
		t.Fatalf("refusal by the org quota = %+v, want organization %s with 90 remaining", e.Error, s.org)
	}
	h.must(200, "PUT", "/api/v1/clusters/"+c+"/max-connections", s.mallory, map[string]int{"maxConnections": 40})
	// Moving it into the victim's project (quota 30) is refused, naming it.
	h.must(201, "POST", "/api/v1/role-bindings", s.admin, map[string]string{"username": "mallory", "role": "project-admin", "project": s.victim})
	e = quotaError{}
	h.must(422, "POST", "/api/v1/clusters/"+c+"/transfer", s.mallory, map[string]string{"project": s.victim}).decode(t, &e)
	if e.Error.Field != "project" || e.Error.Quota != "project" || e.Error.Project != s.victim || *e.Error.Remaining != 30 || !strings.Contains(e.Error.Message, "moving cluster "+c) {
		t.Fatalf("refused transfer = %+v, want field project naming project %s with 30 remaining", e.Error, s.victim)
	}
	// Lowering the org quota below its allocation: allowed, shown as over.
	var q quotaJSON
	h.must(200, "PUT", "/api/v1/orgs/"+s.org+"/quota", s.admin, map[string]int{"maxConnections": 25}).decode(t, &q)
	if q.Allocated != 40 || q.OverBy != 15 || q.Remaining != 0 || q.LimitedBy != "organization" {
		t.Fatalf("lowered org quota = %+v, want allocated 40, overBy 15, remaining 0", q)
	}
	h.must(200, "GET", "/api/v1/projects/"+s.attacker+"/quota", s.mallory, nil).decode(t, &q)
	if q.MaxConnections != nil || q.Allocated != 40 || q.Remaining != 0 || q.LimitedBy != "organization" {
		t.Fatalf("attacker's project without its own quota = %+v, want null, allocated 40, limited by the organization", q)
	}
	h.must(200, "PUT", "/api/v1/clusters/"+c+"/max-connections", s.mallory, map[string]int{"maxConnections": 20})
	// null removes the quota again.
	h.must(200, "PUT", "/api/v1/orgs/"+s.org+"/quota", s.admin, map[string]any{"maxConnections": nil}).decode(t, &q)
	if q.MaxConnections != nil || q.LimitedBy != "licence" || q.Remaining != 10000-20 {
		t.Fatalf("org quota removed = %+v, want null, bounded by the licence", q)
	}
}

// TestSec07QuotaHoldsAcrossReplicas: 160 concurrent raises and creations
// in one project, through two replicas, never take it over its quota, and
// the quota's allocation is the sum of its clusters.
func TestSec07QuotaHoldsAcrossReplicas(t *testing.T) {
	opts := sharedEtcdOptions(t)
	h1, h2 := start(t, opts), start(t, opts)
	s := newShares(t, h1)
	h1.must(200, "PUT", "/api/v1/projects/"+s.attacker+"/quota", s.admin, map[string]int{"maxConnections": 300})
	var ids []string
	for i := range 5 {
		ids = append(ids, h1.id(h1.must(201, "POST", "/api/v1/projects/"+s.attacker+"/clusters", s.mallory, map[string]string{"name": fmt.Sprint("c", i)})))
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	for i := range 160 {
		h := []*harness{h1, h2}[i%2]
		wg.Go(func() {
			var r reply
			if i%8 == 0 {
				r = h.do("POST", "/api/v1/projects/"+s.attacker+"/clusters", s.mallory, map[string]string{"name": fmt.Sprint("n", i)})
			} else {
				r = h.do("PUT", "/api/v1/clusters/"+ids[i%len(ids)]+"/max-connections", s.mallory, map[string]int{"maxConnections": 1 + i%150})
			}
			mu.Lock()
			statuses[r.status]++
			mu.Unlock()
			if r.status == 422 {
				var e quotaError
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Quota != "project" || e.Error.Remaining == nil {
					t.Errorf("422 not naming the project quota: %s", r.body)
				}
			} else if r.status != 200 && r.status != 201 {
				t.Errorf("status %d %s", r.status, r.body)
			}
		})
	}
	wg.Wait()
	var page struct {
		Items []clusterJSON `json:"items"`
	}
	h2.must(200, "GET", "/api/v1/projects/"+s.attacker+"/clusters?limit=500", s.mallory, nil).decode(t, &page)
	sum := 0
	for _, c := range page.Items {
		sum += c.MaxConnections
	}
	var q quotaJSON
	h2.must(200, "GET", "/api/v1/projects/"+s.attacker+"/quota", s.mallory, nil).decode(t, &q)
	if sum > 300 || q.Allocated != sum {
		t.Fatalf("project holds %d connections (quota 300); its quota reports allocated %d", sum, q.Allocated)
	}
	if statuses[422] == 0 || statuses[200] == 0 {
		t.Fatalf("statuses %v: want both applied and refused changes", statuses)
	}
	t.Logf("160 concurrent changes over 2 replicas: %v; project holds %d of 300", statuses, sum)
}
