package console_test

import (
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/ecpio/ecp/rules"
)

// formValues reads the first POST form of body whose action is action as a
// browser would submit it unchanged: text inputs and hidden fields, checked
// boxes, the selected option of each select, and textareas.
func formValues(t *testing.T, body, action string) url.Values {
	t.Helper()
	start := strings.Index(body, `action="`+action+`"`)
	if start < 0 {
		t.Fatalf("no form posting to %s in:\n%s", action, body)
	}
	form := body[start:]
	form, _, _ = strings.Cut(form, "</form>")
	out := url.Values{}
	attr := func(tag, name string) (string, bool) {
		m := regexp.MustCompile(`\s` + name + `="([^"]*)"`).FindStringSubmatch(tag)
		if m == nil {
			return "", false
		}
		return html.UnescapeString(m[1]), true
	}
	for _, tag := range regexp.MustCompile(`<input[^>]*>`).FindAllString(form, -1) {
		name, ok := attr(tag, "name")
		if !ok {
			continue
		}
		typ, _ := attr(tag, "type")
		if typ == "checkbox" || typ == "radio" {
			if strings.Contains(tag, " checked") {
				out.Add(name, cmpOrOn(attr(tag, "value")))
			}
			continue
		}
		v, _ := attr(tag, "value")
		out.Add(name, v)
	}
	for _, m := range regexp.MustCompile(`(?s)<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>`).FindAllStringSubmatch(form, -1) {
		opt := regexp.MustCompile(`<option(?: value="([^"]*)")?( selected)?>([^<]*)</option>`)
		for _, o := range opt.FindAllStringSubmatch(m[2], -1) {
			if o[2] != "" {
				v := o[3]
				if strings.Contains(o[0], `value="`) {
					v = o[1]
				}
				out.Add(m[1], html.UnescapeString(v))
			}
		}
	}
	for _, m := range regexp.MustCompile(`(?s)<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>`).FindAllStringSubmatch(form, -1) {
		out.Add(m[1], html.UnescapeString(m[2]))
	}
	return out
}

func cmpOrOn(v string, ok bool) string {
	if !ok {
		return "on"
	}
	return v
}

type savedSettings struct {
	Enabled        bool
	StormThreshold int
	Rules          map[string]struct {
		Enabled       bool
		Threshold     *float64
		Severity      string
		TriggerCount  int
		RecoveryCount int
	}
}

func (e *env) settings(project string) savedSettings {
	e.t.Helper()
	var st savedSettings
	if err := json.Unmarshal(e.api(200, "GET", "/api/v1/projects/"+project+"/alert-settings", e.admin, nil), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// TestAlertSettingsCatalogueTable: the settings page shows every rule of
// the catalogue as a row with its on/off, a threshold with its unit only
// where the rule has one, its counts, severity and message; an admin's
// changes in the table are saved through the settings service, a viewer
// sees the table but cannot change it, and a stranger gets 404.
func TestAlertSettingsCatalogueTable(t *testing.T) {
	e := start(t, nil)
	e.user("victor", "project-viewer", e.project)
	e.user("stranger", "project-admin", e.other)
	path := "/projects/" + e.project + "/alert-settings"

	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	p := b.get(path)
	mustStatus(t, p, http.StatusOK, "settings")
	body := html.UnescapeString(p.body)
	for _, en := range rules.Catalogue {
		if !strings.Contains(body, `<tr data-rule="`+en.ID+`">`) {
			t.Errorf("no row for rule %s", en.ID)
		}
		has := strings.Contains(body, `name="rules.`+en.ID+`.threshold"`)
		if has != (en.Threshold != nil) {
			t.Errorf("rule %s: threshold field shown %v, want %v", en.ID, has, en.Threshold != nil)
		}
	}
	for _, want := range []string{
		`value="80" aria-label="nodeMemory threshold in percent"`, "percent, 1 to 100", "days, 1 to 365",
		"EMQX node <node> is short of memory in cluster <cluster>.",
		`name="rules.ruleAbnormal.enabled" aria-label="ruleAbnormal on" checked`,
		"off: “EMQX alert push”", `id="stormThreshold" name="stormThreshold" inputmode="numeric" value="50"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("settings page lacks %q", want)
		}
	}
	if strings.Contains(body, `name="rules.nodeMemory.enabled" aria-label="nodeMemory on" checked`) {
		t.Error("nodeMemory is on by default")
	}

	// Changed in the table, saved as the browser sends the form.
	form := formValues(t, p.body, path)
	form.Set("rules.nodeMemory.enabled", "on")
	form.Set("rules.nodeMemory.threshold", "85.5")
	form.Set("rules.nodeMemory.triggerCount", "2")
	form.Set("rules.nodeMemory.severity", "critical")
	form.Set("stormThreshold", "70")
	mustStatus(t, b.post(path, form), http.StatusSeeOther, "save")
	st := e.settings(e.project)
	nm := st.Rules["nodeMemory"]
	if !nm.Enabled || nm.Threshold == nil || *nm.Threshold != 85.5 || nm.TriggerCount != 2 || nm.Severity != "critical" || nm.RecoveryCount != 0 || st.StormThreshold != 70 {
		t.Fatalf("saved nodeMemory %+v, storm %d", nm, st.StormThreshold)
	}
	p = b.get(path)
	body = html.UnescapeString(p.body)
	for _, want := range []string{`value="85.5" aria-label="nodeMemory threshold`, `value="2" placeholder="3" aria-label="nodeMemory trigger count"`, `value="70"`} {
		if !strings.Contains(body, want) {
			t.Errorf("saved page lacks %q", want)
		}
	}

	// Refused cells: the error beside the cell, the input kept, nothing saved.
	form = formValues(t, p.body, path)
	form.Set("rules.nodeMemory.threshold", "150")
	form.Set("rules.licenseExpiry.threshold", "soon")
	form.Set("rules.nodeDown.recoveryCount", "0x")
	form.Set("stormThreshold", "2")
	p = b.post(path, form)
	mustStatus(t, p, http.StatusBadRequest, "refused table")
	body = html.UnescapeString(p.body)
	row := func(id string) string {
		i := strings.Index(body, `<tr data-rule="`+id+`">`)
		if i < 0 {
			t.Fatalf("no row %s", id)
		}
		r, _, _ := strings.Cut(body[i:], "</tr>")
		return r
	}
	for id, want := range map[string][]string{
		"nodeMemory":    {`value="150"`, "Threshold must be from 1 to 100 (percent), got 150"},
		"licenseExpiry": {`value="soon"`, `Threshold must be a number, got "soon"`},
		"nodeDown":      {`value="0x"`, `Must be a whole number, or empty for the project's, got "0x"`},
	} {
		for _, w := range want {
			if !strings.Contains(row(id), w) {
				t.Errorf("row %s lacks %q:\n%s", id, w, row(id))
			}
		}
	}
	if !strings.Contains(body, "Storm threshold must be a whole number from 5 to 10000") || !strings.Contains(body, "Not saved") {
		t.Errorf("refused page lacks the storm threshold's error or Not saved:\n%s", body)
	}
	if st := e.settings(e.project); *st.Rules["nodeMemory"].Threshold != 85.5 || st.StormThreshold != 70 {
		t.Errorf("a refused form changed the settings: %+v", st)
	}

	// A viewer sees the table, disabled, with no save button; a stranger
	// does not see the page.
	v := e.browser()
	mustStatus(t, v.login("victor", "victor-password"), http.StatusSeeOther, "viewer login")
	p = v.get(path)
	mustStatus(t, p, http.StatusOK, "viewer settings")
	if !strings.Contains(p.body, `<tr data-rule="nodeMemory">`) || !strings.Contains(p.body, "<fieldset disabled>") || strings.Contains(p.body, "Save settings") {
		t.Errorf("viewer's settings page: table shown and disabled, no save button wanted:\n%s", p.body)
	}
	s := e.browser()
	mustStatus(t, s.login("stranger", "stranger-password"), http.StatusSeeOther, "stranger login")
	mustStatus(t, s.get(path), http.StatusNotFound, "stranger settings")
}

// TestAlertSettingsSaveKeepsCatalogue: saving the settings page unchanged
// keeps the rules and the storm threshold saved through the API. The page
// used to send settings without them, which the API reads as settings
// from before the catalogue: the legacy rules came back on, rules switched
// on through the API went off, and the storm threshold fell back to 50.
func TestAlertSettingsSaveKeepsCatalogue(t *testing.T) {
	e := start(t, nil)
	e.api(200, "PUT", "/api/v1/projects/"+e.project+"/alert-settings", e.admin, map[string]any{
		"enabled": true, "triggerCount": 3, "recoveryCount": 2, "severity": "warning", "stormThreshold": 70,
		"rules": map[string]any{"nodeMemory": map[string]any{"enabled": true, "threshold": 90}, "clusterStatus": map[string]any{"enabled": false}},
	})
	b := e.browser()
	mustStatus(t, b.login("admin", adminPassword), http.StatusSeeOther, "login")
	path := "/projects/" + e.project + "/alert-settings"
	p := b.get(path)
	mustStatus(t, b.post(path, formValues(t, p.body, path)), http.StatusSeeOther, "save unchanged")
	st := e.settings(e.project)
	if nm := st.Rules["nodeMemory"]; !nm.Enabled || nm.Threshold == nil || *nm.Threshold != 90 {
		t.Errorf("nodeMemory after saving the page unchanged: %+v", nm)
	}
	if st.Rules["clusterStatus"].Enabled || st.Rules["nodeDown"].Enabled {
		t.Errorf("legacy rules came back on: clusterStatus %+v, nodeDown %+v", st.Rules["clusterStatus"], st.Rules["nodeDown"])
	}
	if st.StormThreshold != 70 {
		t.Errorf("storm threshold after saving the page unchanged: %d, want 70", st.StormThreshold)
	}
}
