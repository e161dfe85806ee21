package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBadUsageExitsTwo(t *testing.T) {
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--version", "4.4.6"},
		{"--log.format", "xml"},
		{"--nodes", "0", "--rules", "-1"},
		{"stray-argument"},
		{"-nodes", "3"}, // one dash: kingpin, as in ecp, takes two
	} {
		t.Run(args[0], func(t *testing.T) {
			if code := runMain(args); code != 2 {
				t.Fatalf("runMain(%q) = %d, want 2", args, code)
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	if code := runMain([]string{"-h"}); code != 0 {
		t.Fatalf("runMain(-h) = %d, want 0", code)
	}
}

// Sims on one machine are distinct clusters to ecp unless told otherwise;
// a sim restarted on its port is the same cluster again.
func TestHostPrefixPerPort(t *testing.T) {
	a, b := hostPrefixFor("127.0.0.1:18083"), hostPrefixFor("127.0.0.1:18084")
	if a == b || a != "10.70.163." || hostPrefixFor("127.0.0.1:18083") != a {
		t.Fatalf("prefixes %q and %q", a, b)
	}
	if got := hostPrefixFor("no-port"); got != "10.0.0." {
		t.Fatalf("prefix without a port = %q", got)
	}
}
