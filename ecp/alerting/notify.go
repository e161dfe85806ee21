package alerting

// Notification channels beyond Alertmanager 0.25's own: custom webhook
// headers and a JSON body template.
//
// Alertmanager 0.25 (Debian 12's, the oldest ecp supports) can neither add
// headers to a webhook request (http_config has no http_headers before
// prometheus/common 0.50, Alertmanager 0.27) nor shape its body (the
// templated `payload` came with 0.34): it always posts its version 4
// payload. So a webhook with headers or a template is relayed by ecp:
// Alertmanager posts the notification to ecp (RelayURL, with ecp's bearer
// token), and ecp renders the template and posts it, with the headers, to
// the destination, which the notification policy checks again at the
// moment ecp dials it. A webhook without either is delivered by
// Alertmanager itself, as before.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/rules"
)

// Limits on a webhook's headers and template.
const (
	MaxHeaders        = 10
	MaxHeaderName     = 100
	MaxHeaderValue    = 2048
	MaxTemplate       = 8 << 10
	maxRenderedSample = 64 << 10
)

// Header is one custom header of a webhook. Its value is a secret: stored
// sealed, never shown in replies (Settings.Redacted), and a header sent
// back without a value keeps the one stored for the same webhook URL.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// refusedHeaders are header names a tenant may not set: the hop-by-hop
// headers (RFC 9110 7.6.1) and those the HTTP client or ecp writes itself
// from the request (Host, the body's length, type and encoding, Expect).
// Authorization is the tenant's own: ecp sends none to a tenant's webhook.
var refusedHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
	"Host", "Content-Length", "Content-Type", "Content-Encoding", "Expect",
}

// RefusedHeaderNames lists the header names a webhook may not set.
func RefusedHeaderNames() []string { return slices.Clone(refusedHeaders) }

// Relayed reports whether Alertmanager hands this webhook's notifications
// to ecp, which adds its headers and renders its template.
func (w Webhook) Relayed() bool { return len(w.Headers) > 0 || w.Template != "" }

// WebhookKey names a webhook in relay paths and test labels: the first 16
// hex digits of its URL's SHA-256, so the path shows nothing of the URL.
// URLs are unique within a project (Validate).
func WebhookKey(url string) string { return hashKey(url) }

// EmailKey names an e-mail recipient in test labels.
func EmailKey(addr string) string { return hashKey(strings.ToLower(addr)) }

func hashKey(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}

// RelayURL is where Alertmanager posts a relayed webhook's notifications:
// below ecp's own webhook URL, so whatever address Alertmanager reaches
// ecp at serves both.
func RelayURL(webhookURL, project, key string) string {
	return strings.TrimRight(webhookURL, "/") + "/" + project + "/" + key
}

// validateHeaders checks one webhook's headers; field is "webhooks[i]".
func validateHeaders(field string, hs []Header, errs *httpapi.FieldErrors) {
	if len(hs) > MaxHeaders {
		errs.Add(field+".headers", "%s.headers holds at most %d headers, got %d", field, MaxHeaders, len(hs))
		return
	}
	seen := map[string]bool{}
	for j, h := range hs {
		f := fmt.Sprintf("%s.headers[%d]", field, j)
		canon := textproto.CanonicalMIMEHeaderKey(h.Name)
		switch {
		case h.Name == "" || len(h.Name) > MaxHeaderName || !validToken(h.Name):
			errs.Add(f+".name", "%s.name must be an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~, at most %d bytes), got %.120q", f, MaxHeaderName, h.Name)
		case slices.Contains(refusedHeaders, canon):
			errs.Add(f+".name", "%s.name %s is set by ecp or the HTTP connection and cannot be chosen; refused: %s", f, canon, strings.Join(refusedHeaders, ", "))
		case seen[canon]:
			errs.Add(f+".name", "%s.name repeats %s", f, canon)
		}
		seen[canon] = true
		switch {
		case h.Value == "":
			errs.Add(f+".value", "%s.value is required: header values are never shown back, so a new header, or one of a webhook whose url changed, needs its value", f)
		case len(h.Value) > MaxHeaderValue || !validHeaderValue(h.Value):
			errs.Add(f+".value", "%s.value must be at most %d bytes of visible characters, spaces and tabs (no line breaks)", f, MaxHeaderValue)
		}
	}
}

// validToken reports whether s is an RFC 9110 token, what a header name
// must be.
func validToken(s string) bool {
	for _, c := range []byte(s) {
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control character but tab:
// a line break would end the header and start another.
func validHeaderValue(s string) bool {
	for _, c := range []byte(s) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// Template placeholders: {{name}} inside a JSON string of a webhook's
// template is replaced by the value, escaped for a JSON string.
const (
	PlaceholderAlertName    = "alertName"    // the rule's name, label alertname
	PlaceholderAlertContent = "alertContent" // the summary annotation
	PlaceholderAlertTime    = "alertTime"    // when the alert started, RFC 3339
	PlaceholderAlertLevel   = "alertLevel"   // the severity label
	PlaceholderAlertStatus  = "alertStatus"  // firing or resolved
	PlaceholderAlertLink    = "alertLink"    // the link annotation, into ecp
	PlaceholderAlertAddress = "alertAddress" // cluster name and id, and the node when the alert has one
	PlaceholderSystemTime   = "systemTime"   // when ecp sent this, RFC 3339
)

// Placeholders lists every placeholder a template may use.
var Placeholders = []string{
	PlaceholderAlertName, PlaceholderAlertContent, PlaceholderAlertTime, PlaceholderAlertLevel,
	PlaceholderAlertStatus, PlaceholderAlertLink, PlaceholderAlertAddress, PlaceholderSystemTime,
}

// TemplateAlert is one alert of a notification as a template sees it.
type TemplateAlert struct {
	Status      string
	Labels      map[string]string
	Annotations map[string]string
	StartsAt    time.Time
}

// templateValues maps each placeholder to its value for a.
func templateValues(a TemplateAlert, now time.Time) map[string]string {
	addr := a.Annotations[rules.AnnotationClusterName]
	if c := a.Labels[rules.LabelCluster]; c != "" {
		if addr == "" {
			addr = c
		} else {
			addr += " (" + c + ")"
		}
	}
	if n := a.Labels["node"]; n != "" {
		addr = strings.TrimSpace(addr + " node " + n)
	}
	content := a.Annotations[rules.AnnotationSummary]
	if content == "" {
		content = a.Annotations[rules.AnnotationDescription]
	}
	return map[string]string{
		PlaceholderAlertName:    a.Labels["alertname"],
		PlaceholderAlertContent: content,
		PlaceholderAlertTime:    a.StartsAt.UTC().Format(time.RFC3339),
		PlaceholderAlertLevel:   a.Labels[rules.LabelSeverity],
		PlaceholderAlertStatus:  a.Status,
		PlaceholderAlertLink:    a.Annotations[rules.AnnotationLink],
		PlaceholderAlertAddress: addr,
		PlaceholderSystemTime:   now.UTC().Format(time.RFC3339),
	}
}

// templatePart is a literal run of a template (name empty) or a
// placeholder.
type templatePart struct{ text, name string }

// parseTemplate splits a template into literal text and placeholders; the
// error says what is wrong, for the field's message.
func parseTemplate(t string) ([]templatePart, error) {
	var parts []templatePart
	for t != "" {
		i := strings.Index(t, "{{")
		if i < 0 {
			parts = append(parts, templatePart{text: t})
			break
		}
		if i > 0 {
			parts = append(parts, templatePart{text: t[:i]})
		}
		j := strings.Index(t[i:], "}}")
		if j < 0 {
			return nil, fmt.Errorf("a {{ at byte %d is never closed with }}", i)
		}
		name := strings.TrimSpace(t[i+2 : i+j])
		if !slices.Contains(Placeholders, name) {
			return nil, fmt.Errorf("{{%.40s}} is not a placeholder; want one of {{%s}}", name, strings.Join(Placeholders, "}}, {{"))
		}
		parts = append(parts, templatePart{name: name})
		t = t[i+j+2:]
	}
	return parts, nil
}

// RenderTemplate renders a webhook's template for one alert at now. A
// template that passed Validate renders valid JSON for any values: each
// value is escaped as the inside of a JSON string.
func RenderTemplate(tmpl string, a TemplateAlert, now time.Time) ([]byte, error) {
	parts, err := parseTemplate(tmpl)
	if err != nil {
		return nil, fmt.Errorf("rendering webhook template: %w", err)
	}
	return render(parts, templateValues(a, now)), nil
}

func render(parts []templatePart, values map[string]string) []byte {
	var b []byte
	for _, p := range parts {
		if p.name == "" {
			b = append(b, p.text...)
			continue
		}
		q, _ := json.Marshal(values[p.name]) // a string always marshals
		b = append(b, q[1:len(q)-1]...)
	}
	return b
}

// sampleValues are what a template is checked with when saved: each value
// holds the characters that must be escaped in JSON, so a placeholder
// outside a JSON string cannot pass.
func sampleValues() map[string]string {
	v := map[string]string{}
	for _, p := range Placeholders {
		v[p] = "sample \"" + p + "\"\n\\ <&>"
	}
	return v
}

// validateTemplate checks a webhook's template; field is
// "webhooks[i].template".
func validateTemplate(field, t string, errs *httpapi.FieldErrors) {
	if t == "" {
		return
	}
	if len(t) > MaxTemplate {
		errs.Add(field, "%s holds at most %d bytes, got %d", field, MaxTemplate, len(t))
		return
	}
	parts, err := parseTemplate(t)
	if err != nil {
		errs.Add(field, "%s: %v", field, err)
		return
	}
	out := render(parts, sampleValues())
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		errs.Add(field, "%s must render valid JSON, with every placeholder inside a JSON string such as \"{{%s}}\": with sample values it gives %v", field, PlaceholderAlertName, err)
		return
	}
	if len(out) > maxRenderedSample {
		errs.Add(field, "%s renders more than %d bytes with sample values", field, maxRenderedSample)
	}
}

// Redacted returns s with every header value left out, as replies show
// it; s itself is not changed.
func (s Settings) Redacted() Settings {
	if len(s.Webhooks) == 0 {
		return s
	}
	ws := make([]Webhook, len(s.Webhooks))
	for i, w := range s.Webhooks {
		if len(w.Headers) > 0 {
			hs := make([]Header, len(w.Headers))
			for j, h := range w.Headers {
				hs[j] = Header{Name: h.Name}
			}
			w.Headers = hs
		}
		ws[i] = w
	}
	s.Webhooks = ws
	return s
}

// KeepHeaderValues fills the header values s leaves empty from stored, the
// settings saved before, for the webhook with the same URL and a header of
// the same name: a console or script can send back what it read without
// knowing the secrets. A webhook whose URL changed keeps nothing, so a
// stored secret never goes to a destination it was not typed in for.
func (s Settings) KeepHeaderValues(stored Settings) Settings {
	old := map[string]map[string]string{}
	for _, w := range stored.Webhooks {
		m := map[string]string{}
		for _, h := range w.Headers {
			m[textproto.CanonicalMIMEHeaderKey(h.Name)] = h.Value
		}
		old[w.URL] = m
	}
	ws := slices.Clone(s.Webhooks)
	for i, w := range ws {
		if len(w.Headers) == 0 {
			continue
		}
		w.Headers = slices.Clone(w.Headers)
		for j, h := range w.Headers {
			if h.Value == "" {
				w.Headers[j].Value = old[w.URL][textproto.CanonicalMIMEHeaderKey(h.Name)]
			}
		}
		ws[i] = w
	}
	s.Webhooks = ws
	return s
}
