package console

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// FuzzRestamp: a state reason's message carries text from EMQX and the
// agent. Property: restamp escapes all of it, whatever it holds, and only
// its own <time> elements are markup.
func FuzzRestamp(f *testing.F) {
	for _, s := range []string{"run before 2026-12-05T21:11:07Z", `<script>alert(1)</script> 2026-01-02T03:04:05.5+02:00`, `"><img src=x> 2026-13-45T99:99:99Z`, ""} {
		f.Add(s)
	}
	c := &Console{opts: Options{Now: func() time.Time { return time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC) }}}
	f.Fuzz(func(t *testing.T, msg string) {
		out := string(c.restamp(msg))
		rest := apiTimeShown.ReplaceAllString(out, "")
		if strings.ContainsAny(rest, `<>"`) {
			t.Fatalf("restamp(%q) = %q: markup outside its own <time> elements", msg, out)
		}
	})
}

func TestRestampShowsAPITimesLikeWhen(t *testing.T) {
	c := &Console{opts: Options{Now: func() time.Time { return time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC) }}}
	got := string(c.restamp("run the register command before 2026-12-05T21:00:00Z & <soon>"))
	want := `run the register command before <time datetime="2026-12-05T21:00:00Z">2026-12-05 21:00:00 UTC</time> <span class="ago">(in 24h)</span> &amp; &lt;soon&gt;`
	if got != want {
		t.Fatalf("restamp:\n got %s\nwant %s", got, want)
	}
}

var apiTimeShown = regexp.MustCompile(`<time datetime="[0-9TZ:-]+">[0-9 :-]+UTC</time> <span class="ago">\((?:in )?[0-9]+[smhd](?: ago)?\)</span>`)
