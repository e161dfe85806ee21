package alerts

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/testbed"
)

// sink records the notifications Alertmanager posts to a project webhook.
type sink struct {
	*httptest.Server
	mu    sync.Mutex
	calls []sinkMessage
}

type sinkMessage struct {
	Status string `json:"status"`
	Alerts []struct {
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// names lists the alerts of m as alertname/cluster/id.
func (m sinkMessage) names() []string {
	var out []string
	for _, a := range m.Alerts {
		out = append(out, a.Labels["alertname"]+"/"+a.Labels["cluster"]+"/"+a.Labels["id"])
	}
	slices.Sort(out)
	return out
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m sinkMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.calls = append(s.calls, m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) messages() []sinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// eventually polls cond every 50 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// amStack is ecp's alerts service wired to a real Alertmanager (Debian's
// 0.25), with its webhook served on a real port and a project webhook
// sink; the project's alerting is on with the sink as its channel.
type amStack struct {
	*api
	w    *world
	am   string
	sink *sink
}

const groupWait = 2 * time.Second

func startAMStack(t *testing.T, stormThreshold int) *amStack {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Alertmanager; skipped with -short")
	}
	bin, err := testbed.Alertmanager.Find("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	o := Options{Config: DefaultConfig(), ReplicaID: "r1", RetryInterval: 100 * time.Millisecond}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
	proc, err := testbed.StartAlertmanager(t.Context(), bin, dir, addr, o.AlertmanagerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("alertmanager:\n%s", proc.Tail(4000))
		}
		_ = proc.Stop()
	})
	o.AlertmanagerURL = "http://" + addr
	// Long enough for a storm to trip before its alerts' first
	// notification: the storm guard stops it.
	o.Routing = alerting.Routing{GroupWait: model.Duration(groupWait), GroupInterval: model.Duration(time.Second), ECPGroupInterval: model.Duration(time.Second)}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	o.HTTPClient = &http.Client{Transport: tr}
	// The service needs its webhook's URL before it exists.
	var handler http.Handler
	ready := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	o.WebhookURL = srv.URL + WebhookPath
	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, o)
	handler = a.handler
	close(ready)
	store := tenancy.NewStore(w.cli)
	if _, err := store.CreateBinding(t.Context(), tenancy.Binding{Username: "fadmin", Role: tenancy.RoleProjectAdmin, Org: w.foreign.Org, Project: w.foreign.ID}); err != nil {
		t.Fatal(err)
	}
	// The alerts' clusters belong to the project: the leader resolves the
	// alerts of clusters that do not (names.go).
	for _, c := range []string{"c1", "c2", "c3"} {
		w.putCluster(t, c, "Line "+c, w.project.ID)
	}
	// fadmin administers the foreign project.
	s := &amStack{api: a, w: w, am: o.AlertmanagerURL, sink: newSink(t)}
	a.must(200, "root", http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}})
	run(t, a.svc)
	a.must(200, "padmin", http.MethodPut, "/api/v1/projects/"+w.project.ID+"/alert-settings", map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical", "stormThreshold": stormThreshold,
		"webhooks": []map[string]string{{"url": s.sink.URL + "/plant"}}})
	waitStatus(t, w.cli, func(st applyStatus) bool { return st.Projects == 1 && st.OK })
	return s
}

// fire posts alerts to Alertmanager as Prometheus would: labels
// alertname/cluster/id, in the stack's project.
func (s *amStack) fire(t *testing.T, project string, alerts ...[3]string) {
	t.Helper()
	var labels []map[string]string
	for _, a := range alerts {
		labels = append(labels, map[string]string{"alertname": a[0], "cluster": a[1], "id": a[2], "project": project, "severity": "critical"})
	}
	s.post(t, labels...)
}

func (s *amStack) silences(user, project, query string) []Silence {
	s.t.Helper()
	var out struct{ Items []Silence }
	s.must(200, user, http.MethodGet, "/api/v1/projects/"+project+"/silences"+query, nil).decode(s.t, &out)
	return out.Items
}

// TestIntegrationSilenceSuppressesExactlyItsAlert runs silences on a real
// Alertmanager: a silence of one rule in one cluster keeps exactly that
// alert from the project's webhook while the project's other alert goes
// out; the active list shows the silenced alert with its silence; another
// project's admin can neither see, nor expire, nor reach the project with
// a silence of their own; and once expired the alert is notified.
func TestIntegrationSilenceSuppressesExactlyItsAlert(t *testing.T) {
	s := startAMStack(t, alerting.DefaultStormThreshold)
	p, f := s.w.project.ID, s.w.foreign.ID
	base := "/api/v1/projects/" + p + "/silences"

	s.must(403, "viewer", http.MethodPost, base, SilenceRequest{Rule: "ruleAbnormal", Duration: "1h", Comment: "x"})
	var sl Silence
	s.must(201, "padmin", http.MethodPost, base, SilenceRequest{Rule: "ruleAbnormal", Cluster: "c1", Duration: "1h", Comment: "rule r1 is being rewritten"}).decode(t, &sl)
	if sl.ID == "" || sl.Project != p || sl.Cluster != "c1" || sl.CreatedBy != "padmin" || sl.State != SilenceActive || sl.EndsAt.Sub(sl.StartsAt) != time.Hour {
		t.Fatalf("created silence %+v", sl)
	}
	// The foreign admin: 404 on the project, its silence and its id; a
	// project matcher of theirs is refused; their own silence of the
	// same connector alert stays in their project.
	s.must(404, "fadmin", http.MethodGet, base, nil)
	s.must(404, "fadmin", http.MethodPost, base, SilenceRequest{Cluster: "c1", Duration: "1h", Comment: "x"})
	s.must(404, "fadmin", http.MethodDelete, "/api/v1/silences/"+sl.ID, nil)
	r := s.must(400, "fadmin", http.MethodPost, "/api/v1/projects/"+f+"/silences", SilenceRequest{Labels: map[string]string{"project": p, "alertname": "EMQXConnectorAbnormal"}, Duration: "1h", Comment: "x"})
	if !strings.Contains(string(r.body), `"field":"labels.project"`) {
		t.Fatalf("a foreign project label: %s", r.body)
	}
	s.must(201, "fadmin", http.MethodPost, "/api/v1/projects/"+f+"/silences", SilenceRequest{Labels: map[string]string{"alertname": "EMQXConnectorAbnormal"}, Duration: "1h", Comment: "ours"})
	if got := s.silences("fadmin", f, ""); len(got) != 1 || got[0].Comment != "ours" {
		t.Fatalf("the foreign project lists %+v, want its own silence alone", got)
	}
	if got := s.silences("viewer", p, ""); len(got) != 1 || got[0].ID != sl.ID {
		t.Fatalf("the viewer lists %+v, want the project's silence", got)
	}

	s.fire(t, p, [3]string{"EMQXRuleAbnormal", "c1", "r1"}, [3]string{"EMQXConnectorAbnormal", "c1", "k1"})
	eventually(t, 15*time.Second, "the project's webhook gets a notification", func() bool { return len(s.sink.messages()) > 0 })
	if got := s.sink.messages()[0].names(); !slices.Equal(got, []string{"EMQXConnectorAbnormal/c1/k1"}) {
		t.Fatalf("the project's webhook got %v, want the connector alone", got)
	}
	// ecp's own webhook is muted by the silence too: the list shows the
	// silenced alert from Alertmanager's list, with its silence.
	var listed []Alert
	eventually(t, 10*time.Second, "the list shows both alerts", func() bool { listed = s.list(p, "state=active"); return len(listed) == 2 })
	for _, a := range listed {
		want := []string(nil)
		if a.Name == "EMQXRuleAbnormal" {
			want = []string{sl.ID}
		}
		if !slices.Equal(a.SilencedBy, want) {
			t.Fatalf("%s silencedBy %v, want %v", a.Name, a.SilencedBy, want)
		}
	}

	s.must(403, "viewer", http.MethodDelete, "/api/v1/silences/"+sl.ID, nil)
	s.must(204, "padmin", http.MethodDelete, "/api/v1/silences/"+sl.ID, nil)
	s.must(409, "padmin", http.MethodDelete, "/api/v1/silences/"+sl.ID, nil)
	if got := s.silences("viewer", p, ""); len(got) != 0 {
		t.Fatalf("active silences after expiry %+v", got)
	}
	if got := s.silences("viewer", p, "?state=expired"); len(got) != 1 || got[0].State != SilenceExpired {
		t.Fatalf("expired silences %+v", got)
	}
	eventually(t, 15*time.Second, "the rule alert is notified once its silence expired", func() bool {
		for _, m := range s.sink.messages() {
			if slices.Contains(m.names(), "EMQXRuleAbnormal/c1/r1") {
				return true
			}
		}
		return false
	})
}

// TestIntegrationStormGuard trips the storm guard at its threshold on a
// real Alertmanager: the storm's alerts reach the lists but not the
// project's webhook, which gets the one storm notice instead; alerts
// during the storm stay unsent; clearing it (project admin) resumes
// notifications without a second notice.
func TestIntegrationStormGuard(t *testing.T) {
	const threshold = alerting.MinStormThreshold
	s := startAMStack(t, threshold)
	p := s.w.project.ID
	stormPath := "/api/v1/projects/" + p + "/alerts/storm"
	var st StormStatus
	s.must(200, "viewer", http.MethodGet, stormPath, nil).decode(t, &st)
	if st.State != StormNormal || st.Threshold != threshold {
		t.Fatalf("storm status before %+v", st)
	}
	s.must(409, "padmin", http.MethodDelete, stormPath, nil)

	var storm [][3]string
	for i := range threshold {
		storm = append(storm, [3]string{"EMQXRuleAbnormal", "c2", "r" + string(rune('a'+i))})
	}
	s.fire(t, p, storm...)
	eventually(t, 10*time.Second, "the storm notice is sent", func() bool {
		s.must(200, "viewer", http.MethodGet, stormPath, nil).decode(t, &st)
		return st.NoticeAt != nil
	})
	if st.State != StormActive || st.Count < threshold || st.Since == nil {
		t.Fatalf("storm status %+v", st)
	}
	eventually(t, 10*time.Second, "the project's webhook gets the notice", func() bool { return len(s.sink.messages()) > 0 })

	// During the storm: three more alerts reach the list, not the webhook.
	s.fire(t, p, [3]string{"EMQXConnectorAbnormal", "c3", "k1"}, [3]string{"EMQXConnectorAbnormal", "c3", "k2"}, [3]string{"EMQXConnectorAbnormal", "c3", "k3"})
	eventually(t, 10*time.Second, "the list holds the storm's alerts", func() bool {
		n := 0
		for _, a := range s.list(p, "state=active") {
			if a.Cluster == "c3" {
				n++
			}
		}
		return n == 3
	})
	// The project's route would have sent them after group_wait.
	time.Sleep(groupWait + 2*time.Second)
	msgs := s.sink.messages()
	if len(msgs) != 1 || !slices.Equal(msgs[0].names(), []string{alerting.AlertStorm + "//"}) {
		var got [][]string
		for _, m := range msgs {
			got = append(got, m.names())
		}
		t.Fatalf("during the storm the project's webhook got %v, want the one notice", got)
	}

	s.must(403, "viewer", http.MethodDelete, stormPath, nil)
	s.must(204, "padmin", http.MethodDelete, stormPath, nil)
	s.must(409, "padmin", http.MethodDelete, stormPath, nil)
	s.must(200, "viewer", http.MethodGet, stormPath, nil).decode(t, &st)
	if st.State != StormNormal || st.Recent != 0 {
		t.Fatalf("storm status after clearing %+v", st)
	}
	eventually(t, 15*time.Second, "notifications resume with what still fires", func() bool {
		for _, m := range s.sink.messages() {
			if m.Status == "firing" && slices.Contains(m.names(), "EMQXConnectorAbnormal/c3/k1") {
				return true
			}
		}
		return false
	})
	notices := 0
	for _, m := range s.sink.messages() {
		if m.Status == "firing" && slices.Contains(m.names(), alerting.AlertStorm+"//") {
			notices++
		}
	}
	if notices != 1 {
		t.Fatalf("the storm notice went out %d times, want once", notices)
	}
}
