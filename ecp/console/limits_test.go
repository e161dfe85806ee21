package console_test

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// reportConnections reports a healthy EMQX serving n connections with the
// max connections ecp asked for.
func (a *agent) reportConnections(n, maxConns int) {
	a.e.t.Helper()
	a.e.api(200, "POST", agentproto.PathReport, a.credential, agentproto.ReportRequest{
		CollectedAt: time.Now(), AgentVersion: "test",
		EMQX: agentproto.EMQXStatus{Reachable: true, Version: "5.8.6", StartedAt: time.Now().Add(-time.Hour),
			Nodes:       []agentproto.Node{{Name: "emqx@127.0.0.1", Status: "running", Connections: n, LiveConnections: n}},
			Connections: n, LiveConnections: n, MaxConnections: maxConns},
	})
}

// TestJourneyOverConnectionLimitIsShown: a new entry starts at 10 max
// connections; the guide says the cluster will be capped there, and a
// cluster far over its max shows it in words on the list and its page, not
// as a green bar.
func TestJourneyOverConnectionLimitIsShown(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.post("/projects/"+e.project+"/clusters", url.Values{"name": {"busy"}})
	mustStatus(t, p, http.StatusOK, "create")
	warning := "Once registered, the agent caps EMQX at this entry's max connections, <strong>10</strong>: beyond that EMQX refuses new clients."
	if !strings.Contains(p.body, warning) || !strings.Contains(p.body, `id="cap-warning"`) {
		t.Fatalf("guide does not warn of the cap:\n%s", p.body)
	}
	token := regexp.MustCompile(`data-token="([^"]+)"`).FindStringSubmatch(p.body)[1]
	id := regexp.MustCompile(`/clusters/([0-9a-z]+)/state`).FindStringSubmatch(p.body)[1]
	detailPath := "/projects/" + e.project + "/clusters/" + id
	if d := b.get(detailPath); !strings.Contains(d.body, warning) || !strings.Contains(d.body, `<label for="reg-maxConnections">Max connections once registered</label>`) {
		t.Fatalf("cluster page of an unregistered entry does not warn of the cap or offer to set it:\n%s", d.body)
	}
	// The Register panel's form shows a quota refusal at its own field.
	p = b.post(detailPath+"/max-connections", url.Values{"form": {"register"}, "maxConnections": {"6000"}})
	mustStatus(t, p, http.StatusUnprocessableEntity, "max connections over the ceiling from the register panel")
	if !strings.Contains(p.body, `<p class="field-error" id="reg-max-error" role="alert">maxConnections 6000 exceeds the licence&#39;s per-cluster ceiling of 5000</p>`) ||
		strings.Contains(p.body, `id="max-error"`) {
		t.Fatalf("refusal not shown at the register panel's field:\n%s", p.body)
	}

	ag := e.register(token)
	ag.reportConnections(249, 10)
	over := "over limit: 249 / 10 — EMQX refuses new clients"
	list := b.get("/projects/" + e.project + "/clusters")
	if !strings.Contains(list.body, `<span class="limit limit-over">`+over+`</span>`) {
		t.Fatalf("list does not show the cluster over its limit:\n%s", list.body)
	}
	if !strings.Contains(list.body, `high="8" optimum="0" value="249"`) {
		t.Fatalf("list's meter does not mark the near and over range:\n%s", list.body)
	}
	d := b.get(detailPath)
	if !strings.Contains(d.body, `<span class="limit limit-over" id="conn-limit">`+over+"; raise max connections below or reduce the load</span>") {
		t.Fatalf("cluster page does not show the cluster over its limit:\n%s", d.body)
	}
	if strings.Contains(d.body, `id="cap-warning"`) {
		t.Fatal("registered cluster's page still shows the pre-registration warning")
	}

	mustStatus(t, b.post(detailPath+"/max-connections", url.Values{"maxConnections": {"300"}}), http.StatusSeeOther, "raise max")
	ag.reportConnections(249, 300)
	near := "near limit: 249 / 300 (83%)"
	if list := b.get("/projects/" + e.project + "/clusters"); !strings.Contains(list.body, `<span class="limit limit-near">`+near+`</span>`) {
		t.Fatalf("list does not show the cluster near its limit:\n%s", list.body)
	}
	if d := b.get(detailPath); !strings.Contains(d.body, near) || strings.Contains(d.body, "over limit") {
		t.Fatalf("cluster page does not show the cluster near its limit:\n%s", d.body)
	}

	mustStatus(t, b.post(detailPath+"/max-connections", url.Values{"maxConnections": {"1000"}}), http.StatusSeeOther, "raise max")
	ag.reportConnections(249, 1000)
	if list := b.get("/projects/" + e.project + "/clusters"); strings.Contains(list.body, `class="limit `) {
		t.Fatalf("list flags a cluster well under its limit:\n%s", list.body)
	}
}

// TestJourneyDuplicateClusterNameShownAtField: the console's add and edit
// forms show the refusal of a name the project already has beside the
// name, naming the entry that has it.
func TestJourneyDuplicateClusterNameShownAtField(t *testing.T) {
	e := start(t, nil)
	first := e.createCluster(e.project, "edge-1")
	second := e.createCluster(e.project, "edge-2")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	want := `<p class="field-error" id="name-error">name &#34;edge-1&#34; is already used by cluster ` + first
	p := b.post("/projects/"+e.project+"/clusters", url.Values{"name": {"edge-1"}})
	mustStatus(t, p, http.StatusConflict, "create a second edge-1")
	if !strings.Contains(p.body, want) {
		t.Fatalf("add form does not show the taken name at the field:\n%s", p.body)
	}
	p = b.post("/projects/"+e.project+"/clusters/"+second+"/edit", url.Values{"name": {"edge-1"}})
	mustStatus(t, p, http.StatusConflict, "rename edge-2 to edge-1")
	if !strings.Contains(p.body, strings.Replace(want, `id="name-error">`, `id="name-error" role="alert">`, 1)) {
		t.Fatalf("edit form does not show the taken name at the field:\n%s", p.body)
	}
}
