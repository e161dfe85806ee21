package console

import (
	"fmt"
	"html/template"
	"regexp"
	"strings"
	"time"
)

// stampLayout is the console's one way of writing a point in time: UTC to
// the second, so times on one page and across pages read alike and compare
// with logs, Prometheus and Alertmanager, which all speak UTC.
const stampLayout = "2006-01-02 15:04:05 UTC"

// stamp writes t in the console's format; for attributes (title) where no
// markup fits. Pages show times with when.
func stamp(t time.Time) string { return t.UTC().Format(stampLayout) }

// when is the template function that shows a time on every page: the
// stamp in a <time> element a machine can read, followed by how long ago
// (or how soon) it is, which is what a person looks for first. t is a
// time.Time or a *time.Time; nil or the zero time shows as "—".
func (c *Console) when(t any) (template.HTML, error) {
	var at time.Time
	switch v := t.(type) {
	case time.Time:
		at = v
	case *time.Time:
		if v != nil {
			at = *v
		}
	default:
		return "", fmt.Errorf("when: want a time, got %T", t)
	}
	if at.IsZero() {
		return "—", nil
	}
	// Only digits, letters and the fixed layouts' punctuation: safe as HTML.
	rel := relative(c.opts.Now(), at)
	return template.HTML(`<time datetime="` + at.UTC().Format(time.RFC3339) + `">` + stamp(at) + `</time> <span class="ago">(` + rel + `)</span>`), nil
}

// relative says how far t is from now for people: "12s ago", "in 5m".
func relative(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		return "in " + ago(-d)
	}
	return ago(d) + " ago"
}

// apiTime is a time in an API message: the API writes RFC 3339.
var apiTime = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)`)

// restamp shows a message of the API (a state reason's "run the register
// command before 2026-…Z") with its RFC 3339 times shown as when shows
// them, so a page that shows the message still speaks one format. The rest
// of the message is escaped.
func (c *Console) restamp(msg string) template.HTML {
	var b strings.Builder
	last := 0
	for _, m := range apiTime.FindAllStringIndex(msg, -1) {
		t, err := time.Parse(time.RFC3339Nano, msg[m[0]:m[1]])
		if err != nil {
			continue
		}
		shown, _ := c.when(t)
		b.WriteString(template.HTMLEscapeString(msg[last:m[0]]))
		b.WriteString(string(shown))
		last = m[1]
	}
	b.WriteString(template.HTMLEscapeString(msg[last:]))
	return template.HTML(b.String())
}
