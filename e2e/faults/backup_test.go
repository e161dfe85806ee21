package faults

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestBackupWipeRestore backs up ecp's state from the external etcd with
// `ecp backup`, stops the replicas, wipes etcd (a new cluster on new
// ports and empty data dirs), restores with `ecp restore` and starts the
// replicas on it. The organizations, projects, clusters, users and role
// bindings are the same; the sealed alert settings open again with the same
// key file; a login session from before the backup still works; the running agent's credential still works, so its cluster is
// running with its record; a restore into the now non-empty etcd is refused.
func TestBackupWipeRestore(t *testing.T) {
	f := newFleet(t)
	ctx := t.Context()
	if err := f.api.Do(ctx, http.MethodPost, "/api/v1/users", map[string]string{"username": "plant-viewer", "password": "plant-viewer-password"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.api.Do(ctx, http.MethodPost, "/api/v1/role-bindings", map[string]string{"username": "plant-viewer", "role": "project-viewer", "project": f.project}, nil); err != nil {
		t.Fatal(err)
	}
	if err := f.api.Do(ctx, http.MethodPut, "/api/v1/system/notification-policy", map[string]any{"allowCidrs": []string{"127.0.0.0/8"}}, nil); err != nil {
		t.Fatal(err)
	}
	settings := "/api/v1/projects/" + f.project + "/alert-settings"
	if err := f.api.Do(ctx, http.MethodPut, settings, map[string]any{"enabled": true, "triggerCount": 2, "recoveryCount": 1, "severity": "critical",
		"webhooks": []map[string]string{{"url": "http://127.0.0.1:9/hook?token=s3cret"}}}, nil); err != nil {
		t.Fatal(err)
	}
	state := func() map[string]any {
		t.Helper()
		out := map[string]any{}
		for _, path := range []string{"/api/v1/orgs", "/api/v1/users", "/api/v1/role-bindings", "/api/v1/projects/" + f.project + "/clusters", settings} {
			var v map[string]any
			if err := f.api.Do(ctx, http.MethodGet, path, nil, &v); err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			// What changes with every report or apply is not state, and
			// a user's generation is its key's create revision, which the
			// restore renumbers (and rewrites in the bindings).
			if items, ok := v["items"].([]any); ok {
				for _, it := range items {
					if m, ok := it.(map[string]any); ok {
						for _, counter := range []string{"lastReportAt", "connections", "liveConnections", "nodesRunning", "userGeneration"} {
							delete(m, counter)
						}
					}
				}
			}
			delete(v, "status")
			out[path] = v
		}
		return out
	}
	before := state()
	session := *f.api

	file := filepath.Join(f.dir, "ecp.backup")
	saved := ecpCmd(t, "backup", "--etcd.endpoints", f.etcd.Endpoints(), "--output", file)
	for _, r := range f.replicas {
		if err := r.proc.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	f.etcd.Stop()
	wiped, err := testbed.StartEtcdCluster(ctx, etcdBin, filepath.Join(f.dir, "etcd-new"), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wiped.Stop)
	f.etcd = wiped
	restored := ecpCmd(t, "restore", "--etcd.endpoints", f.etcd.Endpoints(), "--input", file)
	back := time.Now()
	for _, r := range f.replicas {
		f.startReplica(r, bins.Path("ecp"))
	}
	if f.api, err = testbed.Login(ctx, f.base(), "admin", adminPassword); err != nil {
		t.Fatal(err)
	}
	if err := session.Do(ctx, http.MethodGet, "/api/v1/orgs", nil, nil); err != nil {
		t.Errorf("the login session from before the backup does not work after the restore: %v", err)
	}
	if _, err := testbed.Login(ctx, f.base(), "plant-viewer", "plant-viewer-password"); err != nil {
		t.Errorf("the restored user cannot log in: %v", err)
	}
	// The agents ride out the outage and report with their credentials.
	eventually(t, 30*time.Second, "every agent reported after the restore", func() bool {
		for _, a := range f.agents {
			if cl, err := f.api.Cluster(ctx, a.id); err != nil || !cl.LastReportAt.After(back) {
				return false
			}
		}
		return true
	})
	f.intact(ctx, back)
	after := state()
	for path, v := range before {
		if !reflect.DeepEqual(v, after[path]) {
			t.Errorf("GET %s after the restore differs:\nbefore %v\nafter  %v", path, v, after[path])
		}
	}
	out, err := exec.CommandContext(ctx, bins.Path("ecp"), "restore", "--etcd.endpoints", f.etcd.Endpoints(), "--input", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "restore into an empty etcd") {
		t.Errorf("a restore into the live etcd was not refused: %v\n%s", err, out)
	}
	t.Logf("SUMMARY backup, wipe of the 3-member etcd, restore, %d agents: lost nothing (leased keys come back with the time they had left); organizations, projects, clusters, users, role bindings and the sealed alert settings are the same, every agent reports with its credential; %s; %s",
		len(f.agents), strings.TrimSpace(saved), strings.TrimSpace(restored))
}

// ecpCmd runs an ecp subcommand and returns its output; it fails the test
// when the command fails.
func ecpCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), bins.Path("ecp"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ecp %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// eventually polls cond every 200 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
