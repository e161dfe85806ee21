package logstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// testTimeout bounds the whole connection test: the admin is waiting.
const testTimeout = 10 * time.Second

// Test is the "test connection" call for a configuration before (or after)
// it is saved: it reaches the store, checks the credentials and that the URL
// answers as the configured type. The error wraps ErrUnreachable,
// ErrUnauthorized or ErrWrongType (errors.Is) and its message says what to
// fix; it never contains the password. transport may be nil.
func Test(ctx context.Context, cfg ReceiverConfig, transport http.RoundTripper) error {
	c, err := newConn(cfg, transport, testTimeout)
	if err != nil {
		return err
	}
	defer c.client.CloseIdleConnections()
	return testConn(ctx, c)
}

func testConn(ctx context.Context, c *conn) error {
	ctx, cancel := context.WithTimeout(ctx, testTimeout)
	defer cancel()
	switch c.cfg.Type {
	case TypeElasticsearch:
		return testElasticsearch(ctx, c)
	default:
		return testVictoriaLogs(ctx, c)
	}
}

// testElasticsearch reads the root endpoint, which every Elasticsearch
// answers with its name, version and tagline, and which needs the
// "monitor" privilege or none.
func testElasticsearch(ctx context.Context, c *conn) error {
	body, hdr, err := getForTest(ctx, c, "/")
	if err != nil {
		return err
	}
	var root struct {
		Version struct {
			Number       string `json:"number"`
			Distribution string `json:"distribution"`
		} `json:"version"`
		Tagline string `json:"tagline"`
	}
	if json.Unmarshal(body, &root) != nil || root.Version.Number == "" {
		if strings.Contains(string(body), "VictoriaLogs") {
			return fmt.Errorf("%w: %s answers as VictoriaLogs; set type %q", ErrWrongType, c.cfg.URL, TypeVictoriaLogs)
		}
		return fmt.Errorf("%w: %s does not answer as Elasticsearch (no version in the reply to GET /)", ErrWrongType, c.cfg.URL)
	}
	if hdr.Get("X-Elastic-Product") != "Elasticsearch" && root.Tagline == "" {
		return fmt.Errorf("%w: %s answers GET / with a version but not as Elasticsearch (no tagline, no X-Elastic-Product header)", ErrWrongType, c.cfg.URL)
	}
	if root.Version.Distribution == "" && !atLeast(root.Version.Number, 7, 13) {
		return fmt.Errorf("%w: Elasticsearch %s is too old; 7.13 or newer is needed (composable index templates, date_nanos, formatted sort values for search_after)", ErrWrongType, root.Version.Number)
	}
	return checkPrivileges(ctx, c)
}

// checkPrivileges asks Elasticsearch whether the user may do what the Writer
// and the Querier will do, so a login that works but cannot write is caught
// by the test and not by the first batch. Without security (the API is
// missing or disabled) there is nothing to check.
func checkPrivileges(ctx context.Context, c *conn) error {
	pattern := c.cfg.indexPrefix() + "-*"
	body, _ := json.Marshal(map[string]any{ // fixed shape of strings: cannot fail
		"cluster": []string{"manage_index_templates"},
		"index":   []any{map[string]any{"names": []string{pattern}, "privileges": []string{"create_index", "index", "read"}}},
	})
	resp, err := c.do(ctx, http.MethodPost, "/_security/user/_has_privileges", nil, "application/json", body)
	if err != nil {
		return fmt.Errorf("cannot reach the log store at %s: %w", c.cfg.URL, err)
	}
	defer drain(resp)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return classifyTestStatus(c, "/_security/user/_has_privileges", readStatusError(resp))
	case resp.StatusCode/100 != 2:
		return nil
	}
	var reply struct {
		HasAll  bool                       `json:"has_all_requested"`
		Cluster map[string]bool            `json:"cluster"`
		Index   map[string]map[string]bool `json:"index"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		return fmt.Errorf("decoding the privileges reply: %w", err)
	}
	if reply.HasAll {
		return nil
	}
	var missing []string
	for p, ok := range reply.Cluster {
		if !ok {
			missing = append(missing, "cluster privilege "+p)
		}
	}
	for name, privs := range reply.Index {
		for p, ok := range privs {
			if !ok {
				missing = append(missing, "index privilege "+p+" on "+name)
			}
		}
	}
	slices.Sort(missing)
	return fmt.Errorf("%w: user %q lacks %s", ErrUnauthorized, c.cfg.Username, strings.Join(missing, ", "))
}

// testVictoriaLogs checks the ingestion endpoint ecp writes to and the query
// endpoint the log page reads from.
func testVictoriaLogs(ctx context.Context, c *conn) error {
	body, hdr, err := getForTest(ctx, c, "/insert/elasticsearch/")
	if err != nil {
		if se, ok := errors.AsType[*testStatusError](err); ok && noSuchEndpoint(se.status) {
			return fmt.Errorf("%w: %s has no /insert/elasticsearch/ endpoint, so it is not VictoriaLogs; for Elasticsearch set type %q", ErrWrongType, c.cfg.URL, TypeElasticsearch)
		}
		return err
	}
	if hdr.Get("X-Elastic-Product") == "" || !strings.Contains(string(body), `"number"`) {
		return fmt.Errorf("%w: %s does not answer /insert/elasticsearch/ as VictoriaLogs does", ErrWrongType, c.cfg.URL)
	}
	q := url.Values{"query": {"_time:1m | limit 1"}}
	resp, err := c.do(ctx, http.MethodPost, "/select/logsql/query", nil, "application/x-www-form-urlencoded", []byte(q.Encode()))
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return classifyTestStatus(c, "/select/logsql/query", readStatusError(resp))
	}
	return nil
}

// testStatusError carries the status of a failed test request.
type testStatusError struct {
	status int
	err    error
}

func (e *testStatusError) Error() string { return e.err.Error() }
func (e *testStatusError) Unwrap() error { return e.err }

func getForTest(ctx context.Context, c *conn, p string) ([]byte, http.Header, error) {
	resp, err := c.do(ctx, http.MethodGet, p, nil, "", nil)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot reach the log store at %s: %w", c.cfg.URL, err)
	}
	defer drain(resp)
	if resp.StatusCode/100 != 2 {
		return nil, nil, classifyTestStatus(c, p, readStatusError(resp))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reading GET %s: %w", ErrUnreachable, p, err)
	}
	return b, resp.Header, nil
}

func classifyTestStatus(c *conn, p string, se *statusError) error {
	var err error
	switch se.Status {
	case http.StatusUnauthorized:
		who := "without credentials"
		if c.cfg.Username != "" {
			who = "as user " + c.cfg.Username
		}
		err = fmt.Errorf("%w: the log store at %s refused the login %s (401); check username and password", ErrUnauthorized, c.cfg.URL, who)
	case http.StatusForbidden:
		err = fmt.Errorf("%w: the log store at %s denied GET %s to user %q (403); grant the user access", ErrUnauthorized, c.cfg.URL, p, c.cfg.Username)
	case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
		err = fmt.Errorf("%w: the log store at %s has no %s (%d); check the URL and type", ErrWrongType, c.cfg.URL, p, se.Status)
	default:
		err = fmt.Errorf("the log store at %s answered GET %s: %w", c.cfg.URL, p, se)
	}
	return &testStatusError{status: se.Status, err: err}
}

// atLeast reports whether the version "major.minor.patch" is at least
// major.minor; an unparsable version passes (let the writes tell).
func atLeast(version string, major, minor int) bool {
	parts := strings.SplitN(version, ".", 3)
	ma, err := strconv.Atoi(parts[0])
	if err != nil {
		return true
	}
	mi := 0
	if len(parts) > 1 {
		mi, _ = strconv.Atoi(parts[1])
	}
	return ma > major || ma == major && mi >= minor
}

// noSuchEndpoint reports the statuses a server gives for a path it does not
// serve: Elasticsearch answers 400 "no handler found for uri", most others
// 404 or 405.
func noSuchEndpoint(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusNotFound || status == http.StatusMethodNotAllowed
}
