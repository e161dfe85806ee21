// Package control is the local control API between the agent's
// subcommands (register, unregister, status) and the running daemon. It
// listens on the daemon's loopback listener and is authenticated by a token
// kept in the state directory, so only users who can read that directory
// (root, the agent's own user) can drive it.
package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/secret"
)

// Paths of the control API on the daemon's listener.
const (
	PathRegister   = "/api/v1/control/register"
	PathUnregister = "/api/v1/control/unregister"
	PathStatus     = "/api/v1/control/status"
)

// Error codes of the control API. The register command turns each into a
// message that says what to do.
const (
	CodeBadRequest        = "BadRequest"
	CodeUnauthorized      = "Unauthorized"
	CodeAlreadyRegistered = "AlreadyRegistered"
	CodeNotRegistered     = "NotRegistered"
	CodeEMQXAuthFailed    = "EMQXAuthFailed"
	CodeEMQXUnreachable   = "EMQXUnreachable"
	CodeEMQXTLS           = "EMQXTLSFailed"
	CodeEMQXError         = "EMQXError"
	CodeECPUnreachable    = "ECPUnreachable"
	CodeECPTLS            = "ECPTLSFailed"
	CodeECPRefused        = "ECPRefused"
	CodeTokenInvalid      = agentproto.CodeTokenInvalid
	CodeTokenExpired      = agentproto.CodeTokenExpired
	CodeRateLimited       = agentproto.CodeRateLimited
	// CodeClusterAlreadyManaged: ecp refused because another entry manages
	// this EMQX cluster; the message says which, or whom to ask.
	CodeClusterAlreadyManaged = agentproto.CodeClusterAlreadyManaged
	CodeInternal              = "Internal"
)

// RegisterRequest asks the daemon to register with ecp.
type RegisterRequest struct {
	ECPURL             string                   `json:"ecpUrl"`
	Token              secret.String            `json:"-"`
	Username           string                   `json:"username"`
	Password           secret.String            `json:"-"`
	DashboardURL       string                   `json:"dashboardUrl"`
	APIURL             string                   `json:"apiUrl"`
	InsecureSkipVerify bool                     `json:"insecureSkipVerify"`
	LogCollection      agentproto.LogCollection `json:"logCollection"`
}

// registerWire carries the secrets in clear over the loopback connection;
// RegisterRequest itself never marshals them.
type registerWire struct {
	RegisterRequest
	Token    string `json:"token"`
	Password string `json:"password"`
}

// wire puts the secrets on the wire (loopback only).
func (r RegisterRequest) wire() registerWire {
	return registerWire{RegisterRequest: r, Token: r.Token.Reveal(), Password: r.Password.Reveal()}
}

// DecodeRegister reads a RegisterRequest from a control request body.
func DecodeRegister(r io.Reader) (RegisterRequest, error) {
	var w registerWire
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return RegisterRequest{}, fmt.Errorf("decoding register request: %w", err)
	}
	req := w.RegisterRequest
	req.Token, req.Password = secret.String(w.Token), secret.String(w.Password)
	return req, nil
}

// RegisterResponse is a successful registration.
type RegisterResponse struct {
	ClusterID string `json:"clusterId"`
	Project   string `json:"project"`
}

// UnregisterRequest asks the daemon to unregister.
type UnregisterRequest struct {
	// Force forgets the credential even when ecp cannot be told.
	Force bool `json:"force"`
}

// Status is what `agent-exporter status` prints.
type Status struct {
	Version    string `json:"version"`
	Registered bool   `json:"registered"`
	ClusterID  string `json:"clusterId,omitempty"`
	Project    string `json:"project,omitempty"`
	ECPURL     string `json:"ecpUrl,omitempty"`
	EMQXAPIURL string `json:"emqxApiUrl,omitempty"`
	// EMQXReachable is from the last collection.
	EMQXReachable bool                `json:"emqxReachable"`
	EMQXProblem   *agentproto.Problem `json:"emqxProblem,omitempty"`
	LastCollectAt time.Time           `json:"lastCollectAt,omitzero"`
	LastReportAt  time.Time           `json:"lastReportAt,omitzero"`
	// LastReportError says why the last report attempt failed, if it did.
	LastReportError string `json:"lastReportError,omitempty"`
	ReportsBuffered int    `json:"reportsBuffered"`
	// DesiredRevision and DesiredMaxConnections are what ecp wants;
	// AppliedMaxConnections what the agent last saw EMQX hold.
	DesiredRevision       int64               `json:"desiredRevision"`
	DesiredMaxConnections int                 `json:"desiredMaxConnections"`
	AppliedMaxConnections *int                `json:"appliedMaxConnections,omitempty"`
	QuotaProblem          *agentproto.Problem `json:"quotaProblem,omitempty"`
	// Ended tells why the last registration ended (unregistered,
	// credential revoked by ecp), when the agent is not registered.
	EndedAt     time.Time `json:"endedAt,omitzero"`
	EndedReason string    `json:"endedReason,omitempty"`
}

// Error is a control API error reply: {"error": {"code", "message"}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// ErrorBody is the envelope of Error.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Client calls the daemon's control API.
type Client struct {
	URL   string
	Token secret.String
	HTTP  *http.Client
}

// ErrDaemonUnreachable means nothing answers at the control URL.
var ErrDaemonUnreachable = errors.New("the agent daemon is not running")

// Register hands a registration to the daemon.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (RegisterResponse, error) {
	var out RegisterResponse
	err := c.do(ctx, http.MethodPost, PathRegister, req.wire(), &out)
	return out, err
}

// Unregister asks the daemon to unregister.
func (c *Client) Unregister(ctx context.Context, req UnregisterRequest) error {
	return c.do(ctx, http.MethodPost, PathUnregister, req, nil)
}

// Status reads the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	err := c.do(ctx, http.MethodGet, PathStatus, nil, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding control request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("building control request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token.Reveal())
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrDaemonUnreachable, c.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading control reply: %w", err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			return &Error{Status: resp.StatusCode, Code: CodeInternal, Message: fmt.Sprintf("daemon answered http %d", resp.StatusCode)}
		}
		eb.Error.Status = resp.StatusCode
		return &eb.Error
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decoding control reply: %w", err)
	}
	return nil
}
