package daemon_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/internal/fakeecp"
)

// TestTickReadsTheLicenceOnce: the enforcer and the collector share one
// read of EMQX's licence per tick (it used to be read by both, twice a
// tick). Counted at EMQX, with the enforcer holding a desired limit so it
// reads the licence every tick.
func TestTickReadsTheLicenceOnce(t *testing.T) {
	emqx := startEMQX(t)
	target, err := url.Parse(emqx.URL)
	if err != nil {
		t.Fatal(err)
	}
	// GET /nodes opens every collection, once.
	var licence, nodes atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method != http.MethodGet:
		case r.URL.Path == "/api/v5/license":
			licence.Add(1)
		case r.URL.Path == "/api/v5/nodes":
			nodes.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	ecp := fakeecp.Start(t)
	ecp.IssueToken("tok")
	h := startDaemon(t, t.TempDir())
	if code, _, e := h.cli(registerArgs(ecp.URL, "tok", counting.URL, "public")...); code != 0 {
		t.Fatalf("register: %s", e)
	}
	// After the registration's own enforcement, count over 6 ticks.
	eventually(t, 10*time.Second, "2 collections", func() bool { return nodes.Load() >= 2 })
	l0, n0 := licence.Load(), nodes.Load()
	eventually(t, 20*time.Second, "6 more collections", func() bool { return nodes.Load() >= n0+6 })
	h.stop()
	// One read per tick, and one more for a tick that had read the
	// licence but not yet the nodes when counting began.
	if got, ticks := licence.Load()-l0, nodes.Load()-n0; got > ticks+1 {
		t.Fatalf("GET /api/v5/license %d times in %d collections; want one per collection", got, ticks)
	}
}
