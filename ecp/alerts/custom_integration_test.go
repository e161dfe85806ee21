package alerts

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/internal/testbed"
)

// notice is one alert of a notification a project's webhook received.
type notice struct{ path, status, alertname, project string }

// TestIntegrationCustomAlarmReachesProjectWebhook: with the real
// Alertmanager running ecp's configuration, a custom alarm raised with the
// project's token reaches the project's webhook (and not another
// project's), then its resolution does, and ecp's history lists it; the
// other project's token is refused.
func TestIntegrationCustomAlarmReachesProjectWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Alertmanager; skipped with -short")
	}
	amBin, err := testbed.Alertmanager.Find(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	amAddr := freeLocalAddr(t)
	o := Options{Config: DefaultConfig(), ReplicaID: "r1"}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
	o.AlertmanagerURL = "http://" + amAddr
	am, err := testbed.StartAlertmanager(t.Context(), amBin, dir, amAddr, o.AlertmanagerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = am.Stop() })

	var (
		mu      sync.Mutex
		notices []notice
	)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m webhookMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, a := range m.Alerts {
			notices = append(notices, notice{r.URL.Path, a.Status, a.Labels["alertname"], a.Labels["project"]})
		}
	}))
	t.Cleanup(sink.Close)
	// ecp's own webhook, served once the service exists.
	var ecp atomic.Pointer[http.Handler]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*ecp.Load()).ServeHTTP(w, r) }))
	t.Cleanup(front.Close)
	o.WebhookURL = front.URL + WebhookPath
	o.Routing.GroupWait = model.Duration(100 * time.Millisecond)
	o.Routing.GroupInterval, o.Routing.ECPGroupInterval = model.Duration(time.Second), model.Duration(time.Second)

	w := newWorld(t, etcdtest.Client(t))
	a := newService(t, w, o)
	ecp.Store(&a.handler)
	defer run(t, a.svc)()
	a.must(200, "root", http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}})
	for project, hook := range map[string]string{w.project.ID: "/plant", w.foreign.ID: "/lab"} {
		a.must(200, "root", http.MethodPut, "/api/v1/projects/"+project+"/alert-settings", map[string]any{
			"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical",
			"webhooks": []map[string]string{{"url": sink.URL + hook}}})
	}
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.Projects == 2 && s.OK })
	var tok, foreign struct{ Token string }
	a.must(201, "padmin", http.MethodPost, "/api/v1/projects/"+w.project.ID+"/custom-alarm-token", nil).decode(t, &tok)
	a.must(201, "root", http.MethodPost, "/api/v1/projects/"+w.foreign.ID+"/custom-alarm-token", nil).decode(t, &foreign)

	alarm := map[string]any{"name": "BackupFailed", "severity": "warning", "message": "nightly backup failed", "labels": map[string]string{"job": "backup"}}
	a.must(401, "", http.MethodPost, "/api/v1/projects/"+w.project.ID+"/custom-alarms", alarm, AlarmTokenHeader, foreign.Token)
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+w.project.ID+"/custom-alarms", alarm, AlarmTokenHeader, tok.Token)
	waitNotice := func(want notice) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			for _, n := range notices {
				if n == want {
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %+v within 30s; got %+v", want, notices)
	}
	waitNotice(notice{"/plant", "firing", "BackupFailed", w.project.ID})
	// Silenced, the alarm stays one alert on the active list: the one ecp
	// stored from its webhook is the one Alertmanager lists silenced.
	// Alertmanager's API gives times in milliseconds, and the alarm, sent
	// with finer ones, was listed twice, once silenced and once not.
	deadline := time.Now().Add(30 * time.Second)
	for len(a.list(w.project.ID, "rule=BackupFailed")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	var sl Silence
	a.must(201, "padmin", http.MethodPost, "/api/v1/projects/"+w.project.ID+"/silences", map[string]any{
		"labels": map[string]string{"job": "backup"}, "duration": "1h", "comment": "restore drill"}).decode(t, &sl)
	if got := a.list(w.project.ID, "rule=BackupFailed"); len(got) != 1 || len(got[0].SilencedBy) != 1 {
		t.Fatalf("silenced custom alarm listed as %+v, want once, silenced", got)
	}
	a.must(204, "padmin", http.MethodDelete, "/api/v1/silences/"+sl.ID, nil)
	alarm["resolved"] = true
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+w.project.ID+"/custom-alarms", alarm, AlarmTokenHeader, tok.Token)
	waitNotice(notice{"/plant", "resolved", "BackupFailed", w.project.ID})

	// ecp's route got it too: it is in the project's history, and only there.
	deadline = time.Now().Add(30 * time.Second)
	for len(a.list(w.project.ID, "state=history&rule=BackupFailed")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the resolved custom alarm never reached history; active: %+v", a.list(w.project.ID, ""))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := a.list(w.foreign.ID, "state=history"); len(got) != 0 {
		t.Fatalf("foreign project's history holds %+v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range notices {
		if n.path != "/plant" || n.project != w.project.ID {
			t.Fatalf("a notification went elsewhere: %+v (all: %+v)", n, notices)
		}
	}
}

func freeLocalAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
