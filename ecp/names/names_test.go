package names

import (
	"strings"
	"testing"
)

// issue #11 extra: names accepted bidirectional-override and control
// characters, so one stored name showed as another on screen.
func TestSecExtraNamesRefuseHiddenCharacters(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"factory", true},
		{"Münchner Werk 北京 🚀", true},
		{"a b", true},
		{strings.Repeat("é", 100), true},
		{strings.Repeat("é", 101), false},
		{"", false},
		{" lead", false},
		{"trail ", false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"c1\u0085", false},            // NEL, Cc
		{"prod\u202egnp.exe", false},   // right-to-left override
		{"\u202aembedded", false},      // left-to-right embedding
		{"iso\u2066late\u2069", false}, // left-to-right isolate
		{"fsi\u2068x", false},          // first strong isolate
		{"zero\u200bwidth", false},     // zero-width space
		{"zw\u200dj", false},           // zero-width joiner
		{"\ufeffbom", false},           // byte order mark
		{"soft\u00adhyphen", false},    // soft hyphen, Cf
		{"line\u2028sep", false},       // line separator
		{"para\u2029sep", false},       // paragraph separator
		{"bad\xffutf8", false},
	} {
		msg := Validate(tc.name, 100)
		if (msg == "") != tc.ok {
			t.Errorf("Validate(%q) = %q, want ok=%v", tc.name, msg, tc.ok)
		}
		if !tc.ok && !strings.Contains(msg, "1 to 100 characters") {
			t.Errorf("Validate(%q) = %q, does not say what is accepted", tc.name, msg)
		}
	}
}
