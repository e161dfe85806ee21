// Package ecpclient speaks the agent side of agentproto to ecp: register,
// report, the desired-state long-poll and unregister, with the error codes
// and Retry-After handling the contract defines. The agent always opens the
// connection; ecp never calls it.
package ecpclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/secret"
)

// ErrCredentialRevoked means ecp no longer accepts the agent's credential;
// the agent must forget it and stop reporting.
var ErrCredentialRevoked = errors.New("ecp: agent credential revoked")

// APIError is a non-2xx reply from ecp in its {"error": {...}} envelope.
type APIError struct {
	Status  int
	Code    string
	Message string
	Field   string
	// RetryAfter is the Retry-After of a 429/503 reply, zero otherwise.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("ecp: http %d", e.Status)
	}
	return fmt.Sprintf("ecp: http %d %s: %s", e.Status, e.Code, e.Message)
}

// Is lets errors.Is(err, ErrCredentialRevoked) match a 401 on an
// authenticated call: whatever the code (CredentialRevoked, or none from a
// proxy in front of ecp), the credential no longer opens the door.
func (e *APIError) Is(target error) bool {
	return target == ErrCredentialRevoked && e.Status == http.StatusUnauthorized &&
		e.Code != agentproto.CodeTokenInvalid && e.Code != agentproto.CodeTokenExpired
}

// Client calls one ecp. It is safe for concurrent use.
type Client struct {
	base       *url.URL
	hc         *http.Client
	credential secret.String
}

// New returns a client for the ecp at baseURL authenticating with
// credential (empty for Register).
func New(baseURL string, credential secret.String, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ecp url %q must be http(s)://host[:port]", baseURL)
	}
	if hc == nil {
		return nil, errors.New("ecpclient: http client is required")
	}
	return &Client{base: u, hc: hc, credential: credential}, nil
}

// Register trades a registration token for the agent's credential.
func (c *Client) Register(ctx context.Context, req agentproto.RegisterRequest) (agentproto.RegisterResponse, error) {
	var out agentproto.RegisterResponse
	err := c.do(ctx, http.MethodPost, agentproto.PathRegister, nil, req, &out, false)
	return out, err
}

// Report sends one report and returns ecp's reply with the desired state.
func (c *Client) Report(ctx context.Context, req agentproto.ReportRequest) (agentproto.ReportResponse, error) {
	var out agentproto.ReportResponse
	err := c.do(ctx, http.MethodPost, agentproto.PathReport, nil, req, &out, true)
	return out, err
}

// Polled is the answer to a desired-state long-poll.
type Polled struct {
	Desired agentproto.DesiredState
	// Changed is false when ecp answered 204: nothing newer than after.
	Changed bool
	// NextSend says ecp is crowded: it answered at once, closed the
	// connection, and wants no poll before the agent's next scheduled send
	// (agentproto.HeaderHold).
	NextSend bool
}

// HeldReport is the reply to a report sent as the desired-state long-poll.
type HeldReport struct {
	agentproto.ReportResponse
	// Held says ecp honoured the hold (agentproto.HeaderReportHeld);
	// otherwise (an ecp older than held reports, or one holding all the
	// polls it may) the reply came at once and the caller long-polls with
	// Desired as before.
	Held bool
	// NextSend is Polled.NextSend: ecp is crowded, answered at once and
	// wants no poll before the agent's next scheduled send.
	NextSend bool
}

// ReportHeld sends a report that is also the desired-state long-poll:
// ecp records it at once and answers when the desired state is newer than
// after, or after wait.
func (c *Client) ReportHeld(ctx context.Context, req agentproto.ReportRequest, after int64, wait time.Duration) (HeldReport, error) {
	var out HeldReport
	_, h, err := c.doStatus(ctx, http.MethodPost, agentproto.PathReport, pollQuery(after, wait), req, &out.ReportResponse, true)
	if err != nil {
		return out, err
	}
	out.Held = h.Get(agentproto.HeaderReportHeld) == agentproto.ReportHeld
	out.NextSend = h.Get(agentproto.HeaderHold) == agentproto.HoldNextSend
	return out, nil
}

func pollQuery(after int64, wait time.Duration) url.Values {
	return url.Values{
		agentproto.QueryAfter:   {strconv.FormatInt(after, 10)},
		agentproto.QueryTimeout: {wait.String()},
	}
}

// Desired long-polls for a desired state newer than after.
func (c *Client) Desired(ctx context.Context, after int64, wait time.Duration) (Polled, error) {
	var out Polled
	status, header, err := c.doStatus(ctx, http.MethodGet, agentproto.PathDesired, pollQuery(after, wait), nil, &out.Desired, true)
	if err != nil {
		return out, err
	}
	out.Changed = status != http.StatusNoContent
	out.NextSend = header.Get(agentproto.HeaderHold) == agentproto.HoldNextSend
	return out, nil
}

// Unregister tells ecp the agent leaves; ecp revokes its credential.
func (c *Client) Unregister(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, agentproto.PathUnregister, nil, struct{}{}, nil, true)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any, auth bool) error {
	_, _, err := c.doStatus(ctx, method, path, q, in, out, auth)
	return err
}

// doStatus makes one call and returns the reply's status and header.
func (c *Client) doStatus(ctx context.Context, method, path string, q url.Values, in, out any, auth bool) (int, http.Header, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("encoding %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.credential.Reveal())
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("ecp %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("reading ecp %s: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		apiErr := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get(agentproto.HeaderRetryAfter))}
		var eb agentproto.ErrorBody
		if json.Unmarshal(b, &eb) == nil {
			apiErr.Code, apiErr.Message, apiErr.Field = eb.Error.Code, eb.Error.Message, eb.Error.Field
		}
		return resp.StatusCode, resp.Header, apiErr
	}
	if out == nil || resp.StatusCode == http.StatusNoContent || len(b) == 0 {
		return resp.StatusCode, resp.Header, nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, resp.Header, fmt.Errorf("decoding ecp %s: %w", path, err)
	}
	return resp.StatusCode, resp.Header, nil
}

// parseRetryAfter reads delay-seconds; an HTTP-date is not used by ecp.
func parseRetryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// RetryAfter returns the Retry-After ecp asked for in err, or zero.
func RetryAfter(err error) time.Duration {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.RetryAfter
	}
	return 0
}

// DashboardSession answers a dashboard session request of ecp.
func (c *Client) DashboardSession(ctx context.Context, reply agentproto.DashboardSessionReply) error {
	return c.do(ctx, http.MethodPost, agentproto.PathDashboardSession, nil, reply, nil, true)
}
