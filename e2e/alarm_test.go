package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestJourneyEMQXAlertPushFires: with the project's "EMQX alert push" switch
// on, an alarm EMQX raises itself (GET /api/v5/alarms) reaches the project's
// webhook as EMQXAlarm, named and placed on its node. Before, the switch
// rendered a rule on a series no agent exported, so it never fired.
func TestJourneyEMQXAlertPushFires(t *testing.T) {
	t.Parallel() // see TestMain
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries, Prometheus, Alertmanager and Mailpit")
	}
	const interval = 5 * time.Second
	as := startAlertStack(t, interval)
	s := as.stack
	simURL := "http://" + as.simAddr
	s.startSim(as.simAddr)
	project := s.projects("alarms")[0]
	entry := s.manageCollecting(project.ID, simURL, 0).entry

	hook := alertToWebhook(t, s, project.ID, "/alarms", true)

	raised := time.Now()
	simPost(t, simURL+"/sim/alarms/high_cpu_usage/raise", `{"message":"e2e: CPU is high"}`)
	// On the node the simulator answers from, its first.
	want := map[string]string{"project": project.ID, "cluster": entry.ID, "name": "high_cpu_usage"}
	eventually(t, 60*time.Second, "EMQX's alarm at the project's webhook", func() (bool, string) {
		_, ok := hook.find("firing", "EMQXAlarm", want)
		return ok, fmt.Sprint(promRaw(t, as.promURL, "emqx_alarm_active"))
	})
	msg, _ := hook.find("firing", "EMQXAlarm", want)
	for _, a := range msg.Alerts {
		if a.Labels["name"] == "high_cpu_usage" && a.Labels["node"] == "" {
			t.Fatalf("the alarm's alert does not say which node: %v", a.Labels)
		}
	}
	t.Logf("EMQX alarm raised → webhook: %s", msg.at.Sub(raised).Round(100*time.Millisecond))
}
