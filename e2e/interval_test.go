package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestJourneyRuleAlertsWithGuideAgent: ecp tells agents to report every
// 5 s and the agent is started as the registration guide says, without
// --collect.interval. It follows ecp's interval, so a failing rule alerts
// within two intervals plus Alertmanager's group wait, and the cluster
// stays running (no AgentSilent) on the way.
func TestJourneyRuleAlertsWithGuideAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries, Prometheus, Alertmanager and Mailpit")
	}
	const (
		interval = 5 * time.Second
		// groupWait is what ecp writes: two evaluations, so that one
		// fault's alerts make one notification.
		groupWait = 2 * interval
	)
	as := startAlertStack(t, interval)
	ctx, s := t.Context(), as.stack
	simURL := "http://" + as.simAddr
	s.startSim(as.simAddr)
	project := s.projects("guide")[0]
	entry := s.manageCollecting(project.ID, simURL, 0).entry

	hook := alertToWebhook(t, s, project.ID, "/guide", false)
	var rule string
	eventually(t, 4*interval, "the agent's rule series in Prometheus", func() (bool, string) {
		ids := promLabelValues(t, as.promURL, fmt.Sprintf(`emqx_rule_enabled{project=%q,cluster=%q} == 1`, project.ID, entry.ID), "id")
		if len(ids) == 0 {
			return false, "no series"
		}
		rule = ids[0]
		return true, ""
	})

	failed := time.Now()
	simPost(t, simURL+"/sim/rules/"+rule+"/fail", `{"reason":"e2e: bad SQL"}`)
	// Two intervals for the counter to grow across two samples, the
	// group wait, and a second of evaluation and resend each.
	budget := 2*interval + groupWait + 2*time.Second
	want := map[string]string{"project": project.ID, "cluster": entry.ID, "id": rule}
	var states []string
	eventually(t, budget, "the failing rule's alert at the project's webhook", func() (bool, string) {
		// Over the 40 s the agent is never silent: it reports every 5 s.
		if cl, err := s.api.Cluster(ctx, entry.ID); err == nil && cl.State != "running" {
			states = append(states, fmt.Sprintf("%s %+v", cl.State, cl.StateReason))
		}
		_, ok := hook.find("firing", "EMQXRuleAbnormal", want)
		return ok, fmt.Sprint(states)
	})
	if len(states) > 0 {
		t.Fatalf("the cluster left running while the rule failed: %v", states)
	}
	msg, _ := hook.find("firing", "EMQXRuleAbnormal", want)
	t.Logf("rule failing → webhook: %s (budget %s: 2 × %s + group wait %s)", msg.at.Sub(failed).Round(100*time.Millisecond), budget, interval, groupWait)
}
