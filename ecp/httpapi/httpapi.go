// Package httpapi is the one adapter between ecp's HTTP handlers and the
// wire: it writes every JSON reply and every error in ecp's envelope, decodes
// request bodies strictly, and measures request latency by route template.
//
// Handlers return an error instead of writing one; Handle turns it into the
// envelope {"error": {"code", "message", "field"}} with the fitting status,
// and never leaks an internal error's text to the caller.
package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/ecpio/ecp/agentproto"
)

// DefaultBodyLimit bounds the request body of every route that sets no
// limit of its own (BodyLimit): an ordinary API call is a small JSON object,
// and a body ecp never needs must not cost it memory, time or storage.
const DefaultBodyLimit = 64 << 10

// Option refines how Handle serves one route.
type Option func(*route)

type route struct {
	bodyLimit int64
	template  string
}

// BodyLimit sets the most bytes a route's request body may hold, in place
// of DefaultBodyLimit: smaller for routes an anonymous caller reaches (the
// login), larger for agent routes that carry batches.
func BodyLimit(n int64) Option {
	return func(r *route) { r.bodyLimit = n }
}

// Route names the route's template for its latency and its error logs,
// instead of the template gorilla/mux matched: for a handler that is also
// served without mux's matching (fleet.Shortcut), so that its requests are
// counted and logged the same either way. The template must be the one the
// route is mounted with.
func Route(template string) Option {
	return func(r *route) { r.template = template }
}

// Error is an error with an HTTP status, a stable code and, for invalid
// input, the field it concerns. Its message is shown to the caller as is.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter time.Duration
	// Details are extra members of the error object (for example the
	// licence's remaining quota on a refused change).
	Details map[string]any
}

func (e *Error) Error() string { return e.Message }

// Codes shared by every API. Packages may add their own.
const (
	CodeInvalid       = "Invalid"
	CodeUnauthorized  = "Unauthorized"
	CodeForbidden     = "Forbidden"
	CodeNotFound      = "NotFound"
	CodeConflict      = "Conflict"
	CodeRefused       = "Refused"
	CodeInternal      = "Internal"
	CodeUnavailable   = "Unavailable"
	CodeRateLimited   = agentproto.CodeRateLimited
	CodeTooLarge      = "TooLarge"
	CodeTimeout       = "Timeout"
	CodeMethodInvalid = "MethodNotAllowed"
)

// Invalid is a 400 naming the field and what would be accepted.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// FieldErrors collects every wrong field of a request body, so that a form
// can mark them all at once.
type FieldErrors []map[string]string

// Add records one wrong field and what would be accepted.
func (e *FieldErrors) Add(field, format string, args ...any) {
	*e = append(*e, map[string]string{"field": field, "message": fmt.Sprintf(format, args...)})
}

// Err is the 400 naming the first wrong field, with every one of them
// ({"field", "message"}) in its "errors" member; nil when there is none.
func (e FieldErrors) Err() error {
	if len(e) == 0 {
		return nil
	}
	he := Invalid(e[0]["field"], "%s", e[0]["message"])
	he.Details = map[string]any{"errors": []map[string]string(e)}
	return he
}

// Unauthorized is a 401.
func Unauthorized(message string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: message}
}

// Forbidden is a 403.
func Forbidden(message string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: message}
}

// NotFound is a 404.
func NotFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict is a 409.
func Conflict(format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Message: fmt.Sprintf(format, args...)}
}

// Refused is a 422: the input is well formed but policy refuses it.
func Refused(format string, args ...any) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeRefused, Message: fmt.Sprintf(format, args...)}
}

// HandlerFunc is an API handler: it writes a reply itself (usually through
// JSON) or returns an error for Handle to write.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Adapter turns HandlerFuncs into http.Handlers that share one logger and one
// latency histogram.
type Adapter struct {
	logger   *slog.Logger
	duration *prometheus.HistogramVec
	// observers holds duration's observer per series (a seriesKey), so that
	// a request does not hash and look up its labels again: that was 2 %
	// of ecp's CPU serving agents. Bounded as the series are: route
	// templates, methodLabel's methods and the statuses handlers answer.
	observers sync.Map
}

type seriesKey struct {
	route, method string
	status        int
}

// NewAdapter registers ecp_http_request_duration_seconds on reg.
func NewAdapter(logger *slog.Logger, reg prometheus.Registerer) *Adapter {
	a := &Adapter{
		logger: logger,
		duration: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ecp_http_request_duration_seconds",
			Help:    "Latency of HTTP requests served by ecp, by route template, method and status code.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"route", "method", "code"}),
	}
	return a
}

// Handle adapts h: errors become the envelope, latency is observed under the
// route's template (never the raw path, which would explode cardinality).
// The request body is bounded by the route's limit (DefaultBodyLimit unless
// BodyLimit says otherwise), whoever reads it: a body declared larger is
// refused with 413 before h runs, and a longer one fails its reader with
// *http.MaxBytesError, which WriteError answers with 413 too.
func (a *Adapter) Handle(h HandlerFunc, opts ...Option) http.Handler {
	rt := route{bodyLimit: DefaultBodyLimit}
	for _, o := range opts {
		o(&rt)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := NewStatusWriter(w)
		var err error
		if r.ContentLength > rt.bodyLimit {
			err = &http.MaxBytesError{Limit: rt.bodyLimit}
		} else {
			// w, not sw: where w is net/http's own writer, it then closes
			// the connection after the reply instead of reading the rest
			// of an oversized body.
			r.Body = http.MaxBytesReader(w, r.Body, rt.bodyLimit)
			err = h(sw, r)
		}
		template := rt.template
		if template == "" {
			template = RouteTemplate(r)
		}
		if err != nil {
			a.writeError(sw, r, template, err)
		}
		if sw.hijacked {
			// The handler took the connection over and answers later; it
			// observes its latency through Observe.
			return
		}
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		a.Observe(template, r.Method, sw.status, time.Since(start))
	})
}

// Observe records one request's latency, for a handler that took its
// connection over (http.Hijacker) and answered after returning.
func (a *Adapter) Observe(route, method string, status int, elapsed time.Duration) {
	k := seriesKey{route: route, method: methodLabel(method), status: status}
	o, ok := a.observers.Load(k)
	if !ok {
		o, _ = a.observers.LoadOrStore(k, a.duration.WithLabelValues(k.route, k.method, strconv.Itoa(status)))
	}
	o.(prometheus.Observer).Observe(elapsed.Seconds())
}

// methodLabel is how the latency histogram names a request's method. Any
// token is a method to net/http, so one HTTP does not define is "other":
// a caller must not add series (and memory) at will.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "other"
}

// RouteTemplate is the mux template that matched r, or "other".
func RouteTemplate(r *http.Request) string {
	if route := mux.CurrentRoute(r); route != nil {
		if tpl, err := route.GetPathTemplate(); err == nil {
			return tpl
		}
	}
	return "other"
}

// UnavailableRetryAfter is the Retry-After of a 503 answered because etcd
// (or another service ecp waits on) did not answer in time.
const UnavailableRetryAfter = 5 * time.Second

// WriteError writes err in the envelope. An *Error is shown as is; an error
// saying etcd lost its leader or quorum, or a call ran out of time, is a 503
// with Retry-After, which agents honour, since retrying later will work;
// anything else is logged and answered with a generic 500, so internal
// details (etcd addresses, stack traces) never reach the caller.
func (a *Adapter) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	a.writeError(w, r, RouteTemplate(r), err)
}

// writeError is WriteError for the route named template.
func (a *Adapter) writeError(w http.ResponseWriter, r *http.Request, template string, err error) {
	var apiErr *Error
	switch {
	case errors.As(err, &apiErr):
	case unavailable(err):
		// Before bodyError: context.DeadlineExceeded is a net.Error that
		// times out too, but says nothing about the request's body.
		a.logger.Debug("request failed: a dependency is unavailable", "method", r.Method, "route", template, "err", err)
		apiErr = &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Message: "ecp's store or a service it depends on did not answer in time; retry later", RetryAfter: UnavailableRetryAfter}
	default:
		apiErr = bodyError(err)
	}
	if apiErr == nil {
		a.logger.Error("request failed", "method", r.Method, "route", template, "err", err)
		apiErr = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error; the server log has the details"}
	}
	if apiErr.RetryAfter > 0 {
		w.Header().Set(agentproto.HeaderRetryAfter, strconv.Itoa(int((apiErr.RetryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, apiErr.Status, agentproto.ErrorBody{Error: agentproto.ErrorDetail{
		Code: apiErr.Code, Message: apiErr.Message, Field: apiErr.Field, Details: apiErr.Details,
	}})
}

// unavailable reports whether err is etcd being without a leader or timing
// out, or a deadline passing while ecp waited.
func unavailable(err error) bool {
	for _, target := range []error{context.DeadlineExceeded, rpctypes.ErrNoLeader, rpctypes.ErrLeaderChanged,
		rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// JSON writes v with status.
func JSON(w http.ResponseWriter, status int, v any) error {
	writeJSON(w, status, v)
	return nil
}

// List writes {"items": items}, never {"items": null}.
func List[T any](w http.ResponseWriter, items []T) error {
	if items == nil {
		items = []T{}
	}
	return JSON(w, http.StatusOK, map[string]any{"items": items})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // The client went away; nothing useful to do.
}

// Decode reads r's JSON body into v, refusing unknown fields and trailing
// data with a 400 that says which; Handle bounds the body (413 beyond the
// route's limit) and its arrival (408 after the server's read timeout).
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Invalid("", "request body must hold a single JSON object")
	}
	return nil
}

// bodyError answers a failure to read the request body, whoever read it:
// 413 naming the route's limit, or 408 when the body did not arrive within
// the server's read timeout. Any other error is not about the body: nil.
func bodyError(err error) *Error {
	var (
		maxErr *http.MaxBytesError
		netErr net.Error
	)
	switch {
	case errors.As(err, &maxErr):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("request body is larger than %d bytes, the limit of this route", maxErr.Limit)}
	case errors.As(err, &netErr) && netErr.Timeout():
		return &Error{Status: http.StatusRequestTimeout, Code: CodeTimeout, Message: "request body did not arrive within the server's read timeout"}
	}
	return nil
}

// ReadBody reads r's whole body, bounded as Handle bounds it, for a handler
// that must look at the bytes before decoding them; a failure is answered
// as Decode answers it.
func ReadBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if apiErr := bodyError(err); apiErr != nil {
			return nil, apiErr
		}
		return nil, Invalid("", "cannot read the request body: %v", err)
	}
	return b, nil
}

func decodeError(err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	if apiErr := bodyError(err); apiErr != nil {
		return apiErr
	}
	switch {
	case errors.Is(err, io.EOF):
		return Invalid("", "request body is empty; a JSON object is required")
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return Invalid("", "request body is not valid JSON: %v", err)
	case errors.As(err, &typeErr):
		return Invalid(typeErr.Field, "field %q must be a JSON %s", typeErr.Field, typeErr.Type.Kind())
	default:
		// json reports unknown fields as `json: unknown field "x"`.
		return Invalid("", "request body: %v", err)
	}
}

// StatusWriter remembers the status a handler answered with, for the
// request metrics here and the audit log; it passes Hijack, Flush and
// Unwrap through, so long-polls and streams work behind it.
type StatusWriter struct {
	http.ResponseWriter
	status   int
	hijacked bool
}

// NewStatusWriter wraps w.
func NewStatusWriter(w http.ResponseWriter) *StatusWriter {
	return &StatusWriter{ResponseWriter: w}
}

// Status is the status written so far (200 once a body was written
// without one), or 0 when nothing was written.
func (s *StatusWriter) Status() int { return s.status }

// Hijacked reports whether the handler took the connection over.
func (s *StatusWriter) Hijacked() bool { return s.hijacked }

// Hijack hands the connection over and notes it, so that Handle neither
// writes to it nor observes a latency the handler has not finished.
func (s *StatusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	c, rw, err := h.Hijack()
	if err == nil {
		s.hijacked = true
	}
	return c, rw, err
}

// WriteHeader notes the first status written and passes it on.
func (s *StatusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write notes 200 when the handler wrote no status first.
func (s *StatusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets long-polls and streams flush through the wrapper.
func (s *StatusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
