package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/internal/testbed"
	"github.com/ecpio/ecp/rules"
)

// TestRuleAbnormalFiresWhileNewestSampleInFlight holds the window of the
// counter-based rules to what remote write delivers: a sample reaches
// Prometheus some time after its timestamp (the agent's push, ecp's
// batching, a busy host), and agent and rule group tick at the same
// interval, so an evaluation that falls between a sample's timestamp and
// its arrival does so at every interval. Here each sample is stamped just
// before an evaluation of Debian's Prometheus and arrives half an interval
// later, with the rule counter growing at every one: the rule is failing
// all along and EMQXRuleAbnormal must fire. Over two intervals an
// evaluation only ever saw one sample, so increase() had nothing to say
// and the alert never fired (the journey's "No active alerts" on a loaded
// CI host).
func TestRuleAbnormalFiresWhileNewestSampleInFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs Prometheus")
	}
	promBin := tool(t, "prometheus", "bash scripts/install-prometheus.sh")
	const (
		interval      = 2 * time.Second
		project       = "p1"
		cluster, rule = "c1", "rule_1"
	)
	// How long after its timestamp a sample arrives: within an interval.
	const inFlight = interval / 2
	s := &stack{t: t, dir: t.TempDir()}
	rulesDir := filepath.Join(s.dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := rules.Project(rules.Params{Project: project, Interval: interval, TriggerCount: 1, RecoveryCount: 1,
		Severity: "critical", ExternalURL: "http://ecp.example.test", Clusters: []rules.Cluster{{ID: cluster, Name: cluster}},
		Rules: map[string]rules.RuleParams{rules.CatalogueRuleAbnormal: {}}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := rules.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, project+".rules.yml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	promURL := "http://" + promAddr
	promCfg := filepath.Join(s.dir, "prometheus.yml")
	if err := os.WriteFile(promCfg, fmt.Appendf(nil, "rule_files: [%q]\n", filepath.Join(rulesDir, "*.rules.yml")), 0o644); err != nil {
		t.Fatal(err)
	}
	prom := s.start("prometheus", promBin, []string{"--config.file=" + promCfg, "--storage.tsdb.path=" + filepath.Join(s.dir, "prom-data"),
		"--web.listen-address=" + promAddr, "--web.enable-remote-write-receiver"}, nil)
	if err := prom.WaitReady(t.Context(), promURL+"/-/ready", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	as := alertStack{stack: s, promURL: promURL}

	// The group's schedule, from its first evaluation.
	var first time.Time
	eventually(t, 30*time.Second, "the rule group evaluated", func() (bool, string) {
		g, _ := ruleGroup(t, promURL, project)
		first = g.LastEvaluation
		return first.Year() > 2000, "not yet"
	})
	series := fmt.Sprintf(`{__name__="emqx_rule_failed_total", project=%q, cluster=%q, id=%q}`, project, cluster, rule)
	for k := 1; k <= 8; k++ {
		// Stamped just before the k-th evaluation after the first, and
		// delivered half an interval after it.
		eval := first.Add(time.Duration(k) * interval)
		time.Sleep(time.Until(eval.Add(inFlight - 100*time.Millisecond)))
		pushCounter(t, promURL, project, cluster, rule, eval.Add(-100*time.Millisecond), float64(5*k))
		if k < 4 {
			continue
		}
		// From the third sample on, every evaluation has two arrived
		// samples within three intervals, the later one higher.
		if got := promLabelValues(t, promURL, `ALERTS{alertname="EMQXRuleAbnormal", alertstate="firing"}`, "id"); len(got) == 1 {
			t.Logf("EMQXRuleAbnormal fired at sample %d", k)
			return
		}
	}
	t.Fatalf("EMQXRuleAbnormal never fired while the rule failed at every collection;%s\nPrometheus %s[1m]: %s",
		"\nPrometheus rule group: "+as.ruleGroupTimes(t, project, "EMQXRuleAbnormal"), series, promRaw(t, promURL, series+"[1m]"))
}

// pushCounter remote-writes one sample of the rule's failure counter,
// stamped at, as the gateway forwards an agent's push.
func pushCounter(t *testing.T, promURL, project, cluster, rule string, at time.Time, value float64) {
	t.Helper()
	req := prompb.WriteRequest{Timeseries: []prompb.TimeSeries{{
		Labels: []prompb.Label{{Name: "__name__", Value: "emqx_rule_failed_total"}, {Name: "cluster", Value: cluster},
			{Name: "id", Value: rule}, {Name: "project", Value: project}},
		Samples: []prompb.Sample{{Value: value, Timestamp: at.UnixMilli()}},
	}}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hreq, err := http.NewRequestWithContext(t.Context(), http.MethodPost, promURL+"/api/v1/write", bytes.NewReader(s2.EncodeSnappy(nil, raw)))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Content-Encoding", "snappy")
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("remote write of the sample at %s: %s", at.Format("15:04:05.000"), resp.Status)
	}
}
