package state_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
)

func TestRegistrationRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st")
	d, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadRegistration(); !errors.Is(err, state.ErrNotRegistered) {
		t.Fatalf("empty dir: err = %v, want ErrNotRegistered", err)
	}
	in := state.Registration{
		ECPURL: "https://ecp", ClusterID: "c1", Project: "p1", Credential: "cred-xyz",
		ReportInterval: 15 * time.Second, RegisteredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		EMQX:               state.EMQX{APIURL: "http://e", DashboardURL: "http://d", Username: "admin", Password: "pw-xyz"},
		InsecureSkipVerify: true, LogCollection: agentproto.LogCollection{Enabled: true, Dir: "/opt/emqx/log"},
	}
	if err := d.SaveRegistration(in); err != nil {
		t.Fatal(err)
	}
	out, err := d.LoadRegistration()
	if err != nil {
		t.Fatal(err)
	}
	// Secrets must survive the disk round trip by value, not as "<secret>".
	if out != in {
		t.Fatalf("round trip:\n got %#v\nwant %#v", out, in)
	}
	if out.Credential.Reveal() != "cred-xyz" || out.EMQX.Password.Reveal() != "pw-xyz" {
		t.Fatal("secrets lost on disk")
	}
	checks := []struct {
		name string
		path string
		want os.FileMode
	}{
		{"dir", path, 0o700},
		{"registration", filepath.Join(path, state.RegistrationFile), 0o600},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			fi, err := os.Stat(tc.path)
			if err != nil || fi.Mode().Perm() != tc.want {
				t.Fatalf("mode = %v (%v), want %v", fi.Mode().Perm(), err, tc.want)
			}
		})
	}

	if err := d.EndRegistration(state.Ended{Reason: "revoked", ClusterID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.LoadRegistration(); !errors.Is(err, state.ErrNotRegistered) {
		t.Fatalf("after end: err = %v", err)
	}
	if e, ok := d.LoadEnded(); !ok || e.Reason != "revoked" {
		t.Fatalf("ended = %+v %v", e, ok)
	}
	leftovers, _ := filepath.Glob(filepath.Join(path, ".*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestOpenTightensMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loose")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := state.Open(path); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode = %v, want 0700", fi.Mode().Perm())
	}
}
