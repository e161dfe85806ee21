package console_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/clusters"
)

// TestJourneyGuidePlaceholdersMatchTheCommand: every EMQX field of the
// guide shows, as its placeholder, the very word the register command
// holds until the field is filled in (the fields showed "admin" and
// "http://127.0.0.1:18083" while the command said <EMQX_USERNAME>…); and
// step 2 says what to do about the agent's port and log directory and
// links the systemd unit ecp serves; the log directory field says which
// directory EMQX uses where.
func TestJourneyGuidePlaceholdersMatchTheCommand(t *testing.T) {
	e := start(t, nil)
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.post("/projects/"+e.project+"/clusters", url.Values{"name": {"edge-1"}})
	mustStatus(t, p, http.StatusOK, "create")

	cmd := regexp.MustCompile(`(?s)<pre id="register-cmd"[^>]*><code>(.*?)</code>`).FindStringSubmatch(p.body)
	if cmd == nil {
		t.Fatalf("no register command:\n%s", p.body)
	}
	command := html.UnescapeString(cmd[1])
	for _, f := range []struct{ id, word string }{
		{"emqx-username", clusters.PlaceholderUsername},
		{"emqx-dashboard-url", clusters.PlaceholderDashboardURL},
		{"emqx-api-url", clusters.PlaceholderAPIURL},
	} {
		in := regexp.MustCompile(`<input id="` + f.id + `"[^>]*>`).FindString(p.body)
		attr := func(name string) string {
			m := regexp.MustCompile(`\b` + name + `="([^"]*)"`).FindStringSubmatch(in)
			if m == nil {
				return ""
			}
			return html.UnescapeString(m[1])
		}
		if attr("placeholder") != f.word || attr("data-default") != f.word {
			t.Errorf("field %s: placeholder %q, data-default %q; want both %q", f.id, attr("placeholder"), attr("data-default"), f.word)
		}
		if !strings.Contains(command, " '"+f.word+"'") {
			t.Errorf("the command lacks %q: %s", f.word, command)
		}
	}
	for _, want := range []string{
		"where that port is taken it stops and says so: add <code>--web.listen-address 127.0.0.1:9734</code>",
		"or to the terminal with a warning where that directory does not exist",
		`the systemd unit <a href="` + e.url + `/downloads/agent-exporter.service">agent-exporter.service</a>`,
		"<code>/var/log/emqx</code> for deb and rpm. Register refuses one that does not exist on the host, before it uses the token.",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("step 2 lacks %q", want)
		}
	}
}
