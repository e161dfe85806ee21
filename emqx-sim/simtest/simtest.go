// Package simtest runs an emqx-sim cluster inside a test on a loopback
// httptest server, so tests of the agent and ecp can talk to "EMQX" over
// real HTTP and drive its faults with the sim methods.
package simtest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ecpio/ecp/emqx-sim/sim"
)

// Cluster is a running simulator. The embedded *sim.Sim gives the fault
// methods (FailConnector, StopNode, ResetLicense, SetAPIFault, ...) and Step.
type Cluster struct {
	*sim.Sim
	srv *httptest.Server
}

// Start builds a simulator from opts (zero fields take sim.DefaultOptions)
// and serves it on 127.0.0.1 until the test ends. The model only moves when
// the test calls Step, or after RunBackground.
func Start(t testing.TB, opts sim.Options) *Cluster {
	t.Helper()
	s, err := sim.New(opts)
	if err != nil {
		t.Fatalf("simtest: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	c := &Cluster{Sim: s, srv: srv}
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("simtest: stop: %v", err)
		}
	})
	return c
}

// URL is the base URL of the dashboard listener, e.g. http://127.0.0.1:41234
// (the API is under URL()+"/api/v5").
func (c *Cluster) URL() string { return c.srv.URL }

// RunBackground starts the simulator's background life (Run) until the
// test ends.
func (c *Cluster) RunBackground(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// Login logs in with username and password and returns the bearer token,
// failing the test on any error.
func (c *Cluster) Login(t testing.TB, username, password string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, c.URL()+"/api/v5/login", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("simtest: login: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("simtest: login: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		t.Fatalf("simtest: login as %q: status %d, err %v", username, resp.StatusCode, err)
	}
	return out.Token
}
