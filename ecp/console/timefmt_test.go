package console_test

import (
	"net/http"
	"regexp"
	"testing"
)

var (
	timeElement = regexp.MustCompile(`<time datetime="([^"]*)">([^<]*)</time>`)
	rfc3339     = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	shown       = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$`)
	tag         = regexp.MustCompile(`<[^>]*>`)
	anyDate     = regexp.MustCompile(`\d{4}-\d\d-\d\d`)
)

// TestJourneyOneTimeFormat: every page shows times one way, through one
// template function: a <time> element a machine reads, in UTC to the
// second; no page mixes in a bare date or a relative time alone.
func TestJourneyOneTimeFormat(t *testing.T) {
	e := start(t, nil)
	id := e.createCluster(e.project, "edge-1")
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	cluster := "/projects/" + e.project + "/clusters/" + id
	e.register(registrationToken(t, b, cluster)).report()
	guide := b.post(cluster+"/registration", nil)
	mustStatus(t, guide, http.StatusOK, "re-registration guide")
	pages := map[string]string{"guide": guide.body}
	for _, path := range []string{cluster, "/projects/" + e.project + "/clusters", "/projects/" + e.project + "/monitoring", "/system"} {
		p := b.get(path)
		mustStatus(t, p, http.StatusOK, path)
		pages[path] = p.body
	}
	for name, body := range pages {
		times := timeElement.FindAllStringSubmatch(body, -1)
		if len(times) == 0 {
			t.Errorf("%s shows no time", name)
		}
		for _, m := range times {
			if !rfc3339.MatchString(m[1]) || !shown.MatchString(m[2]) {
				t.Errorf("%s: time shown as %q (datetime %q), want 2006-01-02 15:04:05 UTC", name, m[2], m[1])
			}
		}
		if rest := tag.ReplaceAllString(timeElement.ReplaceAllString(body, ""), ""); anyDate.MatchString(rest) {
			i := anyDate.FindStringIndex(rest)
			t.Errorf("%s shows a date outside the one format: %q", name, rest[max(0, i[0]-80):min(len(rest), i[1]+40)])
		}
	}
}
