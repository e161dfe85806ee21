// Package emqx is the agent's client of the EMQX v5 REST API (/api/v5).
//
// It logs in to the dashboard with the operator's username and password,
// keeps the bearer token and logs in again when EMQX answers 401
// TOKEN_TIME_OUT or BAD_TOKEN. Every field name comes from EMQX's own API
// (see shared/emqx-api.md); nothing here is invented.
package emqx

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/ecpio/ecp/internal/secret"
)

// BasePath is the prefix of every EMQX v5 API call.
const BasePath = "/api/v5"

// Error codes EMQX returns that the client acts on.
const (
	CodeBadUsernameOrPwd = "BAD_USERNAME_OR_PWD"
	CodeLoginLocked      = "LOGIN_LOCKED"
	CodeBadMFAToken      = "BAD_MFA_TOKEN"
	CodeTokenTimeOut     = "TOKEN_TIME_OUT"
	CodeBadToken         = "BAD_TOKEN"
)

// ErrAuthFailed means EMQX refused the username and password.
var ErrAuthFailed = errors.New("emqx: username or password refused")

// APIError is a non-2xx reply from EMQX: {"code", "message"}.
type APIError struct {
	Method  string
	Path    string
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("emqx %s %s: http %d", e.Method, e.Path, e.Status)
	}
	return fmt.Sprintf("emqx %s %s: http %d %s: %s", e.Method, e.Path, e.Status, e.Code, e.Message)
}

// Config is what the client needs to reach one EMQX cluster.
type Config struct {
	// APIURL is the base of the dashboard listener, e.g.
	// "http://127.0.0.1:18083"; BasePath is appended.
	APIURL   string
	Username string
	Password secret.String
	// HTTPClient carries timeouts and TLS settings (see package transport).
	HTTPClient *http.Client
}

// Client talks to one EMQX cluster. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	username string
	password secret.String
	hc       *http.Client

	mu    sync.Mutex
	token secret.String
	// lengths are the lengths of the lists last read, by path: the next
	// read of a list is decoded into a slice of that capacity, rather than
	// grown to it step by step (a tenth of a tick's garbage at 1,000
	// rules and 1,000 connectors).
	lengths map[string]int
	// noSummary holds the lists EMQX has no summary of (summarized).
	noSummary map[string]bool

	// readers keeps the buffered readers replies are decoded through for
	// the next calls. A reply is decoded as it arrives rather than read
	// whole first: a collection reads about 3.3 MB at 1,000 rules and
	// 1,000 connectors, and holding the largest reply (1.6 MB of
	// /prometheus/data_integration) in a buffer kept for the next tick
	// was 4 MiB of the agent's heap.
	readers chan *bufio.Reader
}

// Readers kept: as many as calls run at once (rule metrics go four at a
// time), each of readerSize.
const (
	keptReaders = 4
	readerSize  = 64 << 10
	// maxReply bounds a reply EMQX may send.
	maxReply = 32 << 20
)

// New checks cfg and returns a client; it does not contact EMQX.
func New(cfg Config) (*Client, error) {
	if cfg.APIURL == "" {
		return nil, errors.New("emqx: api url is required")
	}
	u, err := url.Parse(strings.TrimRight(cfg.APIURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("emqx: api url %q must be http(s)://host[:port]", cfg.APIURL)
	}
	if cfg.HTTPClient == nil {
		return nil, errors.New("emqx: http client is required")
	}
	return &Client{base: u, username: cfg.Username, password: cfg.Password, hc: cfg.HTTPClient, readers: make(chan *bufio.Reader, keptReaders)}, nil
}

// LoginInfo is the reply of POST /api/v5/login.
type LoginInfo struct {
	Version string `json:"version"`
	License struct {
		Edition string `json:"edition"`
	} `json:"license"`
	Role string `json:"role"`
}

type loginReply struct {
	LoginInfo
	Token string `json:"token"`
}

// Login logs in to the dashboard and keeps the token. A refused username
// or password gives an error that wraps ErrAuthFailed.
func (c *Client) Login(ctx context.Context) (LoginInfo, error) {
	body := map[string]string{"username": c.username, "password": c.password.Reveal()}
	var reply loginReply
	if err := c.send(ctx, http.MethodPost, "/login", nil, body, &reply, ""); err != nil {
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized {
			return LoginInfo{}, fmt.Errorf("%w: %w", ErrAuthFailed, err)
		}
		return LoginInfo{}, fmt.Errorf("logging in to emqx: %w", err)
	}
	c.mu.Lock()
	c.token = secret.String(reply.Token)
	c.mu.Unlock()
	return reply.LoginInfo, nil
}

// call does an authenticated request, logging in first when there is no
// token and once more when EMQX says the token expired or is unknown.
func (c *Client) call(ctx context.Context, method, path string, query url.Values, in, out any) error {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	if tok.IsZero() {
		if _, err := c.Login(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		tok = c.token
		c.mu.Unlock()
	}
	err := c.send(ctx, method, path, query, in, out, tok.Reveal())
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized &&
		(apiErr.Code == CodeTokenTimeOut || apiErr.Code == CodeBadToken) {
		if _, err := c.Login(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		tok = c.token
		c.mu.Unlock()
		return c.send(ctx, method, path, query, in, out, tok.Reveal())
	}
	return err
}

func (c *Client) send(ctx context.Context, method, path string, query url.Values, in, out any, token string) error {
	u := *c.base
	u.Path += BasePath + path
	u.RawQuery = query.Encode()
	var reqBody io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reqBody)
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if raw, ok := out.(*rawReply); ok && raw.accept != "" {
		req.Header.Set("Accept", raw.accept)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("emqx %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body := &replyReader{r: io.LimitReader(resp.Body, maxReply)}
	// readFailed names a failed read of the reply as such, not as a
	// reply that did not decode.
	readFailed := func(err error) error {
		if body.err != nil {
			return fmt.Errorf("reading emqx %s %s: %w", method, path, body.err)
		}
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, err := io.ReadAll(body)
		if err != nil {
			return readFailed(err)
		}
		apiErr := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var eb struct {
			Code    string          `json:"code"`
			Message json.RawMessage `json:"message"`
		}
		if json.Unmarshal(b, &eb) == nil {
			apiErr.Code = eb.Code
			// message is usually a string but may be an object (5.9+ MFA).
			var s string
			if json.Unmarshal(eb.Message, &s) == nil {
				apiErr.Message = s
			} else {
				apiErr.Message = string(eb.Message)
			}
		}
		return apiErr
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		// Read to the end, so the connection serves the next call.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return readFailed(err)
		}
		return nil
	}
	r := c.reader(body)
	defer c.keep(r)
	if raw, ok := out.(*rawReply); ok {
		return readFailed(raw.decode(resp.Header.Get("Content-Type"), r))
	}
	// The JSON v2 decoder takes a third of encoding/json's CPU time; the
	// options keep encoding/json's leniency. EMQX's large lists (rules,
	// connectors, actions, sources) go through the scanner instead
	// (scan.go). It reads to the end of the reply (trailing data is an
	// error), so the connection serves the next call.
	if err := jsonv2.UnmarshalRead(r, out, lenient); err != nil {
		return readFailed(fmt.Errorf("decoding emqx %s %s: %w", method, path, err))
	}
	return nil
}

// replyReader reads a reply and remembers the first failed read (other
// than its end).
type replyReader struct {
	r   io.Reader
	err error
}

func (b *replyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// reader returns a buffered reader of body, a kept one when there is one.
func (c *Client) reader(body io.Reader) *bufio.Reader {
	select {
	case r := <-c.readers:
		r.Reset(body)
		return r
	default:
		return bufio.NewReaderSize(body, readerSize)
	}
}

// keep keeps r for a later reply.
func (c *Client) keep(r *bufio.Reader) {
	r.Reset(nil)
	select {
	case c.readers <- r:
	default:
	}
}

// lenient makes the JSON v2 decoder accept what encoding/json accepts:
// names in any case, duplicate names and invalid UTF-8.
var lenient = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true),
	jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))

// Node is one item of GET /api/v5/nodes. Stopped nodes carry only Node,
// NodeStatus and Role.
type Node struct {
	Node            string `json:"node"`
	NodeStatus      string `json:"node_status"`
	Version         string `json:"version"`
	Edition         string `json:"edition"`
	Role            string `json:"role"`
	Uptime          int64  `json:"uptime"` // milliseconds
	Connections     int    `json:"connections"`
	LiveConnections int    `json:"live_connections"`
	LogPath         string `json:"log_path"`
	// Load1, Load5 and Load15 are the OS load averages (0 where EMQX
	// cannot read them).
	Load1  Load `json:"load1"`
	Load5  Load `json:"load5"`
	Load15 Load `json:"load15"`
	// MemoryTotal and MemoryUsed are EMQX's human-readable sizes
	// ("15.52G", "256.00M", a bare integer under 1 KiB); MemoryBytes
	// reads them.
	MemoryTotal string `json:"memory_total"`
	MemoryUsed  string `json:"memory_used"`
}

// Load is a load average. EMQX writes a number; 5.0.x wrote a string,
// which is read too, and anything else is 0 rather than a failed nodes
// call (the node list says whether EMQX is up).
type Load float64

// UnmarshalJSON implements json.Unmarshaler.
func (l *Load) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(strings.Trim(string(b), `"`), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		f = 0
	}
	*l = Load(f)
	return nil
}

// MemoryBytes parses a memory_total or memory_used value: a number with an
// optional K, M or G suffix (powers of 1024, as EMQX writes them). ok is
// false for anything else, and for a negative or non-finite size.
func MemoryBytes(s string) (bytes float64, ok bool) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f * mult, true
}

// Nodes lists the cluster's nodes, running first.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	if err := c.call(ctx, http.MethodGet, "/nodes", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ClusterName reads the cluster's name (GET /api/v5/cluster "name", the
// cluster.name setting): with the node names it says which cluster this
// is (agentproto.ClusterIdentity).
func (c *Client) ClusterName(ctx context.Context) (string, error) {
	var out struct {
		Name string `json:"name"`
	}
	if err := c.call(ctx, http.MethodGet, "/cluster", nil, nil, &out); err != nil {
		return "", err
	}
	return out.Name, nil
}

// LocalNode names the node that answers the API: node_name of GET
// /api/v5/status?format=json (5.7 and later). Behind a load balancer that is
// any node of the cluster, so callers trust it only when the API URL is
// the agent's own machine.
func (c *Client) LocalNode(ctx context.Context) (string, error) {
	var out struct {
		NodeName string `json:"node_name"`
	}
	if err := c.call(ctx, http.MethodGet, "/status", url.Values{"format": {"json"}}, nil, &out); err != nil {
		return "", err
	}
	if out.NodeName == "" {
		return "", fmt.Errorf("emqx GET %s/status: no node_name in the reply", BasePath)
	}
	return out.NodeName, nil
}

// License is GET /api/v5/license. MaxSessions exists from 5.8.5 on; both
// carry the effective limit (including dynamic_max_connections).
type License struct {
	Customer       string `json:"customer"`
	Type           string `json:"type"`
	CustomerType   int    `json:"customer_type"`
	ExpiryAt       string `json:"expiry_at"`
	Expiry         bool   `json:"expiry"`
	MaxConnections int    `json:"max_connections"`
	MaxSessions    *int   `json:"max_sessions"`
}

// CustomerTypeBusinessCritical is the only licence customer type for
// which EMQX honours dynamic_max_connections.
const CustomerTypeBusinessCritical = 3

// Limit is the effective connection limit: max_sessions where the version
// has it (5.8.5+, primary from 5.9), else max_connections.
func (l License) Limit() int {
	if l.MaxSessions != nil {
		return *l.MaxSessions
	}
	return l.MaxConnections
}

// License reads the loaded licence.
func (c *Client) License(ctx context.Context) (License, error) {
	var out License
	err := c.call(ctx, http.MethodGet, "/license", nil, nil, &out)
	return out, err
}

// LicenseSetting is GET/PUT /api/v5/license/setting. DynamicMaxConnections
// is nil when EMQX hides it (licence not business-critical).
type LicenseSetting struct {
	ConnectionLowWatermark  string `json:"connection_low_watermark,omitempty"`
	ConnectionHighWatermark string `json:"connection_high_watermark,omitempty"`
	DynamicMaxConnections   *int   `json:"dynamic_max_connections,omitempty"`
}

// LicenseSetting reads the licence settings.
func (c *Client) LicenseSetting(ctx context.Context) (LicenseSetting, error) {
	var out LicenseSetting
	err := c.call(ctx, http.MethodGet, "/license/setting", nil, nil, &out)
	return out, err
}

// SetDynamicMaxConnections sets dynamic_max_connections and returns the
// settings EMQX answers with, so the caller can see whether it was stored.
func (c *Client) SetDynamicMaxConnections(ctx context.Context, n int) (LicenseSetting, error) {
	var out LicenseSetting
	err := c.call(ctx, http.MethodPut, "/license/setting", nil, map[string]int{"dynamic_max_connections": n}, &out)
	return out, err
}

// Rule is one item of GET /api/v5/rules. EMQX has no runtime rule status:
// a rule runs when it is enabled.
type Rule struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Enable      bool   `json:"enable"`
	Description string `json:"description"`
}

type page[T any] struct {
	Data []T `json:"data"`
	Meta struct {
		Page    int  `json:"page"`
		Limit   int  `json:"limit"`
		HasNext bool `json:"hasnext"`
	} `json:"meta"`
}

// RulesPageLimit is how many rules one page asks for. EMQX accepts up to
// 10000; 1,000 rules in one call rather than ten keeps a tick within its
// budget of EMQX calls (agent-exporter/README.md, "Cost per collection").
const RulesPageLimit = 1000

// maxPages stops a server that always says hasnext from looping forever.
const maxPages = 10000

// Rules lists every rule, following meta.hasnext to the last page.
func (c *Client) Rules(ctx context.Context) ([]Rule, error) {
	var all []Rule
	for p := 1; p <= maxPages; p++ {
		q := url.Values{"page": {strconv.Itoa(p)}, "limit": {strconv.Itoa(RulesPageLimit)}}
		var out page[Rule]
		if p == 1 {
			out.Data = make([]Rule, 0, min(c.lastLength("/rules"), RulesPageLimit))
		}
		raw := rawReply{decode: func(_ string, body *bufio.Reader) error {
			if err := scanRules(body, &out); err != nil {
				return fmt.Errorf("decoding emqx GET /rules: %w", err)
			}
			return nil
		}}
		if err := c.call(ctx, http.MethodGet, "/rules", q, nil, &raw); err != nil {
			return nil, err
		}
		if all == nil {
			all = out.Data // the one page of most clusters, not copied
		} else {
			all = append(all, out.Data...)
		}
		if !out.Meta.HasNext {
			c.setLength("/rules", len(all))
			return all, nil
		}
	}
	return nil, fmt.Errorf("emqx rules: more than %d pages", maxPages)
}

// RuleMetrics is the aggregate part of GET /api/v5/rules/{id}/metrics.
type RuleMetrics struct {
	Matched       float64 `json:"matched"`
	Passed        float64 `json:"passed"`
	Failed        float64 `json:"failed"`
	ActionsTotal  float64 `json:"actions.total"`
	ActionsOK     float64 `json:"actions.success"`
	ActionsFailed float64 `json:"actions.failed"`
}

// RuleMetrics reads one rule's cluster-wide counters.
func (c *Client) RuleMetrics(ctx context.Context, id string) (RuleMetrics, error) {
	var out struct {
		Metrics RuleMetrics `json:"metrics"`
	}
	err := c.call(ctx, http.MethodGet, "/rules/"+url.PathEscape(id)+"/metrics", nil, nil, &out)
	return out.Metrics, err
}

// Resource is one connector, action or source. Status is the aggregated
// status (connected, connecting, disconnected, stopped, inconsistent).
type Resource struct {
	Type         string `json:"type"`
	Name         string `json:"name"`
	Enable       bool   `json:"enable"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason"`
}

// ID is the id EMQX uses for the resource: "type:name".
func (r Resource) ID() string { return r.Type + ":" + r.Name }

// Connectors lists the connectors (not paginated).
func (c *Client) Connectors(ctx context.Context) ([]Resource, error) {
	return c.resources(ctx, "/connectors")
}

// Actions lists the actions (not paginated), from /actions_summary where
// EMQX has it (summarized).
func (c *Client) Actions(ctx context.Context) ([]Resource, error) {
	return c.summarized(ctx, "/actions")
}

// Sources lists the sources (not paginated), from /sources_summary where
// EMQX has it (summarized).
func (c *Client) Sources(ctx context.Context) ([]Resource, error) {
	return c.summarized(ctx, "/sources")
}

// summarized lists path's actions or sources from path+"_summary" (5.8.5
// and later): the same items with the members the agent reads, without
// each one's configuration: half of /actions' bytes from emqx-sim.
// An EMQX that answers it 404 (before 5.8.5) is read from path from then
// on.
func (c *Client) summarized(ctx context.Context, path string) ([]Resource, error) {
	c.mu.Lock()
	full := c.noSummary[path]
	c.mu.Unlock()
	if !full {
		list, err := c.resources(ctx, path+"_summary")
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			return list, err
		}
		c.mu.Lock()
		if c.noSummary == nil {
			c.noSummary = map[string]bool{}
		}
		c.noSummary[path] = true
		c.mu.Unlock()
	}
	return c.resources(ctx, path)
}

// resources reads a list of connectors, actions or sources with a scanner
// (scan.go): each item carries its whole configuration, of which the agent
// keeps five members.
func (c *Client) resources(ctx context.Context, path string) ([]Resource, error) {
	out := make([]Resource, 0, c.lastLength(path))
	raw := rawReply{decode: func(_ string, body *bufio.Reader) error {
		if err := scanResources(body, &out); err != nil {
			return fmt.Errorf("decoding emqx GET %s: %w", path, err)
		}
		return nil
	}}
	if err := c.call(ctx, http.MethodGet, path, nil, nil, &raw); err != nil {
		return nil, err
	}
	c.setLength(path, len(out))
	return out, nil
}

// lastLength is the length of the list last read from path (0: none).
func (c *Client) lastLength(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lengths[path]
}

func (c *Client) setLength(path string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lengths == nil {
		c.lengths = map[string]int{}
	}
	c.lengths[path] = n
}

// Alarm is one item of GET /api/v5/alarms (emqx-api.md §3.8): an alarm
// EMQX raised on one node. A name is unique per node while active.
type Alarm struct {
	Node    string `json:"node"`
	Name    string `json:"name"`
	Message string `json:"message"`
}

// MaxAlarmsPage is the largest page EMQX's alarm list accepts.
const MaxAlarmsPage = 10000

// ActiveAlarms reads the alarms EMQX holds active, at most limit of them
// (1 to MaxAlarmsPage) in one call: what an alert needs is which alarms
// are on, and EMQX names them itself, so their number is not ours to
// trust. more says EMQX holds others past the limit.
func (c *Client) ActiveAlarms(ctx context.Context, limit int) (alarms []Alarm, more bool, err error) {
	limit = min(max(limit, 1), MaxAlarmsPage)
	q := url.Values{"activated": {"true"}, "page": {"1"}, "limit": {strconv.Itoa(limit)}}
	var out page[Alarm]
	if err := c.call(ctx, http.MethodGet, "/alarms", q, nil, &out); err != nil {
		return nil, false, err
	}
	if len(out.Data) > limit {
		out.Data, out.Meta.HasNext = out.Data[:limit], true
	}
	return out.Data, out.Meta.HasNext, nil
}

// AuthFailures are the cluster's authentication and authorization refusals
// since its nodes started, by what the client was doing: counters of GET
// /api/v5/metrics?aggregate=true (emqx-api.md §3.5), summed over running
// nodes by EMQX.
type AuthFailures struct {
	// Connect is packets.connack.auth_error: CONNECTs refused for bad
	// credentials or not being authorized.
	Connect float64 `json:"packets.connack.auth_error"`
	// Publish is packets.publish.auth_error: PUBLISHes authorization
	// denied.
	Publish float64 `json:"packets.publish.auth_error"`
	// Subscribe is packets.subscribe.auth_error: SUBSCRIBEs authorization
	// denied.
	Subscribe float64 `json:"packets.subscribe.auth_error"`
}

// Metrics reads the cluster's counters in one call, aggregated by EMQX.
func (c *Client) Metrics(ctx context.Context) (AuthFailures, error) {
	var out AuthFailures
	if err := c.call(ctx, http.MethodGet, "/metrics", url.Values{"aggregate": {"true"}}, nil, &out); err != nil {
		return AuthFailures{}, err
	}
	return out, nil
}

// AuthBackend is one authenticator or authorization source and whether it
// is enabled and connected on every node.
type AuthBackend struct {
	// Authorization is true for an authorization source (ID its type,
	// e.g. "http"), false for an authenticator (ID "mechanism:backend",
	// e.g. "password_based:http").
	Authorization bool
	ID            string
	Enabled       bool
	Connected     bool
}

// MaxAuthBackends bounds the backends one reply may list: EMQX allows a
// handful, and a reply with more is not EMQX's to trust.
const MaxAuthBackends = 100

// AuthBackends reads every authenticator and authorization source with its
// status in one call: /prometheus/auth (5.5.0+) in the Prometheus text
// format, mode all_nodes_aggregated, rather than GET /authentication and
// /authorization/sources and a status call per backend.
func (c *Client) AuthBackends(ctx context.Context) ([]AuthBackend, error) {
	var out []AuthBackend
	err := c.promText(ctx, "/prometheus/auth", "all_nodes_aggregated", func(body io.Reader) (err error) {
		out, err = authStatusText(body)
		return err
	})
	return out, err
}

// promText reads a Prometheus endpoint of EMQX in the text format, with
// mode, and hands the body to decode; its error names the endpoint.
func (c *Client) promText(ctx context.Context, path, mode string, decode func(body io.Reader) error) error {
	raw := rawReply{accept: "text/plain", decode: func(_ string, body *bufio.Reader) error {
		if err := decode(body); err != nil {
			return fmt.Errorf("emqx GET %s: %w", path, err)
		}
		return nil
	}}
	return c.call(ctx, http.MethodGet, path, url.Values{"mode": {mode}}, nil, &raw)
}

// NodeCPU reads each running node's CPU usage, in percent, in one call:
// emqx_vm_cpu_use of /prometheus/stats in the Prometheus text format, mode
// all_nodes_unaggregated (which labels the VM series by node). GET /nodes
// has load averages and memory but no CPU usage.
func (c *Client) NodeCPU(ctx context.Context) (map[string]float64, error) {
	var out map[string]float64
	err := c.promText(ctx, "/prometheus/stats", "all_nodes_unaggregated", func(body io.Reader) (err error) {
		out, err = nodeCPUText(body)
		return err
	})
	return out, err
}

// diRule is one rule of /prometheus/data_integration in JSON form.
type diRule struct {
	ID            string  `json:"id"`
	Matched       float64 `json:"emqx_rule_matched"`
	Passed        float64 `json:"emqx_rule_passed"`
	Failed        float64 `json:"emqx_rule_failed"`
	ActionsTotal  float64 `json:"emqx_rule_actions_total"`
	ActionsOK     float64 `json:"emqx_rule_actions_success"`
	ActionsFailed float64 `json:"emqx_rule_actions_failed"`
}

// rawReply decodes a reply itself, for the endpoints that may answer in
// another format than JSON; body is valid only during the call.
type rawReply struct {
	accept string // the Accept header, when not JSON
	decode func(contentType string, body *bufio.Reader) error
}

// AllRuleMetrics reads every rule's cluster-wide counters in one call, from
// /prometheus/data_integration (5.5.0+) with mode all_nodes_aggregated. It
// replaces one /rules/{id}/metrics call per rule, which matters with
// hundreds of rules. It asks for the Prometheus text format and scans it
// for the six rule counters (ruleMetricsText): the JSON variant carries
// the same thousands of action and connector series, and decoding them
// was a third of a tick's CPU at 1,000 rules and 1,000 connectors. A node
// that answers JSON anyway is decoded as JSON.
func (c *Client) AllRuleMetrics(ctx context.Context) (map[string]RuleMetrics, error) {
	var m map[string]RuleMetrics
	raw := rawReply{accept: "text/plain", decode: func(contentType string, body *bufio.Reader) error {
		if !isJSON(contentType, body) {
			var err error
			if m, err = ruleMetricsText(body); err != nil {
				return fmt.Errorf("emqx GET /prometheus/data_integration: %w", err)
			}
			return nil
		}
		var out struct {
			Rules []diRule `json:"rules"`
		}
		if err := jsonv2.UnmarshalRead(body, &out, lenient); err != nil {
			return fmt.Errorf("decoding emqx GET /prometheus/data_integration: %w", err)
		}
		m = make(map[string]RuleMetrics, len(out.Rules))
		for _, r := range out.Rules {
			m[r.ID] = RuleMetrics{Matched: r.Matched, Passed: r.Passed, Failed: r.Failed,
				ActionsTotal: r.ActionsTotal, ActionsOK: r.ActionsOK, ActionsFailed: r.ActionsFailed}
		}
		return nil
	}}
	q := url.Values{"mode": {"all_nodes_aggregated"}}
	if err := c.call(ctx, http.MethodGet, "/prometheus/data_integration", q, nil, &raw); err != nil {
		return nil, err
	}
	return m, nil
}

// isJSON says whether a reply is JSON: by its content type, else by its
// first byte (a Prometheus text body starts with a comment or a name). It
// reads the blanks before that byte, which neither format minds.
func isJSON(contentType string, body *bufio.Reader) bool {
	if contentType != "" {
		return strings.Contains(contentType, "json")
	}
	for {
		c, err := body.ReadByte()
		if err != nil {
			return false
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		_ = body.UnreadByte()
		return c == '{' || c == '['
	}
}

// DashboardSession is a dashboard login made for a person, not for the
// agent: EMQX's POST /api/v5/login answer with the username it was made for.
type DashboardSession struct {
	LoginInfo
	Username string
	Token    secret.String
}

// NewDashboardSession logs in once more with the registered credentials
// and returns the new token without keeping it: it is handed over for the
// dashboard jump, and the agent's own session is left alone.
func (c *Client) NewDashboardSession(ctx context.Context) (DashboardSession, error) {
	return c.NewDashboardSessionAs(ctx, c.username, c.password)
}

// NewDashboardSessionAs logs in as another dashboard user (the agent's
// viewer user) and returns the token without keeping it. A refused login
// wraps ErrAuthFailed.
func (c *Client) NewDashboardSessionAs(ctx context.Context, username string, password secret.String) (DashboardSession, error) {
	body := map[string]string{"username": username, "password": password.Reveal()}
	var reply loginReply
	if err := c.send(ctx, http.MethodPost, "/login", nil, body, &reply, ""); err != nil {
		var apiErr *APIError
		if errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized {
			return DashboardSession{}, fmt.Errorf("%w: %w", ErrAuthFailed, err)
		}
		return DashboardSession{}, fmt.Errorf("logging in to emqx: %w", err)
	}
	if reply.Token == "" {
		return DashboardSession{}, errors.New("emqx login answered without a token")
	}
	return DashboardSession{LoginInfo: reply.LoginInfo, Username: username, Token: secret.String(reply.Token)}, nil
}

// CreateDashboardUser adds a dashboard user (POST /api/v5/users, which
// takes a Bearer token of an administrator only). EMQX answers 400
// BAD_REQUEST for a name that exists or a password it finds too weak.
func (c *Client) CreateDashboardUser(ctx context.Context, username string, password secret.String, role, description string) error {
	body := map[string]string{"username": username, "password": password.Reveal(), "role": role, "description": description}
	if err := c.call(ctx, http.MethodPost, "/users", nil, body, nil); err != nil {
		return fmt.Errorf("creating emqx dashboard user %s: %w", username, err)
	}
	return nil
}

// DeleteDashboardUser removes a dashboard user and with it every session
// of that user; a user that does not exist is no error.
func (c *Client) DeleteDashboardUser(ctx context.Context, username string) error {
	err := c.call(ctx, http.MethodDelete, "/users/"+url.PathEscape(username), nil, nil, nil)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting emqx dashboard user %s: %w", username, err)
	}
	return nil
}
