package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// The demo's mail inbox: a small read-only page over Mailpit's REST API.
// Mailpit installed with `go install` has no web assets (they are built with
// npm and embedded only in its release binaries), so its own page is blank;
// this one needs no JavaScript build and shows what a person watching for
// alerts wants: who sent what to whom, when, and the text.

// inboxListLimit bounds the list: the demo's alerts are a handful, and a
// page of 50 (Mailpit's own default) stays readable.
const inboxListLimit = 50

// maxMailpitReply bounds what the inbox reads from Mailpit in one reply.
const maxMailpitReply = 8 << 20

// mailpitIDPattern is what a Mailpit message id looks like (a short
// URL-safe token); anything else is answered 404 without asking Mailpit.
var mailpitIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// mailAddress, mailSummary and mailMessage hold the fields of Mailpit's
// storage.MessageSummary and storage.Message (v1.27) the pages show.
type mailAddress struct {
	Name    string `json:"Name"`
	Address string `json:"Address"`
}

func (a mailAddress) String() string {
	if a.Name == "" {
		return a.Address
	}
	return fmt.Sprintf("%s <%s>", a.Name, a.Address)
}

type mailSummary struct {
	ID      string        `json:"ID"`
	From    *mailAddress  `json:"From"`
	To      []mailAddress `json:"To"`
	Subject string        `json:"Subject"`
	Created time.Time     `json:"Created"`
	Read    bool          `json:"Read"`
}

type mailMessage struct {
	ID      string        `json:"ID"`
	From    *mailAddress  `json:"From"`
	To      []mailAddress `json:"To"`
	Subject string        `json:"Subject"`
	Date    time.Time     `json:"Date"`
	Text    string        `json:"Text"`
}

// inbox serves the pages; mailpit is Mailpit's base URL.
type inbox struct {
	mailpit string
	http    *http.Client
}

func newInbox(mailpitURL string) *inbox {
	return &inbox{mailpit: mailpitURL, http: &http.Client{Timeout: 10 * time.Second}}
}

func (in *inbox) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", in.list)
	mux.HandleFunc("GET /message/{id}", in.message)
	return mux
}

// serveInbox listens on addr and serves the inbox until Shutdown.
func serveInbox(ctx context.Context, addr, mailpitURL string) (*http.Server, error) {
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mail inbox: %w", err)
	}
	srv := &http.Server{Handler: newInbox(mailpitURL).handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func (in *inbox) list(w http.ResponseWriter, r *http.Request) {
	var reply struct {
		Total    uint64        `json:"total"`
		Messages []mailSummary `json:"messages"`
	}
	err := in.get(r.Context(), fmt.Sprintf("/api/v1/messages?limit=%d", inboxListLimit), &reply)
	if err != nil {
		in.fail(w, err)
		return
	}
	render(w, listPage, reply)
}

func (in *inbox) message(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !mailpitIDPattern.MatchString(id) {
		render(w, errorPage, errorData{Status: http.StatusNotFound, Message: "no such message"})
		return
	}
	var m mailMessage
	if err := in.get(r.Context(), "/api/v1/message/"+url.PathEscape(id), &m); err != nil {
		in.fail(w, err)
		return
	}
	render(w, messagePage, m)
}

// errNoMessage is Mailpit's 404: the message was deleted or never existed.
var errNoMessage = errors.New("no such message")

func (in *inbox) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.mailpit+path, nil)
	if err != nil {
		return err
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return fmt.Errorf("ask Mailpit: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errNoMessage
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("ask Mailpit: GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMailpitReply)).Decode(v); err != nil {
		return fmt.Errorf("read Mailpit's reply to GET %s: %w", path, err)
	}
	return nil
}

type errorData struct {
	Status  int
	Message string
}

func (in *inbox) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, errNoMessage) {
		render(w, errorPage, errorData{Status: http.StatusNotFound, Message: "no such message (deleted from Mailpit?)"})
		return
	}
	render(w, errorPage, errorData{Status: http.StatusBadGateway, Message: err.Error()})
}

// render writes a page; errorPage's data carries its status.
func render(w http.ResponseWriter, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if e, ok := data.(errorData); ok {
		w.WriteHeader(e.Status)
	}
	_ = t.Execute(w, data)
}

const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{template "title" .}} · ecp demo mail</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
tr.unread td{font-weight:600}
pre{white-space:pre-wrap;background:#f6f6f6;padding:1rem;border:1px solid #ddd}
dt{font-weight:600;float:left;width:5rem}dd{margin:0 0 .3rem 5rem}
.muted{color:#666}
</style>`

var funcs = template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}

var listPage = template.Must(template.New("list").Funcs(funcs).Parse(pageHead + `
{{define "title"}}Inbox{{end}}
<meta http-equiv="refresh" content="5"></head><body>
<h1>Demo mail inbox</h1>
<p class="muted">Every e-mail ecp's alerting sent during this demo, newest first ({{.Total}} in all); this page reloads every 5 seconds.</p>
{{if .Messages}}<table>
<tr><th>Received</th><th>From</th><th>To</th><th>Subject</th></tr>
{{range .Messages}}<tr{{if not .Read}} class="unread"{{end}}>
<td>{{when .Created}}</td><td>{{with .From}}{{.}}{{end}}</td>
<td>{{range $i, $a := .To}}{{if $i}}, {{end}}{{$a}}{{end}}</td>
<td><a href="/message/{{.ID}}">{{if .Subject}}{{.Subject}}{{else}}(no subject){{end}}</a></td></tr>
{{end}}</table>{{else}}<p>No mail yet. Break a connector with <code>make demo-fault</code>; the alert arrives here within seconds.</p>{{end}}
</body></html>`))

var messagePage = template.Must(template.New("message").Funcs(funcs).Parse(pageHead + `
{{define "title"}}{{.Subject}}{{end}}
</head><body>
<p><a href="/">← Inbox</a></p>
<h1>{{if .Subject}}{{.Subject}}{{else}}(no subject){{end}}</h1>
<dl>
<dt>From</dt><dd>{{with .From}}{{.}}{{end}}</dd>
<dt>To</dt><dd>{{range $i, $a := .To}}{{if $i}}, {{end}}{{$a}}{{end}}</dd>
<dt>Date</dt><dd>{{when .Date}}</dd>
</dl>
<pre>{{.Text}}</pre>
</body></html>`))

var errorPage = template.Must(template.New("error").Parse(pageHead + `
{{define "title"}}Error{{end}}
</head><body>
<p><a href="/">← Inbox</a></p>
<h1>The inbox cannot show this</h1>
<p>{{.Message}}</p>
</body></html>`))
