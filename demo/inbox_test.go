package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeMailpit answers the two Mailpit API calls the inbox makes, with
// replies shaped as Mailpit v1.27 sends them (the e2e demo test checks the
// pages against the real Mailpit).
func fakeMailpit(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/messages", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("limit") != "50" {
			t.Errorf("list asked with limit %q, want 50", r.URL.Query().Get("limit"))
		}
		_, _ = io.WriteString(w, `{"total":1,"unread":1,"messages":[{"ID":"aB3-x_9","MessageID":"m@x","Read":false,
			"From":{"Name":"ecp","Address":"ecp@demo.example"},"To":[{"Name":"","Address":"ops@north.example"}],
			"Subject":"[FIRING:1] <script>alert(1)</script> north-line-1","Created":"2026-12-04T20:01:02.5Z","Snippet":"x"}]}`)
	})
	mux.HandleFunc("GET /api/v1/message/aB3-x_9", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ID":"aB3-x_9","From":{"Name":"ecp","Address":"ecp@demo.example"},
			"To":[{"Name":"","Address":"ops@north.example"}],"Subject":"[FIRING:1] <script>alert(1)</script> north-line-1",
			"Date":"2026-12-04T20:01:02Z","Text":"Connector http:c1 is down <b>econnrefused</b>","HTML":"<p>x</p>"}`)
	})
	mux.HandleFunc("GET /api/v1/message/{id}", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not found", http.StatusNotFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestInboxPages(t *testing.T) {
	mailpit := fakeMailpit(t)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // a Mailpit that is not running
	for _, tc := range []struct {
		name, mailpit, path string
		status              int
		want, wantNot       []string
	}{
		{name: "list shows each mail, escaped, with a link", mailpit: mailpit.URL, path: "/", status: http.StatusOK,
			want: []string{`href="/message/aB3-x_9"`, "&lt;script&gt;alert(1)&lt;/script&gt; north-line-1",
				"ecp &lt;ecp@demo.example&gt;", "ops@north.example", "2026-12-04 20:01:02 UTC", "1 in all"},
			wantNot: []string{"<script>"}},
		{name: "message shows subject, from, to, date and text", mailpit: mailpit.URL, path: "/message/aB3-x_9", status: http.StatusOK,
			want: []string{"<h1>[FIRING:1] &lt;script&gt;", "ecp &lt;ecp@demo.example&gt;", "ops@north.example",
				"2026-12-04 20:01:02 UTC", "Connector http:c1 is down &lt;b&gt;econnrefused&lt;/b&gt;"},
			wantNot: []string{"<script>", "<b>", "<p>x</p>"}},
		{name: "unknown message", mailpit: mailpit.URL, path: "/message/nope", status: http.StatusNotFound,
			want: []string{"no such message"}},
		{name: "id that is not Mailpit's", mailpit: mailpit.URL, path: "/message/..%2f..%2fapi", status: http.StatusNotFound,
			want: []string{"no such message"}},
		{name: "Mailpit down", mailpit: down.URL, path: "/", status: http.StatusBadGateway,
			want: []string{"ask Mailpit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			newInbox(tc.mailpit).handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
			body := rec.Body.String()
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d:\n%s", rec.Code, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(body, w) {
					t.Errorf("page has %q unescaped:\n%s", w, body)
				}
			}
		})
	}
}
