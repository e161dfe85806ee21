package seal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func newTestKey(t *testing.T) (*Key, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", DefaultKeyFile)
	k, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	return k, path
}

func TestKeyFileIsCreatedOnceWithMode0600(t *testing.T) {
	k, path := newTestKey(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID() != k.ID() {
		t.Fatalf("second load has key id %s, first %s: the key was replaced", again.ID(), k.ID())
	}
	sealed := k.Seal("/n", []byte("v"))
	if got, ok, err := again.Open("/n", []byte(sealed)); err != nil || !ok || string(got) != "v" {
		t.Fatalf("reloaded key opens %q, %v, %v", got, ok, err)
	}
}

func TestBadKeyFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte("c2hvcnQ=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "openssl rand -base64 32") {
		t.Fatalf("short key: %v", err)
	}
}

func TestOpen(t *testing.T) {
	k, _ := newTestKey(t)
	other, _ := newTestKey(t)
	sealed := k.Seal("/ecp/a", []byte("s3cret"))
	if strings.Contains(sealed, "s3cret") || sealed == k.Seal("/ecp/a", []byte("s3cret")) {
		t.Fatalf("sealed value %q shows the plaintext or repeats", sealed)
	}
	tamper := []byte(sealed)
	// One ciphertext character changed (not the last: its low bits are
	// base64 padding).
	if i := len(tamper) - 10; tamper[i] == 'A' {
		tamper[i] = 'B'
	} else {
		tamper[i] = 'A'
	}
	for _, tc := range []struct {
		name, key, value string
		key2             *Key
		want             string
		wantSealed       bool
		wantErr          error
		wantErrText      string
	}{
		{name: "sealed", key: "/ecp/a", value: sealed, want: "s3cret", wantSealed: true},
		{name: "written in clear by an older ecp", key: "/ecp/a", value: `{"password":"p"}`, want: `{"password":"p"}`},
		{name: "another key", key: "/ecp/a", value: sealed, key2: other, wantSealed: true, wantErr: ErrWrongKey},
		{name: "moved to another etcd key", key: "/ecp/b", value: sealed, wantSealed: true, wantErrText: "does not authenticate"},
		{name: "altered", key: "/ecp/a", value: string(tamper), wantSealed: true, wantErrText: "malformed value|does not authenticate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kk := k
			if tc.key2 != nil {
				kk = tc.key2
			}
			got, isSealed, err := kk.Open(tc.key, []byte(tc.value))
			if isSealed != tc.wantSealed {
				t.Errorf("sealed = %v, want %v", isSealed, tc.wantSealed)
			}
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), kk.ID()) {
					t.Fatalf("err = %v, want %v naming key id %s", err, tc.wantErr, kk.ID())
				}
			case tc.wantErrText != "":
				if err == nil || !containsAny(err.Error(), strings.Split(tc.wantErrText, "|")) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErrText)
				}
			case err != nil || !bytes.Equal(got, []byte(tc.want)):
				t.Fatalf("Open = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestVerifyRefusesAnotherKey(t *testing.T) {
	cli := etcdtest.Client(t)
	k, _ := newTestKey(t)
	other, _ := newTestKey(t)
	if err := k.Verify(t.Context(), cli); err != nil {
		t.Fatalf("first key: %v", err)
	}
	if err := k.Verify(t.Context(), cli); err != nil {
		t.Fatalf("same key again: %v", err)
	}
	err := other.Verify(t.Context(), cli)
	if err == nil || !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "--secrets.key-file") {
		t.Fatalf("another key: %v, want a refusal naming --secrets.key-file", err)
	}
}
