package clusters

import (
	"os/exec"
	"strings"
	"testing"
)

func TestValidateServiceURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"", true},
		{"http://emqx.example:18083", true},
		{"https://10.0.0.1:18084/", true},
		{"emqx.example:18083", false},
		{"ftp://emqx.example", false},
		{"http://", false},
		{"http://admin:public@emqx.example:18083", false},
		{"http://e/" + strings.Repeat("x", 2048), false},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			if got := ValidateServiceURL(tc.url) == ""; got != tc.ok {
				t.Fatalf("ValidateServiceURL(%q) ok = %v, want %v", tc.url, got, tc.ok)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"prod-eu":                true,
		"集群 1":                   true,
		strings.Repeat("é", 200): true,
		"":                       false,
		" padded":                false,
		"line\nbreak":            false,
		strings.Repeat("x", 201): false,
	} {
		if got := ValidateName(name) == ""; got != ok {
			t.Errorf("ValidateName(%q) ok = %v, want %v", name, got, ok)
		}
	}
}

// TestShellQuoteSurvivesTheShell: whatever a value holds, the shell hands
// it to the command unchanged (the register command is pasted into one).
func TestShellQuoteSurvivesTheShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("this test needs a POSIX sh: %v", err)
	}
	for _, v := range []string{"plain", "https://ecp.example:8443", "it's", "$(rm -rf /)", "a b\tc", "<EMQX_USERNAME>", "`x`", `\"`} {
		out, err := exec.CommandContext(t.Context(), sh, "-c", "printf %s "+shellQuote(v)).Output()
		if err != nil {
			t.Fatalf("sh with %q: %v", v, err)
		}
		if string(out) != v {
			t.Errorf("shellQuote(%q) came out of sh as %q", v, out)
		}
	}
}
