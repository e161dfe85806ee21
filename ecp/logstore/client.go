package logstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Errors the connection test and the store calls classify failures into; test
// with errors.Is.
var (
	// ErrUnreachable: no HTTP answer (DNS, refused, TLS, timeout).
	ErrUnreachable = errors.New("log store unreachable")
	// ErrUnauthorized: the store refused the credentials (401) or the user's
	// rights (403).
	ErrUnauthorized = errors.New("log store refused the credentials")
	// ErrWrongType: the URL answers, but not as the configured store type.
	ErrWrongType = errors.New("log store is not of the configured type")
	// ErrNotConfigured: no log receiver is configured.
	ErrNotConfigured = errors.New("no log receiver is configured")
)

// maxErrorBody bounds how much of an error reply is read into a message.
const maxErrorBody = 4 << 10

// conn is one configured store: base URL, credentials, HTTP client.
type conn struct {
	cfg    ReceiverConfig
	base   *url.URL
	client *http.Client
}

// newConn validates cfg and builds its HTTP client. transport, when not nil,
// replaces the default one (tests, custom proxies); InsecureSkipVerify then
// is the caller's business.
func newConn(cfg ReceiverConfig, transport http.RoundTripper, timeout time.Duration) (*conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, err := parseBaseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	if transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Many agents write through a handful of ecp replicas to one store:
		// keep enough idle connections that steady load does not re-dial.
		t.MaxIdleConnsPerHost = 32
		if cfg.InsecureSkipVerify {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the admin chose it explicitly
		}
		transport = t
	}
	return &conn{cfg: cfg, base: base, client: &http.Client{Transport: transport, Timeout: timeout}}, nil
}

// url joins the base URL (with its path prefix) and p, plus query args.
func (c *conn) url(p string, q url.Values) string {
	u := *c.base
	u.Path = c.base.Path + p
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends one request with auth; the caller closes the body.
func (c *conn) do(ctx context.Context, method, p string, q url.Values, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(p, q), r)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, p, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.cfg.Username != "" {
		req.SetBasicAuth(c.cfg.Username, c.cfg.Password.Reveal())
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, redactURL(c.url(p, nil)), unwrapURLError(err))
	}
	return resp, nil
}

// unwrapURLError drops *url.Error's "Post "http://…":" prefix, which repeats
// what the caller says anyway.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.User = nil
	return u.String()
}

// statusError is a non-2xx reply, with the start of its body for the message.
type statusError struct {
	Status int
	Body   string
	// RetryAfter is the store's Retry-After, zero when absent.
	RetryAfter time.Duration
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("log store answered %d %s", e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Is lets 401 and 403 match ErrUnauthorized.
func (e *statusError) Is(target error) bool {
	return target == ErrUnauthorized && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// transient reports whether trying again later may succeed.
func (e *statusError) transient() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// readStatusError consumes a non-2xx reply into a statusError.
func readStatusError(resp *http.Response) *statusError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return &statusError{
		Status:     resp.StatusCode,
		Body:       strings.TrimSpace(string(b)),
		RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After")),
	}
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	return 0
}

// drain empties and closes a body so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
}
