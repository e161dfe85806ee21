package console

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
)

// Limits of a console form body. The login form holds a username, a
// password and two tokens; the largest other form (alert settings) holds
// lists of e-mail addresses and webhook URLs.
const (
	maxLoginFormBytes = 8 << 10
	maxFormBytes      = 64 << 10
)

const formContentType = "application/x-www-form-urlencoded"

// readForm parses the urlencoded body of a console form into r.PostForm and
// r.Form, and is the only place that reads one. Browsers and htmx send
// every console form urlencoded; anything else (multipart above all, which
// net/http spools to $TMPDIR and, behind the router's copy of the request,
// never removes) is refused before a byte of the body is read, and a body
// over limit is cut off with 413. Once it ran, r.PostFormValue and
// r.FormValue read the parsed form and never parse a body of their own.
func readForm(w http.ResponseWriter, r *http.Request, limit int64) *APIError {
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.ContentLength == 0 {
		// A bodiless POST (htmx with the token in its header).
		ct = formContentType
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != formContentType {
		return &APIError{Status: http.StatusUnsupportedMediaType, Code: "UnsupportedMediaType",
			Message: fmt.Sprintf("Console forms are sent as %s; this request was %q.", formContentType, ct)}
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return &APIError{Status: http.StatusRequestEntityTooLarge, Code: "TooLarge",
				Message: fmt.Sprintf("The form is larger than %d KiB; shorten the longest field and try again.", limit>>10)}
		}
		return &APIError{Status: http.StatusBadRequest, Code: "BadRequest", Message: "The form could not be read: it is not valid form encoding."}
	}
	return nil
}
