package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestJourneyTransferSaysWhatStays: before and after a transfer the console
// says plainly that the cluster's earlier log lines, alert history and
// series stay in the old project (the stores keep what they stored).
func TestJourneyTransferSaysWhatStays(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get("/projects/" + e.project + "/clusters/" + id)
	mustStatus(t, p, http.StatusOK, "cluster page")
	for _, want := range []string{
		"What came before stays here: its earlier log lines, alert history and metric series remain in factory, visible to this project's members, and do not move.",
		`data-confirm="Move edge-1 to the selected project? Its earlier log lines, alert history and metric series stay in factory."`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("cluster page lacks %q", want)
		}
	}
	p = b.post("/projects/"+e.project+"/clusters/"+id+"/transfer", url.Values{"project": {e.other}})
	mustStatus(t, p, http.StatusSeeOther, "transfer")
	p = b.get(p.header.Get("Location"))
	if want := "Cluster transferred to this project. Its log lines, alerts and series from before the transfer stay in the old project."; !strings.Contains(p.body, want) {
		t.Errorf("after the transfer the page lacks %q", want)
	}
}
