package alerts

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// customWorld is a service with (fake) Alertmanager, clusters c1 in the
// project and c9 in the foreign one, and each project's alarm token.
func customWorld(t *testing.T) (a *api, am *fake, clk *clock, w *world, token, foreignToken string) {
	w = newWorld(t, etcdtest.Client(t))
	am = newFake(t)
	dir := t.TempDir()
	clk = &clock{t: t0}
	o := Options{Config: DefaultConfig(), ReplicaID: "r1", Now: clk.now}
	o.RulesDir, o.AlertmanagerConfigFile = filepath.Join(dir, "rules"), filepath.Join(dir, "alertmanager.yml")
	o.AlertmanagerURL = am.URL
	a = newService(t, w, o)
	for id, project := range map[string]string{"c1": w.project.ID, "c9": w.foreign.ID} {
		w.putCluster(t, id, "cluster "+id, project)
	}
	var created struct{ Token string }
	a.must(201, "padmin", http.MethodPost, "/api/v1/projects/"+w.project.ID+"/custom-alarm-token", nil).decode(t, &created)
	token = created.Token
	a.must(201, "root", http.MethodPost, "/api/v1/projects/"+w.foreign.ID+"/custom-alarm-token", nil).decode(t, &created)
	return a, am, clk, w, token, created.Token
}

func (a *api) alarm(project, token string, body any) result {
	a.t.Helper()
	return a.do("", http.MethodPost, "/api/v1/projects/"+project+"/custom-alarms", body, AlarmTokenHeader, token)
}

type postedAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    *time.Time        `json:"startsAt"`
	EndsAt      *time.Time        `json:"endsAt"`
}

func lastPosted(t *testing.T, am *fake) postedAlert {
	t.Helper()
	posted := am.alerts()
	if len(posted) == 0 {
		t.Fatal("nothing posted to alertmanager")
	}
	var alerts []postedAlert
	if err := json.Unmarshal(posted[len(posted)-1], &alerts); err != nil || len(alerts) != 1 {
		t.Fatalf("posted %s: %v", posted[len(posted)-1], err)
	}
	return alerts[0]
}

// TestCustomAlarmRaisedAndResolved: the project's token raises an alarm
// that reaches Alertmanager with exactly the project's labels and names,
// and the same alarm with resolved true ends it.
func TestCustomAlarmRaisedAndResolved(t *testing.T) {
	a, am, _, w, token, _ := customWorld(t)
	p := w.project.ID
	body := map[string]any{"name": "BackupFailed", "severity": "warning", "cluster": "c1", "message": "nightly backup failed",
		"labels": map[string]string{"job": "backup"}}
	var reply CustomAlarmReply
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", body, AlarmTokenHeader, token).decode(t, &reply)
	if reply.State != AlarmFiring || reply.StartsAt == nil || !reply.StartsAt.Equal(t0) || reply.EndsAt != nil {
		t.Fatalf("reply %+v", reply)
	}
	got := lastPosted(t, am)
	want := map[string]string{"alertname": "BackupFailed", "project": p, "cluster": "c1", "severity": "warning", "job": "backup"}
	if !mapsEqual(got.Labels, want) {
		t.Fatalf("labels %v, want %v", got.Labels, want)
	}
	wantAn := map[string]string{"summary": "nightly backup failed", "description": "nightly backup failed", "project_name": "plant",
		"organization_name": "acme", "cluster_name": "cluster c1", "link": "https://ecp.example.test/clusters/c1"}
	if !mapsEqual(got.Annotations, wantAn) || got.EndsAt != nil || !got.StartsAt.Equal(t0) {
		t.Fatalf("annotations %v startsAt %v endsAt %v", got.Annotations, got.StartsAt, got.EndsAt)
	}
	body["resolved"] = true
	a.alarm(p, token, body).decode(t, &reply)
	got = lastPosted(t, am)
	if reply.State != AlarmResolved || got.EndsAt == nil || !got.EndsAt.Equal(t0) || !mapsEqual(got.Labels, want) {
		t.Fatalf("resolution reply %+v, posted %+v", reply, got)
	}
	// Without a cluster: the project's alerts page is the link.
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", map[string]any{"name": "DiskFull", "severity": "critical", "message": "disk"}, AlarmTokenHeader, token)
	if got := lastPosted(t, am); got.Labels["cluster"] != "" || got.Annotations["link"] != "https://ecp.example.test/projects/"+p+"/alerts" {
		t.Fatalf("posted %+v", got)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// TestCustomAlarmRefusals: other projects' tokens, no token, a revoked or
// rotated token, bad bodies and old alarms are refused and nothing
// reaches Alertmanager.
func TestCustomAlarmRefusals(t *testing.T) {
	a, am, clk, w, token, foreignToken := customWorld(t)
	p, f := w.project.ID, w.foreign.ID
	ok := map[string]any{"name": "BackupFailed", "severity": "warning", "message": "m"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		m[k] = v
		return m
	}
	manyLabels := map[string]string{}
	for i := range MaxAlarmLabels + 1 {
		manyLabels["l"+strings.Repeat("x", i)] = "v"
	}
	for _, tc := range []struct {
		name, project, token string
		body                 any
		want                 int
		field                string
	}{
		{"foreign token", p, foreignToken, ok, 401, ""},
		{"own token on the foreign project", f, token, ok, 401, ""},
		{"no token", p, "", ok, 401, ""},
		{"bearer-looking token", p, "Bearer " + token, ok, 401, ""},
		{"unknown project", "nope", token, ok, 401, ""},
		{"foreign cluster", p, token, with("cluster", "c9"), 400, "cluster"},
		{"absent cluster", p, token, with("cluster", "c404"), 400, "cluster"},
		{"bad name", p, token, with("name", "backup failed"), 400, "name"},
		{"ecp's own name", p, token, with("name", "EMQXNodeDown"), 400, "name"},
		{"long name", p, token, with("name", "A"+strings.Repeat("a", MaxAlarmName)), 400, "name"},
		{"bad severity", p, token, with("severity", "urgent"), 400, "severity"},
		{"no message", p, token, with("message", " "), 400, "message"},
		{"long message", p, token, with("message", strings.Repeat("m", MaxAlarmMessage+1)), 400, "message"},
		{"project label", p, token, with("labels", map[string]string{"project": f}), 400, "labels.project"},
		{"cluster label", p, token, with("labels", map[string]string{"cluster": "c9"}), 400, "labels.cluster"},
		{"ecp label", p, token, with("labels", map[string]string{"ecp_test": "x"}), 400, "labels.ecp_test"},
		{"bad label name", p, token, with("labels", map[string]string{"a-b": "x"}), 400, "labels"},
		{"long label value", p, token, with("labels", map[string]string{"a": strings.Repeat("v", MaxAlarmLabelValue+1)}), 400, "labels.a"},
		{"too many labels", p, token, with("labels", manyLabels), 400, "labels"},
		{"unknown field", p, token, with("project", f), 400, ""},
		{"old alarm", p, token, with("startsAt", t0.Add(-MaxAlarmAge-time.Second)), 422, "startsAt"},
		{"old resolution", p, token, with("endsAt", t0.Add(-MaxAlarmAge-time.Second)), 422, "endsAt"},
		{"future alarm", p, token, with("startsAt", t0.Add(MaxAlarmSkew+time.Second)), 400, "startsAt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := a.alarm(tc.project, tc.token, tc.body)
			var e struct {
				Error struct{ Field, Message string }
			}
			_ = json.Unmarshal(r.body, &e)
			if r.status != tc.want || e.Error.Field != tc.field {
				t.Fatalf("= %d %s, want %d field %q", r.status, r.body, tc.want, tc.field)
			}
		})
	}
	if n := len(am.alerts()); n != 0 {
		t.Fatalf("refused alarms reached alertmanager %d times", n)
	}
	// An alarm just inside the age limit is taken.
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", with("startsAt", t0.Add(-MaxAlarmAge)), AlarmTokenHeader, token)

	// Token management: viewers see metadata only, never the token;
	// rotating revokes the old one; revoking leaves none.
	tokPath := "/api/v1/projects/" + p + "/custom-alarm-token"
	r := a.must(200, "viewer", http.MethodGet, tokPath, nil)
	if strings.Contains(string(r.body), token) || strings.Contains(string(r.body), "hash") || !strings.Contains(string(r.body), `"createdBy":"padmin"`) {
		t.Fatalf("token metadata %s", r.body)
	}
	stored, err := w.cli.Get(t.Context(), alarmTokensPrefix+p)
	if err != nil || len(stored.Kvs) != 1 || strings.Contains(string(stored.Kvs[0].Value), strings.TrimPrefix(token, AlarmTokenPrefix)) {
		t.Fatalf("etcd holds the token itself, not only its hash: %v %v", stored, err)
	}
	a.must(403, "viewer", http.MethodPost, tokPath, nil)
	a.must(404, "stranger", http.MethodGet, tokPath, nil)
	a.must(403, "viewer", http.MethodDelete, tokPath, nil)
	var rotated struct{ Token string }
	a.must(201, "padmin", http.MethodPost, tokPath, nil).decode(t, &rotated)
	if !strings.HasPrefix(rotated.Token, AlarmTokenPrefix) || rotated.Token == token {
		t.Fatalf("rotated token %q", rotated.Token)
	}
	a.must(401, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", ok, AlarmTokenHeader, token)
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", ok, AlarmTokenHeader, rotated.Token)
	a.must(204, "padmin", http.MethodDelete, tokPath, nil)
	a.must(404, "padmin", http.MethodDelete, tokPath, nil)
	a.must(401, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", ok, AlarmTokenHeader, rotated.Token)
	// The foreign project's token was never touched.
	clk.add(time.Minute)
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+f+"/custom-alarms", ok, AlarmTokenHeader, foreignToken)
}

// TestCustomAlarmRateLimit: a project's burst is CustomAlarmBurst alarms,
// then 429 with Retry-After until its allowance refills; another project
// is not affected.
func TestCustomAlarmRateLimit(t *testing.T) {
	a, am, clk, w, token, foreignToken := customWorld(t)
	p, f := w.project.ID, w.foreign.ID
	ok := map[string]any{"name": "BackupFailed", "severity": "warning", "message": "m"}
	for range CustomAlarmBurst {
		a.must(202, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", ok, AlarmTokenHeader, token)
	}
	r := a.alarm(p, token, ok)
	if r.status != 429 || !strings.Contains(string(r.body), "TooManyAlarms") {
		t.Fatalf("alarm over the burst = %d %s", r.status, r.body)
	}
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+f+"/custom-alarms", ok, AlarmTokenHeader, foreignToken)
	clk.add(time.Second)
	a.must(202, "", http.MethodPost, "/api/v1/projects/"+p+"/custom-alarms", ok, AlarmTokenHeader, token)
	if n := len(am.alerts()); n != CustomAlarmBurst+2 {
		t.Fatalf("alertmanager got %d alarms, want %d", n, CustomAlarmBurst+2)
	}
}
