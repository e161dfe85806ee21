package alerts

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/registry"
)

// issue #12 defect 3 and item 9: the rules name each project's clusters
// and follow a rename, a transfer and a deletion; the alerts of a deleted
// or transferred cluster leave the project's active list at once (they sat
// there until Alertmanager resolved them, five minutes later).
func TestJourneyRemovedClusterAlertsLeaveAtOnce(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	o, am := fakeStackOptions(t)
	a := newService(t, w, o)
	defer run(t, a.svc)()
	p := w.project.ID
	putSpec := func(id, name, project string) {
		t.Helper()
		b, err := registry.Spec{ID: id, Name: name, Project: project}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.cli.Put(t.Context(), registry.Key(id), string(b)); err != nil {
			t.Fatal(err)
		}
	}
	putSpec("c1", "Plant North", p)
	putSpec("c2", "Plant South", p)
	a.must(200, "padmin", http.MethodPut, "/api/v1/projects/"+p+"/alert-settings", map[string]any{"enabled": true, "triggerCount": 1,
		"recoveryCount": 1, "severity": "critical"})
	ruleFile := filepath.Join(o.RulesDir, alerting.RuleFileName(p))
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	rules := func() string { b, _ := os.ReadFile(ruleFile); return string(b) }
	waitFor("the rules name both clusters", func() bool {
		r := rules()
		return strings.Contains(r, `cluster=~"c1|c2"`) && strings.Contains(r, `{{ "Plant North" }}`) && strings.Contains(r, `{{ "plant" }}`) &&
			strings.Contains(r, `organization_name: '{{ "acme" }}'`)
	})

	putSpec("c1", `Plant "North" {{ 1 }}`, p)
	waitFor("the rules follow a rename", func() bool { return strings.Contains(rules(), `{{ "Plant \"North\" {{ 1 }}" }}`) })

	alert := func(cluster string) webhookAlert {
		al := connectorAlert(p, t0)
		al.Fingerprint = "fp-" + cluster
		al.Labels["cluster"] = cluster
		al.Annotations["cluster_name"] = "name of " + cluster
		return al
	}
	if r := a.notify("firing", alert("c1"), alert("c2")); r.status != http.StatusNoContent {
		t.Fatalf("webhook: %d %s", r.status, r.body)
	}
	if got := a.list(p, "state=active"); len(got) != 2 {
		t.Fatalf("active list has %d alerts, want 2", len(got))
	}

	if _, err := w.cli.Delete(t.Context(), registry.Key("c1")); err != nil {
		t.Fatal(err)
	}
	waitFor("c1's alert leaves the active list after its deletion", func() bool {
		got := a.list(p, "state=active")
		return len(got) == 1 && got[0].Cluster == "c2"
	})
	hist := a.list(p, "state=history")
	// The history names the deleted cluster still.
	if len(hist) != 1 || hist[0].Cluster != "c1" || hist[0].ClusterName != "name of c1" || hist[0].EndReason != EndRemoved {
		t.Fatalf("history after the deletion: %+v", hist)
	}
	waitFor("the rules stop selecting c1", func() bool { return strings.Contains(rules(), `cluster=~"c2"`) })
	// And Alertmanager is told it ended, under its names, rather than
	// waiting for Prometheus' resend delay.
	waitFor("alertmanager gets c1's alert resolved", func() bool {
		for _, b := range am.alerts() {
			var posted []alerting.Resolution
			if json.Unmarshal(b, &posted) == nil && len(posted) == 1 && posted[0].Labels["cluster"] == "c1" &&
				posted[0].Annotations["cluster_name"] == "name of c1" && posted[0].Annotations["project_name"] == "plant" &&
				!posted[0].EndsAt.IsZero() && posted[0].StartsAt.Equal(t0) {
				return true
			}
		}
		return false
	})

	putSpec("c2", "Plant South", w.foreign.ID)
	waitFor("c2's alert leaves the active list after its transfer", func() bool { return len(a.list(p, "state=active")) == 0 })
	waitFor("the rules select no cluster", func() bool { return strings.Contains(rules(), `cluster=~""`) })
}
