package emqx

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/ecpio/ecp/internal/secret"
)

const fuzzPassword = "fuzz-emqx-password"

// fuzzEMQX is an EMQX that answers one path with hostile bytes and logs
// in normally otherwise; it records what the client sent.
type fuzzEMQX struct {
	path   string // the path answered with status and body
	status int
	body   []byte

	mu       sync.Mutex
	requests int
	leaks    []string // requests other than /login that carried the password
}

func (e *fuzzEMQX) RoundTrip(r *http.Request) (*http.Response, error) {
	var sent []byte
	if r.Body != nil {
		sent, _ = io.ReadAll(r.Body)
	}
	path := strings.TrimPrefix(r.URL.Path, BasePath)
	e.mu.Lock()
	e.requests++
	if path != "/login" && (bytes.Contains(sent, []byte(fuzzPassword)) || strings.Contains(r.Header.Get("Authorization"), fuzzPassword) ||
		strings.Contains(r.URL.RawQuery, fuzzPassword)) {
		e.leaks = append(e.leaks, r.Method+" "+path)
	}
	e.mu.Unlock()
	status, body := e.status, e.body
	if path != e.path {
		status, body = http.StatusOK, []byte(`{"token":"t1","version":"5.8.1","license":{"edition":"ee"},"role":"administrator"}`)
	}
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
}

// FuzzEMQXReplies answers each call of the agent's EMQX client with
// hostile JSON and statuses. Properties: no panic; every call ends, after
// a bounded number of requests (a server that always says "hasnext" or
// always "token timed out" cannot keep the agent busy); a non-2xx answer
// is an error carrying EMQX's status; the EMQX password goes to /login
// only, whatever the replies.
func FuzzEMQXReplies(f *testing.F) {
	for _, s := range []struct {
		op     uint8
		status int
		body   string
	}{
		{0, 200, `{"token":"t","version":"5.8.1","license":{"edition":"ee"}}`},
		{0, 401, `{"code":"BAD_USERNAME_OR_PWD","message":"Auth failed"}`},
		{1, 200, `[{"node":"emqx@a","node_status":"running","uptime":1,"connections":3}]`},
		{1, 401, `{"code":"TOKEN_TIME_OUT","message":"expired"}`},
		{2, 200, `{"max_connections":10,"max_sessions":null,"customer_type":3}`},
		{3, 200, `{"dynamic_max_connections":-1}`},
		{4, 400, `{"code":"BAD_REQUEST","message":{"nested":["object"]}}`},
		{5, 200, `{"data":[{"id":"r1","enable":true}],"meta":{"page":1,"limit":100,"hasnext":true}}`},
		{6, 200, `{"metrics":{"matched":1e308,"actions.total":"NaN"}}`},
		{7, 200, `[{"type":"kafka","name":"k","status":"connected"}]`},
		{8, 200, `{"rules":[{"id":"r1","emqx_rule_matched":1},{"id":"r1"}]}`},
		{9, 200, `{"version":"5.8.1"}`},
		{1, 500, "\xff\xfe not json"},
		{5, 204, ``},
	} {
		f.Add(s.op, s.status, []byte(s.body))
	}
	paths := []string{"/login", "/nodes", "/license", "/license/setting", "/license/setting", "/rules", "/rules/r1/metrics",
		"/connectors", "/prometheus/data_integration", "/login"}
	f.Fuzz(func(t *testing.T, op uint8, status int, body []byte) {
		op %= uint8(len(paths))
		if status < 0 {
			status = -status
		}
		status = 100 + status%500
		e := &fuzzEMQX{path: paths[op], status: status, body: body}
		c, err := New(Config{APIURL: "http://emqx.invalid:18083", Username: "agent", Password: secret.String(fuzzPassword), HTTPClient: &http.Client{Transport: e}})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		switch op {
		case 0:
			_, err = c.Login(ctx)
		case 1:
			_, err = c.Nodes(ctx)
		case 2:
			var l License
			l, err = c.License(ctx)
			_ = l.Limit()
		case 3:
			_, err = c.LicenseSetting(ctx)
		case 4:
			_, err = c.SetDynamicMaxConnections(ctx, 10)
		case 5:
			_, err = c.Rules(ctx)
		case 6:
			_, err = c.RuleMetrics(ctx, "r1")
		case 7:
			_, err = c.Connectors(ctx)
		case 8:
			_, err = c.AllRuleMetrics(ctx)
		case 9:
			var s DashboardSession
			s, err = c.NewDashboardSession(ctx)
			if err == nil && s.Token.IsZero() {
				t.Fatal("a dashboard session without a token")
			}
		}
		if len(e.leaks) > 0 {
			t.Fatalf("the EMQX password was sent to %v", e.leaks)
		}
		// One page per request, plus at most two logins and one retry.
		if e.requests > maxPages+3 {
			t.Fatalf("one call made %d requests", e.requests)
		}
		if status/100 != 2 {
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != status {
				t.Fatalf("answer %d %q gave error %v, want an APIError with status %d", status, body, err, status)
			}
			if len(apiErr.Message) > 3*len(body) { // invalid UTF-8 becomes U+FFFD
				t.Fatalf("error message is %d bytes from a %d-byte body", len(apiErr.Message), len(body))
			}
		}
	})
}
