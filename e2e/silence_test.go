package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestJourneySilenceAndStormGuard: with the built binaries, emqx-sim and
// Debian's Prometheus and Alertmanager, a silence of one EMQX alarm in one
// cluster keeps exactly that alarm from the project's webhook while another
// alarm of the same cluster reaches it, and the active list shows the
// silenced one with its silence; then five new alarms within a minute trip
// the storm guard at stormThreshold 5: one ECPAlertStorm notice, nothing of
// the storm, until the project admin clears it.
func TestJourneySilenceAndStormGuard(t *testing.T) {
	t.Parallel() // see TestMain
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries, Prometheus, Alertmanager and Mailpit")
	}
	const interval = 5 * time.Second
	as := startAlertStack(t, interval)
	s := as.stack
	ctx := t.Context()
	simURL := "http://" + as.simAddr
	s.startSim(as.simAddr)
	project := s.projects("quiet")[0]
	entry := s.manageCollecting(project.ID, simURL, 0).entry
	hook := alertToWebhook(t, s, project.ID, "/quiet", true)
	base := "/api/v1/projects/" + project.ID

	var sl struct{ ID, Project, Cluster string }
	if err := s.api.Do(ctx, http.MethodPost, base+"/silences", map[string]any{"rule": "emqxAlarm", "cluster": entry.ID,
		"labels": map[string]string{"name": "high_cpu_usage"}, "duration": "1h", "comment": "e2e: CPU work planned"}, &sl); err != nil {
		t.Fatal(err)
	}
	if sl.Project != project.ID || sl.Cluster != entry.ID {
		t.Fatalf("silence %+v", sl)
	}
	simPost(t, simURL+"/sim/alarms/high_cpu_usage/raise", `{"message":"e2e: CPU is high"}`)
	simPost(t, simURL+"/sim/alarms/high_mem_usage/raise", `{"message":"e2e: memory is high"}`)
	eventually(t, 60*time.Second, "the unsilenced alarm at the project's webhook", func() (bool, string) {
		_, ok := hook.find("firing", "EMQXAlarm", map[string]string{"name": "high_mem_usage"})
		return ok, promRaw(t, as.promURL, "emqx_alarm_active")
	})
	type listed struct {
		Name       string            `json:"name"`
		Labels     map[string]string `json:"labels"`
		SilencedBy []string          `json:"silencedBy"`
	}
	eventually(t, 30*time.Second, "the silenced alarm listed with its silence", func() (bool, string) {
		var out struct{ Items []listed }
		if err := s.api.Do(ctx, http.MethodGet, base+"/alerts?state=active", nil, &out); err != nil {
			return false, err.Error()
		}
		for _, a := range out.Items {
			if a.Labels["name"] == "high_cpu_usage" {
				return slices.Equal(a.SilencedBy, []string{sl.ID}), fmt.Sprint(a)
			}
		}
		return false, fmt.Sprint(out.Items)
	})
	if _, ok := hook.find("firing", "EMQXAlarm", map[string]string{"name": "high_cpu_usage"}); ok {
		t.Fatal("the silenced alarm reached the project's webhook")
	}

	// The storm guard at 5 new alerts a minute.
	if err := s.api.Do(ctx, http.MethodPut, base+"/alert-settings", map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical", "emqxAlertPush": true, "stormThreshold": 5,
		"webhooks": []map[string]string{{"url": hook.URL + "/quiet"}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	raiseStorm(t, s, project.ID, simURL)
	eventually(t, 30*time.Second, "the storm notice at the project's webhook", func() (bool, string) {
		_, ok := hook.find("firing", "ECPAlertStorm", map[string]string{"project": project.ID})
		return ok, ""
	})
	for i := range 5 {
		if _, ok := hook.find("firing", "EMQXAlarm", map[string]string{"name": fmt.Sprintf("storm_%d", i)}); ok {
			t.Fatalf("alarm storm_%d of the storm reached the project's webhook", i)
		}
	}
	if err := s.api.Do(ctx, http.MethodDelete, base+"/alerts/storm", nil, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "notifications resume once the storm is cleared", func() (bool, string) {
		_, ok := hook.find("firing", "EMQXAlarm", map[string]string{"name": "storm_0"})
		return ok, ""
	})
}
