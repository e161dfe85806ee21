package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/internal/testbed"
)

// TestJourneyAlertCatalogue drives six rules of the catalogue from a fault
// in EMQX to an e-mail in Mailpit and back to resolved, with the built
// binaries, emqx-sim and Debian's Prometheus and Alertmanager: a node
// stopped (nodeDown), a licence uploaded that expires within the project's
// 30 days (licenseExpiry), clients over 80 % of the max connections ecp
// assigned (connections), an alarm EMQX raises itself (emqxAlarm, "EMQX
// alert push" on), a node's CPU over 80 % (nodeCPU) and an authenticator
// that lost its backend (authnResource). It measures each alert's latency from the fault to its
// e-mail at trigger count 1 and holds it to one collection interval, plus
// one evaluation, plus Alertmanager's group wait, plus a delivery
// allowance. A silence of one more alarm keeps exactly that alarm out of
// every e-mail while the others arrive. Then, at stormThreshold 5, five new
// alarms trip the storm guard: one ECPAlertStorm e-mail, none of the storm,
// until the project admin clears it and the storm's alerts go out.
func TestJourneyAlertCatalogue(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs the built binaries, Prometheus, Alertmanager and Mailpit")
	}
	const (
		// interval is the agents' collection interval: ecp's report
		// interval, which the agent follows.
		interval = 2 * time.Second
		// delivery covers what no interval counts: the remote-write push
		// through ecp, Prometheus posting to Alertmanager, the SMTP
		// exchange with Mailpit and a loaded machine's scheduling.
		delivery = 2 * time.Second
	)
	as := startAlertStack(t, interval)
	s := as.stack
	ctx := t.Context()
	simURL := "http://" + as.simAddr
	// Ten clients a node: about 30 sessions of the 100 ecp assigns below.
	s.startSim(as.simAddr, "--clients-per-node", "10")
	project := s.projects("catalogue")[0]
	entry := s.manageCollecting(project.ID, simURL, 0).entry
	base := "/api/v1/projects/" + project.ID
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/clusters/"+entry.ID+"/max-connections", map[string]int{"maxConnections": 100}, nil); err != nil {
		t.Fatal(err)
	}
	const oncall = "oncall@example.test"
	settings := map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical", "emqxAlertPush": true,
		"emails": []string{oncall},
		"rules": map[string]any{
			"nodeDown":      map[string]any{"enabled": true},
			"licenseExpiry": map[string]any{"enabled": true, "threshold": 30},
			"connections":   map[string]any{"enabled": true, "threshold": 80},
			"nodeCPU":       map[string]any{"enabled": true, "threshold": 80},
			"authnResource": map[string]any{"enabled": true},
			// On by default; nothing here breaks them.
			"ruleAbnormal": map[string]any{"enabled": false}, "connectorAbnormal": map[string]any{"enabled": false},
		},
	}
	// Before alerting is on: the agent applied the max connections, the
	// cluster is well under 80 % of it, and EMQX cleared the licence alarm
	// it raised while the default max held. Switched on earlier, that
	// alarm's alert opened the cluster's group in Alertmanager a moment
	// before the faults, and the faults' alerts that missed the group's
	// first flush waited a group_interval (a fault e-mailed 12 s late).
	sel := fmt.Sprintf(`project=%q, cluster=%q`, project.ID, entry.ID)
	eventually(t, 30*time.Second, "max connections 100 applied and no EMQX alarm active", func() (bool, string) {
		applied := promLabelValues(t, as.promURL, fmt.Sprintf(`emqx_license_dynamic_max_connections{%s} == 100`, sel), "cluster")
		low := promLabelValues(t, as.promURL, fmt.Sprintf(`sum by (cluster) (emqx_node_connections{%s}) < 60`, sel), "cluster")
		alarms := promLabelValues(t, as.promURL, fmt.Sprintf(`emqx_alarm_active{%s} == 1`, sel), "name")
		return len(applied) == 1 && len(low) == 1 && len(alarms) == 0,
			fmt.Sprintf("max applied %v, connections low %v, alarms %v", applied, low, alarms)
	})
	applyAlertSettings(t, s, project.ID, settings)
	applied := time.Now()
	as.waitAlertmanagerFound(t)
	t.Logf("Prometheus found Alertmanager %s after the settings were applied", time.Since(applied).Round(10*time.Millisecond))
	// Fault to e-mail: up to one collection interval until the agent
	// sees the fault, one evaluation interval until a rule reads it, and
	// group_wait in Alertmanager (the first faults' alerts open the
	// cluster's group). A resolution waits for group_interval instead, as
	// the group has notified by then. The timers are read from what ecp
	// configured.
	evaluation, groupWait, groupInterval := alertTimers(t, as, project.ID)
	firingBound := interval + evaluation + groupWait + delivery
	resolvedBound := interval + evaluation + groupInterval + delivery

	// Before any fault, nothing fires.
	eventually(t, 30*time.Second, "nothing firing", func() (bool, string) {
		firing := promLabelValues(t, as.promURL, fmt.Sprintf(`ALERTS{project=%q}`, project.ID), "alertname")
		return len(firing) == 0, fmt.Sprintf("firing %v", firing)
	})
	nodes := promLabelValues(t, as.promURL, fmt.Sprintf(`emqx_node_running{%s} == 1`, sel), "node")
	if len(nodes) != 3 {
		t.Fatalf("running nodes %v, want 3", nodes)
	}
	slices.Sort(nodes)
	node, busy := nodes[2], nodes[0]
	const authenticator = "password_based:built_in_database"

	var sl struct{ ID string }
	if err := s.api.Do(ctx, http.MethodPost, base+"/silences", map[string]any{"rule": "emqxAlarm", "cluster": entry.ID,
		"labels": map[string]string{"name": "e2e_silenced"}, "duration": "1h", "comment": "e2e: known, being worked on"}, &sl); err != nil {
		t.Fatal(err)
	}

	mail := &mailbox{url: as.mailURL, to: oncall}
	// Logged in before the faults, so that they all happen within a
	// moment and open the cluster's group together.
	emqxAPI := simClient(t, simURL)
	faults := []struct {
		alert  string
		labels map[string]string
		inject func()
		heal   func()
	}{
		{"EMQXNodeDown", map[string]string{"node": node},
			func() { simPost(t, simURL+"/sim/nodes/"+node+"/stop", "") },
			func() { simPost(t, simURL+"/sim/nodes/"+node+"/start", "") }},
		// A licence uploaded on EMQX's own API, expiring in 10 days;
		// healed by one that runs for a year.
		{"EMQXLicenseExpiring", nil,
			func() { uploadLicence(t, emqxAPI, 10) },
			func() { uploadLicence(t, emqxAPI, 365) }},
		{"EMQXConnectionsNearMax", nil,
			func() { simPost(t, simURL+"/sim/clients", `{"perNode":100}`) },
			func() { simPost(t, simURL+"/sim/clients", `{"perNode":10}`) }},
		{"EMQXAlarm", map[string]string{"name": "e2e_alarm"},
			func() { simPost(t, simURL+"/sim/alarms/e2e_alarm/raise", `{"message":"e2e: an alarm of EMQX's own"}`) },
			func() { simPost(t, simURL+"/sim/alarms/e2e_alarm/clear", `{}`) }},
		{"EMQXNodeCPUHigh", map[string]string{"node": busy},
			func() { simPost(t, simURL+"/sim/nodes/"+busy+"/cpu", `{"use":95}`) },
			func() { simPost(t, simURL+"/sim/nodes/"+busy+"/cpu", `{}`) }},
		{"EMQXAuthenticatorAbnormal", map[string]string{"id": authenticator},
			func() { simPost(t, simURL+"/sim/authentication/"+authenticator+"/fail", `{}`) },
			func() { simPost(t, simURL+"/sim/authentication/"+authenticator+"/heal", "") }},
	}
	want := func(i int) map[string]string {
		l := map[string]string{"alertname": faults[i].alert, "project": project.ID, "cluster": entry.ID, "severity": "critical"}
		for k, v := range faults[i].labels {
			l[k] = v
		}
		return l
	}
	injected := make([]time.Time, len(faults))
	for i, f := range faults {
		injected[i] = time.Now()
		f.inject()
	}
	simPost(t, simURL+"/sim/alarms/e2e_silenced/raise", `{"message":"e2e: silenced"}`)
	t.Logf("%d faults injected within %s", len(faults), time.Since(injected[0]).Round(time.Millisecond))
	// mailed waits for an e-mail with each fault's alert in status and
	// holds the time from since[i] to it to bound.
	mailed := func(status string, since []time.Time, bound time.Duration, why string) {
		t.Helper()
		eventually(t, 60*time.Second, "a "+status+" e-mail for each fault", func() (bool, string) {
			missing := []string{}
			for i := range faults {
				if _, ok := mail.first(t, status, want(i)); !ok {
					missing = append(missing, faults[i].alert)
				}
			}
			return len(missing) == 0, fmt.Sprintf("missing %v; e-mailed %v", missing, mail.summary(t))
		})
		t.Logf("%s e-mail, bound %s = %s:", status, bound, why)
		for i, f := range faults {
			at, _ := mail.first(t, status, want(i))
			latency := at.Sub(since[i])
			t.Logf("  %-26s %s", f.alert, latency.Round(10*time.Millisecond))
			if latency > bound {
				t.Errorf("%s: %s e-mail %s after the change, over the bound %s", f.alert, status, latency.Round(10*time.Millisecond), bound)
			}
		}
	}
	mailed("firing", injected, firingBound, fmt.Sprintf("collection %s + evaluation %s + group_wait %s + delivery %s (trigger count 1)",
		interval, evaluation, groupWait, delivery))
	// Where the time went: Prometheus' evaluation that found the fault
	// (the alert's start) and ecp's webhook, which Alertmanager calls
	// without a group wait.
	for _, a := range listAlerts(t, s, project.ID, "active") {
		for i, f := range faults {
			match := a.Name == f.alert
			for k, v := range f.labels {
				match = match && a.Labels[k] == v
			}
			if match {
				t.Logf("  %-26s evaluated firing %s, at ecp %s after the fault", f.alert,
					a.StartsAt.Sub(injected[i]).Round(10*time.Millisecond), a.LastNotifiedAt.Sub(injected[i]).Round(10*time.Millisecond))
			}
		}
	}

	// The silenced alarm fired (ecp lists it, muted by the silence) and
	// reached no e-mail.
	silenced := map[string]string{"alertname": "EMQXAlarm", "name": "e2e_silenced"}
	eventually(t, 30*time.Second, "the silenced alarm listed with its silence", func() (bool, string) {
		for _, a := range listAlerts(t, s, project.ID, "active") {
			if a.Labels["name"] == "e2e_silenced" {
				return slices.Equal(a.SilencedBy, []string{sl.ID}), fmt.Sprint(a)
			}
		}
		return false, "not listed"
	})

	healed := make([]time.Time, len(faults))
	for i, f := range faults {
		healed[i] = time.Now()
		f.heal()
	}
	simPost(t, simURL+"/sim/alarms/e2e_silenced/clear", `{}`)
	mailed("resolved", healed, resolvedBound, fmt.Sprintf("collection %s + evaluation %s + group_interval %s + delivery %s (recovery count 1)",
		interval, evaluation, groupInterval, delivery))
	if _, ok := mail.first(t, "", silenced); ok {
		t.Fatalf("the silenced alarm reached an e-mail: %v", mail.summary(t))
	}

	// The storm guard at 5 new alerts a minute: the faults above made 8
	// (license_quota among them, which EMQX raised at 80 % of its
	// licence), so five more trip it.
	settings["stormThreshold"] = 5
	applyAlertSettings(t, s, project.ID, settings)
	raiseStorm(t, s, project.ID, simURL)
	stormNotice := map[string]string{"alertname": "ECPAlertStorm", "project": project.ID}
	eventually(t, 30*time.Second, "the storm notice e-mailed", func() (bool, string) {
		_, ok := mail.first(t, "firing", stormNotice)
		return ok, mail.summary(t)
	})
	// Muted for longer than the cluster's group would wait to send its
	// new alerts.
	time.Sleep(groupInterval + delivery)
	for i := range 5 {
		if _, ok := mail.first(t, "", map[string]string{"name": fmt.Sprintf("storm_%d", i)}); ok {
			t.Fatalf("alarm storm_%d of the storm reached an e-mail: %v", i, mail.summary(t))
		}
	}
	if err := s.api.Do(ctx, http.MethodDelete, base+"/alerts/storm", nil, nil); err != nil {
		t.Fatal(err)
	}
	cleared := time.Now()
	var resumed time.Time
	eventually(t, 60*time.Second, "e-mails resume once the admin cleared the storm", func() (bool, string) {
		var ok bool
		resumed, ok = mail.first(t, "firing", map[string]string{"alertname": "EMQXAlarm", "name": "storm_0"})
		return ok, mail.summary(t)
	})
	var storm stormOf
	if err := s.api.Do(ctx, http.MethodGet, base+"/alerts/storm", nil, &storm); err != nil || storm.State != "normal" {
		t.Fatalf("storm after clearing: %+v (%v), want normal", storm, err)
	}
	if n := mail.count(t, stormNotice); n != 1 {
		t.Fatalf("%d e-mails carry the storm notice, want exactly one: %v", n, mail.summary(t))
	}
	t.Logf("storm cleared → the storm's alarms e-mailed: %s", resumed.Sub(cleared).Round(10*time.Millisecond))
}

// alertTimers reads the project's rule evaluation interval from
// Prometheus and the group_wait and group_interval of the Alertmanager
// configuration ecp wrote.
func alertTimers(t *testing.T, as alertStack, projectID string) (evaluation, groupWait, groupInterval time.Duration) {
	t.Helper()
	if g, ok := ruleGroup(t, as.promURL, projectID); ok {
		evaluation = time.Duration(g.Interval * float64(time.Second))
	}
	b, err := os.ReadFile(filepath.Join(as.dir, "alertmanager.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var am struct {
		Route struct {
			GroupWait     string `yaml:"group_wait"`
			GroupInterval string `yaml:"group_interval"`
		} `yaml:"route"`
	}
	if err := yaml.Unmarshal(b, &am); err != nil {
		t.Fatal(err)
	}
	wait, err1 := model.ParseDuration(am.Route.GroupWait)
	every, err2 := model.ParseDuration(am.Route.GroupInterval)
	if evaluation == 0 || err1 != nil || err2 != nil {
		t.Fatalf("evaluation interval %s, group_wait %q (%v), group_interval %q (%v)", evaluation, am.Route.GroupWait, err1, am.Route.GroupInterval, err2)
	}
	return evaluation, time.Duration(wait), time.Duration(every)
}

// uploadLicence posts a business-critical licence key to EMQX's licence API
// that expires in days (00:00 UTC of that day).
func uploadLicence(t *testing.T, emqxAPI *testbed.Client, days int) {
	t.Helper()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	key := sim.EncodeLicenseKey(sim.License{Type: 1, CustomerType: 3, Customer: "e2e", Email: "ops@example.test",
		Deployment: "e2e", Start: today.AddDate(0, 0, days-365), Days: 365, MaxSessions: 100000})
	if err := emqxAPI.Do(t.Context(), http.MethodPost, "/api/v5/license", map[string]string{"key": key}, nil); err != nil {
		t.Fatalf("upload a licence expiring in %d days: %v", days, err)
	}
}

// mailbox reads the alert e-mails one recipient got in Mailpit: each
// message's text body (alertmanager/email.tmpl) lists its alerts, each
// opening with FIRING or RESOLVED and closing with its labels.
type mailbox struct {
	url, to string
	mu      sync.Mutex
	read    map[string]bool
	alerts  []mailedAlert
}

// mailedAlert is one alert of one e-mail, with the time Mailpit received
// the e-mail.
type mailedAlert struct {
	at     time.Time
	status string
	labels map[string]string
}

// refresh reads the messages not read yet.
func (m *mailbox) refresh(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.read == nil {
		m.read = map[string]bool{}
	}
	var list struct {
		Messages []struct {
			ID      string    `json:"ID"`
			Created time.Time `json:"Created"`
		} `json:"messages"`
	}
	getJSON(t, m.url+"/api/v1/search?limit=1000&query="+url.QueryEscape("to:"+m.to), &list)
	for _, msg := range list.Messages {
		if m.read[msg.ID] {
			continue
		}
		var body struct {
			Text string `json:"Text"`
		}
		getJSON(t, m.url+"/api/v1/message/"+msg.ID, &body)
		m.read[msg.ID] = true
		var cur *mailedAlert
		for _, line := range strings.Split(body.Text, "\n") {
			switch {
			case strings.HasPrefix(line, "FIRING "):
				cur = &mailedAlert{at: msg.Created, status: "firing"}
			case strings.HasPrefix(line, "RESOLVED "):
				cur = &mailedAlert{at: msg.Created, status: "resolved"}
			case cur != nil && strings.HasPrefix(strings.TrimSpace(line), "Labels:"):
				cur.labels = map[string]string{}
				for _, pair := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "Labels:")) {
					if k, v, ok := strings.Cut(pair, "="); ok {
						cur.labels[k] = v
					}
				}
				m.alerts = append(m.alerts, *cur)
				cur = nil
			}
		}
	}
}

// matching returns the mailed alerts in status ("" any) whose labels hold
// want.
func (m *mailbox) matching(t *testing.T, status string, want map[string]string) []mailedAlert {
	t.Helper()
	m.refresh(t)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []mailedAlert
	for _, a := range m.alerts {
		if status != "" && a.status != status {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && a.labels[k] == v
		}
		if ok {
			out = append(out, a)
		}
	}
	return out
}

// first returns when the first e-mail carrying a matching alert arrived.
func (m *mailbox) first(t *testing.T, status string, want map[string]string) (time.Time, bool) {
	t.Helper()
	found := m.matching(t, status, want)
	if len(found) == 0 {
		return time.Time{}, false
	}
	first := found[0].at
	for _, a := range found[1:] {
		if a.at.Before(first) {
			first = a.at
		}
	}
	return first, true
}

// count is how many mailed alerts match, in any status.
func (m *mailbox) count(t *testing.T, want map[string]string) int {
	t.Helper()
	return len(m.matching(t, "", want))
}

// summary lists what was mailed, for failure messages.
func (m *mailbox) summary(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, a := range m.matching(t, "", nil) {
		parts = append(parts, fmt.Sprintf("%s %s %s %s%s", a.at.Format("15:04:05.000"), a.status, a.labels["alertname"],
			a.labels["node"], a.labels["name"]))
	}
	return strings.Join(parts, "; ")
}
