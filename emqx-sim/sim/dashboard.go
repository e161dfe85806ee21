package sim

import (
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// DashboardEntry records one entry into the dashboard carrying login_meta
// (the login-free jump ECP's "open dashboard" uses, emqx-api.md §9).
type DashboardEntry struct {
	// Source is "query" (seen by the server in /?login_meta=) or "hash"
	// (read by the page script from /#/...?login_meta= and posted back).
	Source     string    `json:"source"`
	Username   string    `json:"username"`
	Role       string    `json:"role"`
	TokenValid bool      `json:"tokenValid"`
	At         time.Time `json:"at"`
}

type loginMeta struct {
	Username string         `json:"username"`
	Token    string         `json:"token"`
	Role     string         `json:"role"`
	License  map[string]any `json:"license"`
	Version  string         `json:"version"`
	Backend  string         `json:"backend,omitempty"`
}

func decodeLoginMeta(v string) (loginMeta, bool) {
	var m loginMeta
	v = strings.TrimSpace(v)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(v); err == nil && json.Unmarshal(raw, &m) == nil {
			return m, true
		}
	}
	return m, false
}

// tokenValid checks a token without sliding its expiry.
func (s *Sim) tokenValid(tok string, now time.Time) bool {
	t, ok := s.tokens[tok]
	return ok && now.Before(t.expires)
}

func (s *Sim) record(src string, m loginMeta) DashboardEntry {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e := DashboardEntry{Source: src, Username: m.Username, Role: m.Role, TokenValid: s.tokenValid(m.Token, now), At: now}
	s.entries = append(s.entries, e)
	return e
}

// DashboardEntries lists every login_meta entry seen so far, oldest first.
func (s *Sim) DashboardEntries() []DashboardEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DashboardEntry{}, s.entries...)
}

func (s *Sim) postDashboardEntry(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	var b struct {
		Source    string `json:"source"`
		LoginMeta string `json:"login_meta"`
	}
	if !readJSON(w, r, &b) {
		return
	}
	m, ok := decodeLoginMeta(b.LoginMeta)
	if !ok || (b.Source != "hash" && b.Source != "query") {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "want {\"source\": \"hash\"|\"query\", \"login_meta\": \"<base64 JSON>\"}")
		return
	}
	writeJSON(w, http.StatusOK, s.record(b.Source, m))
}

var dashboardPage = template.Must(template.New("dashboard").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>EMQX Dashboard (emqx-sim)</title></head>
<body>
<h1>EMQX Dashboard</h1>
<p>emqx-sim {{.Version}}, cluster {{.Cluster}}</p>
<div id="login-meta" data-source="{{.Source}}" data-username="{{.Username}}" data-role="{{.Role}}" data-token-valid="{{.TokenValid}}">
{{- if eq .Source "query"}}Entered with login_meta (query) as {{.Username}} ({{.Role}}), token {{if .TokenValid}}valid: overview{{else}}invalid: login{{end}}.
{{- else}}No login_meta in the query: login page.{{end -}}
</div>
<div id="hash-login-meta"></div>
<script>
// The EMQX EE front-end also reads login_meta from the query inside the
// hash (#/dashboard/overview?login_meta=...), which never reaches a server:
// read it here, post it to the simulator, then strip it as the real UI does.
(function () {
  // The server already saw a query login_meta; strip it like the real UI.
  var q = new URLSearchParams(window.location.search);
  if (q.has("login_meta")) {
    q.delete("login_meta");
    var rest = q.toString();
    history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : "") + window.location.hash);
  }
  var h = window.location.hash, i = h.indexOf("?");
  if (i < 0) { return; }
  var v = new URLSearchParams(h.slice(i + 1)).get("login_meta");
  if (!v) { return; }
  var out = document.getElementById("hash-login-meta");
  fetch("sim/dashboard/entries", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({source: "hash", login_meta: v})})
    .then(function (r) { return r.json(); })
    .then(function (e) {
      out.setAttribute("data-source", "hash");
      out.setAttribute("data-username", e.username || "");
      out.setAttribute("data-token-valid", String(!!e.tokenValid));
      out.textContent = "Entered with login_meta (hash) as " + e.username + ", token " + (e.tokenValid ? "valid: overview" : "invalid: login") + ".";
    });
  history.replaceState(null, "", window.location.pathname + h.slice(0, i));
})();
</script>
</body></html>
`))

// dashboard serves GET /: a minimal page that shows whether it was entered
// with ?login_meta= and which user it carried; the server-side view of the
// query form is also recorded in DashboardEntries.
func (s *Sim) dashboard(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	data := struct {
		Version, Cluster, Source, Username, Role string
		TokenValid                               bool
	}{Version: s.rel.String(), Cluster: s.opts.ClusterName, Source: "none"}
	if v := r.URL.Query().Get("login_meta"); v != "" {
		if m, ok := decodeLoginMeta(v); ok {
			e := s.record("query", m)
			data.Source, data.Username, data.Role, data.TokenValid = "query", e.Username, e.Role, e.TokenValid
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := dashboardPage.Execute(w, data); err != nil {
		s.logger.Error("render dashboard", "err", err)
	}
}
