package simtest

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ecpio/ecp/emqx-sim/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartServesTheAPI(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Nodes = 2
	c := Start(t, opts)
	tok := c.Login(t, sim.DefaultUsername, sim.DefaultPassword)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, c.URL()+"/api/v5/nodes", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /nodes: %d", resp.StatusCode)
	}
	if err := c.StopNode("emqx@10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st.NodesRunning != 1 || st.NodesStopped != 1 {
		t.Fatalf("state after StopNode: %+v", st)
	}
}

// TestRunBackgroundStopsWithTheTest relies on goleak (TestMain) to prove
// the background goroutine ends with the test.
func TestRunBackgroundStopsWithTheTest(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.TickInterval = time.Millisecond
	opts.LogDir = t.TempDir()
	c := Start(t, opts)
	c.RunBackground(t)
	if st := c.State(); st.NodesRunning != 3 {
		t.Fatalf("state: %+v", st)
	}
}
