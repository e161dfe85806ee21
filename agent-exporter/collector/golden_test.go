package collector_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/transport"
	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/emqx-sim/simtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGoldenMetrics scrapes the exporter after one collection from the
// simulator with a fixed seed and clock, and compares the whole exposition
// with testdata/metrics.golden.prom (regenerate with -update).
func TestGoldenMetrics(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Seed = 7
	opts.Nodes, opts.Rules, opts.Connectors = 3, 5, 4
	opts.Now = fixedNow
	c := simtest.Start(t, opts)
	c.Step()
	if err := c.FailConnector(firstConnector(t, c.URL()), "econnrefused"); err != nil {
		t.Fatal(err)
	}
	if err := c.StopNode("emqx@10.0.0.3"); err != nil {
		t.Fatal(err)
	}
	// One of EMQX's own alarms, for the "EMQX alert push" rule
	// (rules/testdata/EMQXAlarm.golden.test.yml reads these series).
	if err := c.RaiseAlarm("emqx@10.0.0.2", "high_cpu_usage", "", nil); err != nil {
		t.Fatal(err)
	}
	// An authenticator enabled but not connected on one node, for the
	// authnResource rule (rules' TestAlertsFireOnGoldenSeries).
	if err := c.FailAuthBackend(false, "password_based:built_in_database", "emqx@10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	c.Step()

	col := collector.New(fixedNow)
	col.SetAPI(client(t, c.URL()))
	snap := col.Collect(t.Context())
	for _, r := range snap.Results {
		if r.Err != nil {
			t.Fatalf("sub-collector %s: %v", r.Name, r.Err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(collector.NewExporter(col))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	enc := expfmt.NewEncoder(&got, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	golden := filepath.Join("testdata", "metrics.golden.prom")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("/metrics differs from %s (go test -update to accept):\n%s", golden, got.String())
	}
}

func client(t *testing.T, url string) *emqx.Client { return benchClient(t, url) }

func benchClient(t testing.TB, url string) *emqx.Client {
	t.Helper()
	hc := transport.New(transport.Options{Timeout: 5 * time.Second})
	t.Cleanup(hc.CloseIdleConnections)
	c, err := emqx.New(emqx.Config{APIURL: url, Username: sim.DefaultUsername, Password: sim.DefaultPassword, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func firstConnector(t *testing.T, url string) string {
	t.Helper()
	list, err := client(t, url).Connectors(t.Context())
	if err != nil || len(list) == 0 {
		t.Fatalf("connectors: %v %d", err, len(list))
	}
	return list[0].ID()
}
