package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// browserResolve resolves a Location header against base as a browser
// does (the WHATWG URL parser): leading and trailing C0 controls and
// spaces are dropped, tab and newline are removed anywhere, and a
// backslash is a slash in an http(s) URL.
func browserResolve(base *url.URL, loc string) (*url.URL, error) {
	loc = strings.TrimFunc(loc, func(r rune) bool { return r <= 0x20 })
	loc = strings.NewReplacer("\t", "", "\n", "", "\r", "", `\`, "/").Replace(loc)
	ref, err := url.Parse(loc)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(ref), nil
}

// FuzzSafeNext feeds the login form's "next" value, which anyone can set
// in a link to the login page. Property: the redirect after login stays
// on the console's own origin as a browser reads the Location header,
// and never goes back to the login page.
//
// issue #11, also seen: /login?next=/%09/host gave Location: /\t/host,
// which a browser reads as //host, another site.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/projects/p1/clusters", "/", "//evil.example", `/\evil.example`, "/\t/evil.example", "/\n/evil.example",
		" //evil.example", "/login?next=//evil", "https://evil.example/", "/%2F%2Fevil.example", "/\x00/evil", "", "javascript:alert(1)"} {
		f.Add(s)
	}
	base, err := url.Parse("https://ecp.example/login")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		if got == "" {
			return
		}
		w := httptest.NewRecorder()
		http.Redirect(w, httptest.NewRequest(http.MethodPost, "https://ecp.example/login", nil), got, http.StatusSeeOther)
		loc := w.Header().Get("Location")
		u, err := browserResolve(base, loc)
		if err != nil {
			return // a browser does not follow an unparsable Location
		}
		if u.Scheme != "https" || u.Host != "ecp.example" || u.User != nil {
			t.Fatalf("next %q gave Location %q, which a browser follows to %s", next, loc, u)
		}
		if strings.HasPrefix(u.Path, "/login") {
			t.Fatalf("next %q leads back to the login page (%s)", next, u)
		}
	})
}

// FuzzFormLines feeds the alert settings' "emails" and "webhooks" text
// areas. Property: each entry is one trimmed, non-empty line (no line
// break survives into an address or URL), and no more entries come out
// than lines went in.
func FuzzFormLines(f *testing.F) {
	for _, s := range []string{"ops@example.com\nsre@example.com", "http://hook.example/a\r\n\r\n  http://hook.example/b  ", "\n\n", "", "a\rb", "x\u2028y\u0085z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := lines(s)
		if max := strings.Count(s, "\n") + 1; len(out) > max {
			t.Fatalf("%d entries from %d lines", len(out), max)
		}
		for _, l := range out {
			if l == "" || l != strings.TrimSpace(l) || strings.ContainsAny(l, "\n") {
				t.Fatalf("entry %q from %q is not one trimmed line", l, s)
			}
		}
	})
}
