// Package names is the one rule for every name a tenant gives and other
// users see (organizations, projects, clusters, API tokens): it refuses
// what would make a name lie about itself on a screen or in a log line.
package names

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validate returns what a name must be, or "" when name is fine: valid
// UTF-8 of 1 to maxRunes characters, no leading or trailing space, and none
// of the characters that are invisible or rearrange text around them:
// control characters (Unicode Cc), format characters (Cf: the
// bidirectional overrides and isolates U+202A–U+202E and U+2066–U+2069,
// zero-width spaces and joiners, the BOM) and line or paragraph separators.
// A name like "prod\u202egnp.exe" would otherwise show another name than
// the one stored, to the users of another project after a transfer, in the
// audit log and in alerts.
func Validate(name string, maxRunes int) string {
	n := utf8.RuneCountInString(name)
	if n < 1 || n > maxRunes || !utf8.ValidString(name) || strings.TrimSpace(name) != name ||
		strings.ContainsFunc(name, hidden) {
		return fmt.Sprintf("name is required: 1 to %d characters, no control or invisible formatting characters (such as bidirectional overrides or zero-width spaces), no leading or trailing spaces", maxRunes)
	}
	return ""
}

func hidden(r rune) bool {
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp)
}
