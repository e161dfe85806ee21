package remotewrite

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

// TestPushAtFleetScale pushes collections of a simulated cluster with
// 1,000 rules and 1,000 connectors under the default cap: the push stays
// under it, a failed connector is in it, and after healing its healthy
// sample is.
func TestPushAtFleetScale(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Nodes, opts.Rules, opts.Connectors = 3, 1000, 1000
	c := simtest.Start(t, opts)
	c.Step()
	hc := transport.New(transport.Options{Timeout: 10 * time.Second})
	t.Cleanup(hc.CloseIdleConnections)
	api, err := emqx.New(emqx.Config{APIURL: c.URL(), Username: sim.DefaultUsername, Password: sim.DefaultPassword, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_764_000_000, 0)
	col := collector.New(func() time.Time { return now })
	col.SetAPI(api)
	// As the daemon does: the exporter gathers the pushed series itself.
	s, err := New(Options{Gatherer: collector.NewExporter(col), MaxSeries: DefaultMaxSeries, QueueSize: 100}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	target := &Target{ECPURL: "http://ecp.test"}
	// collect makes one collection 15 s after the previous, pushes it and
	// returns the push as "name{id,status}" → samples.
	collect := func() map[string]float64 {
		t.Helper()
		now = now.Add(15 * time.Second)
		c.Step()
		snap := col.Collect(t.Context())
		if err := s.Push(target, snap.CollectedAt); err != nil {
			t.Fatal(err)
		}
		req := decode(t, s.queue[len(s.queue)-1].body)
		if n := len(req.Timeseries); n > DefaultMaxSeries {
			t.Fatalf("pushed %d series, over the cap of %d", n, DefaultMaxSeries)
		}
		out := map[string]float64{}
		for k, v := range pushed(req.Timeseries) {
			out[k] = v[len(v)-1].Value
		}
		return out
	}
	got := collect()
	if got["emqx_up"] != 1 || testutil.ToFloat64(s.capped) == 0 {
		t.Fatalf("emqx_up %v, capped %v: want 1 and series left out", got["emqx_up"], testutil.ToFloat64(s.capped))
	}
	if n, capped := testutil.ToFloat64(s.pushed), testutil.ToFloat64(s.capped); n+capped < 12_000 {
		t.Fatalf("pushed %v + capped %v series: the simulator should give over 12,000", n, capped)
	}
	// The last connector by id: the one the cap leaves out first.
	conns := col.Latest().Connectors
	id := conns[len(conns)-1].ID()
	status := "emqx_connector_status{" + id + ",connected}"
	if _, ok := got[status]; ok {
		t.Fatalf("healthy %s pushed; choose a connector the cap leaves out", id)
	}
	if err := c.FailConnector(id, "econnrefused"); err != nil {
		t.Fatal(err)
	}
	got = collect()
	if v, ok := got[status]; !ok || v != 0 {
		t.Fatalf("failed connector %s: pushed %v (%v), want connected=0", id, v, ok)
	}
	if err := c.HealConnector(id); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got = collect()
		if v, ok := got[status]; !ok || v != 1 {
			t.Fatalf("healed connector %s: pushed %v (%v), want connected=1", id, v, ok)
		}
	}
}
