package ecpclient_test

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/secret"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func client(t *testing.T, url string, cred secret.String) *ecpclient.Client {
	t.Helper()
	hc := transport.New(transport.Options{})
	t.Cleanup(hc.CloseIdleConnections)
	c, err := ecpclient.New(url, cred, hc)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRegisterErrors(t *testing.T) {
	ecp := fakeecp.Start(t)
	ecp.IssueToken("good")
	ecp.ExpireToken("old")
	tests := []struct {
		name, token string
		wantCode    string
	}{
		{"valid", "good", ""},
		{"used", "good", agentproto.CodeTokenInvalid},
		{"expired", "old", agentproto.CodeTokenExpired},
		{"unknown", "nope", agentproto.CodeTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := client(t, ecp.URL, "").Register(t.Context(), agentproto.RegisterRequest{Token: tc.token})
			var apiErr *ecpclient.APIError
			switch {
			case tc.wantCode == "" && (err != nil || resp.Credential == ""):
				t.Fatalf("register: %v %+v", err, resp)
			case tc.wantCode != "" && (!errors.As(err, &apiErr) || apiErr.Code != tc.wantCode):
				t.Fatalf("err = %v, want code %s", err, tc.wantCode)
			case tc.wantCode != "" && errors.Is(err, ecpclient.ErrCredentialRevoked):
				t.Fatalf("a token error must not read as a revoked credential: %v", err)
			}
		})
	}
}

func TestReportRevokedAndRateLimited(t *testing.T) {
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	reg, err := client(t, ecp.URL, "").Register(t.Context(), agentproto.RegisterRequest{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, ecp.URL, secret.String(reg.Credential))
	resp, err := c.Report(t.Context(), agentproto.ReportRequest{AgentVersion: "x"})
	if err != nil || resp.Desired.MaxConnections != 10 || resp.ReportIntervalSeconds != 1 {
		t.Fatalf("report: %v %+v", err, resp)
	}

	ecp.RateLimit(1, 7)
	_, err = c.Report(t.Context(), agentproto.ReportRequest{})
	if got := ecpclient.RetryAfter(err); got != 7*time.Second {
		t.Fatalf("Retry-After = %v (err %v), want 7s", got, err)
	}

	ecp.RevokeAll()
	_, err = c.Report(t.Context(), agentproto.ReportRequest{})
	if !errors.Is(err, ecpclient.ErrCredentialRevoked) {
		t.Fatalf("err = %v, want ErrCredentialRevoked", err)
	}
}

func TestDesiredLongPoll(t *testing.T) {
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	reg, err := client(t, ecp.URL, "").Register(t.Context(), agentproto.RegisterRequest{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	c := client(t, ecp.URL, secret.String(reg.Credential))

	// Nothing newer than what the agent holds: ecp answers 204 at timeout.
	polled, err := c.Desired(t.Context(), reg.Desired.Revision, 50*time.Millisecond)
	if err != nil || polled.Changed || polled.NextSend {
		t.Fatalf("idle poll: %+v err=%v", polled, err)
	}

	// A change while the poll waits comes back at once.
	done := make(chan agentproto.DesiredState, 1)
	go func() {
		polled, _ := c.Desired(t.Context(), reg.Desired.Revision, 10*time.Second)
		done <- polled.Desired
	}()
	ecp.SetMaxConnections(42)
	select {
	case d := <-done:
		if d.MaxConnections != 42 || d.Revision <= reg.Desired.Revision {
			t.Fatalf("desired = %+v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll did not return on change")
	}
}

func TestUnreachable(t *testing.T) {
	c := client(t, "http://127.0.0.1:1", "x")
	_, err := c.Report(t.Context(), agentproto.ReportRequest{})
	if err == nil || !transport.IsUnreachable(err) {
		t.Fatalf("err = %v, want unreachable", err)
	}
	var apiErr *ecpclient.APIError
	if errors.As(err, &apiErr) {
		t.Fatalf("transport error read as an API reply: %v", err)
	}
}
