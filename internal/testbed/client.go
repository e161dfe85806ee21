package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls ecp's REST API as an operator would.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// APIError is an error reply of ecp, in its envelope.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

func (e *APIError) Error() string {
	return fmt.Sprintf("ecp answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Login returns a client holding a session for username.
func Login(ctx context.Context, baseURL, username, password string) (*Client, error) {
	c := &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), HTTP: &http.Client{Timeout: 30 * time.Second}}
	var out struct {
		Token string `json:"token"`
	}
	if err := c.Do(ctx, http.MethodPost, "/api/v1/login", map[string]string{"username": username, "password": password}, &out); err != nil {
		return nil, fmt.Errorf("log in as %s: %w", username, err)
	}
	c.Token = out.Token
	return c, nil
}

// Do sends in as JSON (when not nil) and decodes the reply into out (when not
// nil). A non-2xx reply is an *APIError.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return fmt.Errorf("build request %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read reply of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var env struct {
			Error APIError `json:"error"`
		}
		_ = json.Unmarshal(raw, &env)
		env.Error.Status = resp.StatusCode
		if env.Error.Code == "" {
			env.Error.Message = strings.TrimSpace(string(raw))
		}
		return &env.Error
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode reply of %s %s: %w", method, path, err)
	}
	return nil
}

// Named is the part of an org or project reply the testbed needs.
type Named struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Cluster is a managed-cluster entry as the API shows it.
type Cluster struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Project     string `json:"project"`
	State       string `json:"state"`
	StateReason *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"stateReason"`
	ServiceURL      string    `json:"serviceUrl"`
	Version         string    `json:"version"`
	Nodes           int       `json:"nodes"`
	Connections     int       `json:"connections"`
	LiveConnections int       `json:"liveConnections"`
	MaxConnections  int       `json:"maxConnections"`
	StartedAt       time.Time `json:"startedAt"`
	ManagedSince    time.Time `json:"managedSince"`
	LastReportAt    time.Time `json:"lastReportAt"`
}

// Registration is the reply of POST /clusters/{id}/registration.
type Registration struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	Commands  []struct {
		OS       string `json:"os"`
		Arch     string `json:"arch"`
		Download string `json:"download"`
		Chmod    string `json:"chmod"`
		Run      string `json:"run"`
		Register string `json:"register"`
	} `json:"commands"`
}

// CreateOrg creates an organization.
func (c *Client) CreateOrg(ctx context.Context, name string) (Named, error) {
	var o Named
	return o, c.Do(ctx, http.MethodPost, "/api/v1/orgs", map[string]string{"name": name}, &o)
}

// CreateProject creates a project in org.
func (c *Client) CreateProject(ctx context.Context, org, name string) (Named, error) {
	var p Named
	return p, c.Do(ctx, http.MethodPost, "/api/v1/orgs/"+org+"/projects", map[string]string{"name": name}, &p)
}

// CreateCluster creates a managed-cluster entry in project.
func (c *Client) CreateCluster(ctx context.Context, project, name, serviceURL string) (Cluster, error) {
	var cl Cluster
	return cl, c.Do(ctx, http.MethodPost, "/api/v1/projects/"+project+"/clusters", map[string]string{"name": name, "serviceUrl": serviceURL}, &cl)
}

// Cluster reads one entry.
func (c *Client) Cluster(ctx context.Context, id string) (Cluster, error) {
	var cl Cluster
	return cl, c.Do(ctx, http.MethodGet, "/api/v1/clusters/"+id, nil, &cl)
}

// Register issues a registration for the entry.
func (c *Client) Register(ctx context.Context, id string) (Registration, error) {
	var r Registration
	return r, c.Do(ctx, http.MethodPost, "/api/v1/clusters/"+id+"/registration", nil, &r)
}

// WaitState polls the entry until it is in state, or fails after timeout
// naming the state it was in.
func (c *Client) WaitState(ctx context.Context, id, state string, timeout time.Duration) (Cluster, error) {
	deadline := time.Now().Add(timeout)
	for {
		cl, err := c.Cluster(ctx, id)
		if err == nil && cl.State == state {
			return cl, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return cl, fmt.Errorf("cluster %s not %s within %s: %w", id, state, timeout, err)
			}
			return cl, fmt.Errorf("cluster %s not %s within %s: it is %s (%+v)", id, state, timeout, cl.State, cl.StateReason)
		}
		select {
		case <-ctx.Done():
			return cl, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
