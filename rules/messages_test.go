package rules

import (
	"regexp"
	"strings"
	"testing"
)

// TestEntryMessagesAndPattern: every catalogue entry says one message per
// alert kind, with its labels as placeholders and no template left, and
// its alert pattern matches exactly its own alert names.
func TestEntryMessagesAndPattern(t *testing.T) {
	for _, e := range Catalogue {
		msgs := e.Messages()
		if len(msgs) != len(e.Alerts) {
			t.Errorf("%s: %d messages for %d alerts", e.ID, len(msgs), len(e.Alerts))
		}
		for _, m := range msgs {
			if strings.Contains(m, "{{") || !strings.Contains(m, "<cluster>") {
				t.Errorf("%s: message %q", e.ID, m)
			}
		}
		re := regexp.MustCompile("^(?:" + e.AlertPattern() + ")$")
		for _, other := range Catalogue {
			for _, a := range other.Alerts {
				if re.MatchString(a) != (other.ID == e.ID) {
					t.Errorf("%s's pattern %q on %s (of %s): %v", e.ID, e.AlertPattern(), a, other.ID, re.MatchString(a))
				}
			}
		}
	}
}
