package etcdserver

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCertsAreKeptAndOnlyMissingOnesMade: the member's certificates are
// made once (keys 0600), kept on later starts, and only what is missing,
// expiring or no longer signed by the CA is made again.
func TestCertsAreKeptAndOnlyMissingOnesMade(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	files := []string{caCertFile, caKeyFile, serverCertFile, serverKeyFile, clientCertFile, clientKeyFile}
	read := func() map[string]string {
		t.Helper()
		m := map[string]string{}
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("%s has mode %v, want 0600", f, st.Mode().Perm())
			}
			m[f] = string(b)
		}
		return m
	}
	ensure := func(at time.Time) map[string]string {
		t.Helper()
		if _, err := ensureCerts(dir, at); err != nil {
			t.Fatal(err)
		}
		return read()
	}
	changed := func(a, b map[string]string) (out []string) {
		for _, f := range files {
			if a[f] != b[f] {
				out = append(out, f)
			}
		}
		return out
	}

	first := ensure(now)
	if c := changed(first, ensure(now.Add(24*time.Hour))); len(c) != 0 {
		t.Fatalf("a second start replaced %v", c)
	}
	if err := os.Remove(filepath.Join(dir, clientKeyFile)); err != nil {
		t.Fatal(err)
	}
	second := ensure(now)
	if c := changed(first, second); len(c) != 2 || c[0] != clientCertFile || c[1] != clientKeyFile {
		t.Fatalf("after the client key was lost, changed %v; want the client pair only", c)
	}
	if err := os.Remove(filepath.Join(dir, caKeyFile)); err != nil {
		t.Fatal(err)
	}
	if c := changed(second, ensure(now)); len(c) != len(files) {
		t.Fatalf("after the CA key was lost, changed %v; want everything (the leaves need the new CA)", c)
	}
	third := read()
	if c := changed(third, ensure(now.Add(certValidity-certRenewBefore+time.Hour))); len(c) != len(files) {
		t.Fatalf("near expiry changed %v, want everything renewed", c)
	}
}
