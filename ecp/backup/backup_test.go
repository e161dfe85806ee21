package backup_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/backup"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestSaveRestore: a backup holds every key under /ecp/ (past one read
// page), a leased one with its time left, none of a replica's and none
// outside /ecp/; a restore writes exactly those into an empty etcd and
// refuses a non-empty one.
func TestSaveRestore(t *testing.T) {
	src := etcdtest.Client(t)
	ctx := t.Context()
	want := map[string]string{}
	for i := range 1500 {
		k := fmt.Sprintf("/ecp/clusters/c%04d", i)
		want[k] = fmt.Sprintf("{\"n\":%d}", i)
		if _, err := src.Put(ctx, k, want[k]); err != nil {
			t.Fatal(err)
		}
	}
	want["/ecp/seal/check"] = "\x00sealed\xff"
	if _, err := src.Put(ctx, "/ecp/seal/check", want["/ecp/seal/check"]); err != nil {
		t.Fatal(err)
	}
	lease, err := src.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	// A login session keeps its lease's time; a replica's keys are left out.
	want["/ecp/sessions/s1"] = "x"
	for _, k := range []string{"/ecp/sessions/s1", "/ecp/fleet/replicas/r1", "/ecp/fleet/digests/r1/0", "/ecp/fleet/leader/694d"} {
		if _, err := src.Put(ctx, k, "x", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Put(ctx, "/other/key", "x"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sum, err := backup.Save(ctx, src, &buf, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Keys != len(want) || sum.Areas["clusters"] != 1500 || sum.Areas["seal"] != 1 || sum.Areas["sessions"] != 1 || sum.Areas["fleet"] != 0 {
		t.Fatalf("saved %s, want %d keys", sum, len(want))
	}

	dst := etcdtest.Client(t)
	got, err := backup.Restore(ctx, dst, bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if got.Keys != len(want) || got.Revision != sum.Revision {
		t.Fatalf("restored %s at %d, want %s at %d", got, got.Revision, sum, sum.Revision)
	}
	resp, err := dst.Get(ctx, "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != len(want) {
		t.Fatalf("etcd holds %d keys after the restore, want %d", len(resp.Kvs), len(want))
	}
	for _, kv := range resp.Kvs {
		if want[string(kv.Key)] != string(kv.Value) {
			t.Fatalf("%s = %q, want %q", kv.Key, kv.Value, want[string(kv.Key)])
		}
		if (kv.Lease != 0) != (string(kv.Key) == "/ecp/sessions/s1") {
			t.Fatalf("%s restored with lease %x", kv.Key, kv.Lease)
		}
		if kv.Lease != 0 {
			ttl, err := dst.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
			if err != nil || ttl.TTL < 50 || ttl.TTL > 60 {
				t.Fatalf("the session's lease has %+v left (%v), want about 60 s", ttl, err)
			}
		}
	}

	_, err = backup.Restore(ctx, dst, bytes.NewReader(buf.Bytes()))
	if !errors.Is(err, backup.ErrNotEmpty) || !strings.Contains(err.Error(), "restore into an empty etcd") {
		t.Fatalf("restore into a non-empty etcd: %v", err)
	}
	if _, err := backup.Restore(ctx, etcdtest.Client(t), strings.NewReader("not a backup")); err == nil || !strings.Contains(err.Error(), "not an ecp backup") {
		t.Fatalf("restore of garbage: %v", err)
	}
}

// TestRestoreKeepsRoleBindingsValid: a role binding names its user's
// generation (the create revision of the user's key), which a restore
// cannot keep; the first restore (checked by hand with ecp serve) left
// every binding void, so even the admin saw no organization. The restore
// rewrites the generation to the user's new one; a binding of an older,
// deleted user of the same name stays void.
func TestRestoreKeepsRoleBindingsValid(t *testing.T) {
	src := etcdtest.Client(t)
	ctx := t.Context()
	// Pad the source's revisions so old and new generations differ.
	for i := range 20 {
		if _, err := src.Put(ctx, fmt.Sprintf("/ecp/audit/%02d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	put, err := src.Put(ctx, "/ecp/users/admin", `{"username":"admin"}`)
	if err != nil {
		t.Fatal(err)
	}
	gen := put.Header.Revision
	binding := fmt.Sprintf(`{"id":"b1","username":"admin","role":"system-admin","userGeneration":%d}`, gen)
	stale := `{"id":"b0","username":"admin","role":"org-admin","userGeneration":3}`
	for k, v := range map[string]string{"/ecp/role-bindings/b1": binding, "/ecp/user-roles/admin/b1": binding, "/ecp/role-bindings/b0": stale} {
		if _, err := src.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := backup.Save(ctx, src, &buf, time.Now()); err != nil {
		t.Fatal(err)
	}
	dst := etcdtest.Client(t)
	if _, err := backup.Restore(ctx, dst, &buf); err != nil {
		t.Fatal(err)
	}
	user, err := dst.Get(ctx, "/ecp/users/admin")
	if err != nil || len(user.Kvs) != 1 {
		t.Fatalf("user not restored: %v", err)
	}
	newGen := user.Kvs[0].CreateRevision
	if newGen == gen {
		t.Fatalf("the test needs generations to differ (both %d)", gen)
	}
	for _, k := range []string{"/ecp/role-bindings/b1", "/ecp/user-roles/admin/b1"} {
		resp, err := dst.Get(ctx, k)
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("%s not restored: %v", k, err)
		}
		if got := string(resp.Kvs[0].Value); !strings.Contains(got, fmt.Sprintf(`"userGeneration":%d`, newGen)) || !strings.Contains(got, `"role":"system-admin"`) {
			t.Fatalf("%s = %s, want userGeneration %d (the restored user's)", k, got, newGen)
		}
	}
	if resp, _ := dst.Get(ctx, "/ecp/role-bindings/b0"); len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != stale {
		t.Fatalf("the stale binding changed: %v", resp.Kvs)
	}
}

// TestBackupOfEmptyDataDirRefused: a backup of a --data.dir that holds no
// member (a typo, or the wrong host) is an error naming the directory,
// not an empty backup that looks like success.
func TestBackupOfEmptyDataDirRefused(t *testing.T) {
	dir := t.TempDir()
	_, _, err := backup.Target{DataDir: dir, Existing: true}.Connect(t.Context(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "no embedded etcd data in "+dir) {
		t.Fatalf("backup of an empty data dir: err %v, want one naming %s", err, dir)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the refused backup left %d entries in %s", len(entries), dir)
	}
}
