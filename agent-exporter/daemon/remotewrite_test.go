package daemon_test

import (
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
)

// TestCollectionsArePushed: once registered, every collection is also
// pushed by remote write with the agent's credential (the fake ecp, like
// an ecp without a backend, answers that it stores nothing).
func TestCollectionsArePushed(t *testing.T) {
	emqx := startEMQX(t)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir())
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", emqx.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	eventually(t, 5*time.Second, "a remote-write push", func() bool { return ecp.Writes() > 0 })
}
