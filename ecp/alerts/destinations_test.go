package alerts

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/destpolicy"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// apiError is the error envelope as a client reads it.
type apiError struct {
	Error struct {
		Code, Message, Field string
	} `json:"error"`
}

// TestSec02WebhookSSRFRefused replays issue #11 finding 2: a project admin
// saved the webhooks http://127.0.0.1:<prometheus>/-/quit and
// http://169.254.169.254/latest/meta-data/, pressed "test", and
// Alertmanager's POST stopped the Prometheus every tenant shares. Both are
// now refused at save with a 422 naming the field and why, even after the
// system admin allowed loopback for the deployment's own sinks; a name
// saved while it pointed somewhere harmless and rebound to the metadata
// address afterwards loses its receiver at the next render, the project's
// status says so, and "test" sends nothing.
func TestSec02WebhookSSRFRefused(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	prom, am := newFake(t), newFake(t)
	dir := t.TempDir()
	o := Options{Config: DefaultConfig(), RetryInterval: 50 * time.Millisecond, ReplicaID: "r1"}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "am", "alertmanager.yml")
	o.PrometheusURL, o.AlertmanagerURL = prom.URL, am.URL
	if err := os.MkdirAll(filepath.Dir(o.AlertmanagerConfigFile), 0o755); err != nil {
		t.Fatal(err)
	}
	a := newService(t, w, o)
	done := run(t, a.svc)
	defer done()
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.OK })

	path := "/api/v1/projects/" + w.project.ID + "/alert-settings"
	quit := prom.URL + "/-/quit"
	settings := func(urls ...string) map[string]any {
		hooks := []map[string]string{}
		for _, u := range urls {
			hooks = append(hooks, map[string]string{"url": u})
		}
		return map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical", "webhooks": hooks}
	}
	refused := func(body any, field, says string) {
		t.Helper()
		var e apiError
		a.must(http.StatusUnprocessableEntity, "padmin", http.MethodPut, path, body).decode(t, &e)
		if e.Error.Code != CodeDestinationRefused || e.Error.Field != field || !strings.Contains(e.Error.Message, says) {
			t.Fatalf("got %+v, want %s refused saying %q", e.Error, field, says)
		}
	}
	refused(settings("https://hooks.example.test/ok", quit), "webhooks[1].url", "is Prometheus, one of ecp's own dependencies")
	refused(settings("http://127.0.0.1:9/hook"), "webhooks[0].url", "127.0.0.1 is a loopback address")
	refused(settings("http://169.254.169.254/latest/meta-data/"), "webhooks[0].url", "link-local")
	refused(settings("http://2852039166/latest/meta-data/"), "webhooks[0].url", "dotted-decimal")

	// The deployment's own sinks sit on loopback: the system admin allows
	// it; Prometheus stays out of reach.
	a.must(http.StatusForbidden, "padmin", http.MethodPut, "/api/v1"+destpolicy.Path, map[string]any{"allowCidrs": []string{"127.0.0.0/8"}})
	a.must(http.StatusOK, "root", http.MethodPut, "/api/v1"+destpolicy.Path, map[string]any{"allowCidrs": []string{"127.0.0.0/8"}})
	refused(settings(quit), "webhooks[0].url", "Prometheus, one of ecp's own dependencies")
	refused(settings("http://[::ffff:169.254.169.254]/latest/meta-data/"), "webhooks[0].url", "link-local")

	// A name that looks harmless at save is rebound to the metadata
	// address: the next render leaves it out and says why.
	a.dns.point("rebind.example.test", "203.0.113.9")
	a.must(http.StatusOK, "padmin", http.MethodPut, path, settings("https://hooks.example.test/ok", "http://rebind.example.test/hook"))
	waitStatus(t, w.cli, func(s applyStatus) bool { return s.OK && s.Projects == 1 && len(s.Dropped) == 0 })
	var reply SettingsReply
	a.must(http.StatusOK, "padmin", http.MethodGet, path, nil).decode(t, &reply)
	if reply.Status.Delivery != DeliveryApplied {
		t.Fatalf("before the rebinding: status %+v", reply.Status)
	}
	a.dns.point("rebind.example.test", "169.254.169.254")
	// Any change of the policy makes the leader render again (so would
	// its periodic resync).
	a.must(http.StatusOK, "root", http.MethodPut, "/api/v1"+destpolicy.Path, map[string]any{"allowCidrs": []string{"127.0.0.0/8"}, "denyCidrs": []string{"192.0.2.0/24"}})
	waitStatus(t, w.cli, func(s applyStatus) bool { return len(s.Dropped[w.project.ID]) == 1 })
	a.must(http.StatusOK, "viewer", http.MethodGet, path, nil).decode(t, &reply)
	if reply.Status.Delivery != DeliveryPartial || !strings.Contains(reply.Status.Message, "webhooks[1].url: rebind.example.test (169.254.169.254) is a link-local address") {
		t.Fatalf("after the rebinding: status %+v, want partial naming webhooks[1].url", reply.Status)
	}
	cfg, err := os.ReadFile(o.AlertmanagerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "rebind.example.test") || !strings.Contains(string(cfg), "https://hooks.example.test/ok") {
		t.Fatalf("alertmanager config after the rebinding:\n%s", cfg)
	}
	var e apiError
	a.must(http.StatusUnprocessableEntity, "padmin", http.MethodPost, path+"/test", nil).decode(t, &e)
	if e.Error.Field != "webhooks[1].url" || len(am.alerts()) != 0 {
		t.Fatalf("test notification: %+v, %d alerts posted; want 422 on webhooks[1].url and none", e.Error, len(am.alerts()))
	}
}

// TestNotificationPolicyAPI: only system admins read and change the
// policy; bad ranges are refused naming the entry; the dependencies show
// as host:port only.
func TestNotificationPolicyAPI(t *testing.T) {
	w := newWorld(t, etcdtest.Client(t))
	o := Options{Config: DefaultConfig()}
	o.PrometheusURL, o.AlertmanagerURL = "http://prom:secret@127.0.0.1:9090/x", "http://127.0.0.1:9093"
	o.RulesDir, o.AlertmanagerConfigFile = t.TempDir(), filepath.Join(t.TempDir(), "am.yml")
	a := newService(t, w, o)
	p := "/api/v1" + destpolicy.Path
	a.must(http.StatusUnauthorized, "", http.MethodGet, p, nil)
	a.must(http.StatusForbidden, "padmin", http.MethodGet, p, nil)
	var got destpolicy.Reply
	a.must(http.StatusOK, "root", http.MethodGet, p, nil).decode(t, &got)
	if got.UpdatedAt != nil || len(got.AllowCIDRs) != 0 || len(got.Dependencies) != 2 || got.Dependencies[0].Endpoint != "127.0.0.1:9090" {
		t.Fatalf("initial policy %+v", got)
	}
	for _, tc := range []struct {
		body  any
		field string
	}{
		{map[string]any{"allowCidrs": []string{"127.0.0.1"}}, "allowCidrs[0]"},
		{map[string]any{"denyCidrs": []string{"10.0.0.0/8", "10.0.0.1/8"}}, "denyCidrs[1]"},
		{map[string]any{"allowCidrs": "127.0.0.0/8"}, "allowCidrs"},
	} {
		var e apiError
		a.must(http.StatusBadRequest, "root", http.MethodPut, p, tc.body).decode(t, &e)
		if e.Error.Field != tc.field {
			t.Fatalf("%v: got %+v, want field %s", tc.body, e.Error, tc.field)
		}
	}
	a.must(http.StatusOK, "root", http.MethodPut, p, map[string]any{"denyCidrs": []string{"10.0.0.0/8"}}).decode(t, &got)
	if got.UpdatedBy != "root" || len(got.DenyCIDRs) != 1 || got.AllowCIDRs == nil {
		t.Fatalf("stored policy %+v", got)
	}
}
