package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agentproto/series"
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
	firesWhileNewestSampleInFlight(t, rules.CatalogueRuleAbnormal)
}

// TestRateAlertsFireWhileNewestSampleInFlight: the same for every kind
// that takes a rate() over the window. Each counter grows 5 an interval
// (150 a minute at 2 s, above the default 10) and the rule's match
// counter grew 100 an interval an hour before: every condition holds all
// along. Over two intervals rate() only ever saw one sample and none of
// them fired.
func TestRateAlertsFireWhileNewestSampleInFlight(t *testing.T) {
	firesWhileNewestSampleInFlight(t, rules.CatalogueRuleFailures, rules.CatalogueActionFailures,
		rules.CatalogueRuleRateDrop, rules.CatalogueConnectAuth, rules.CataloguePublishAuth, rules.CatalogueSubscribeAuth)
}

// inFlightCounter is a counter a kind under test reads, and whether it is
// a rule's (with an id label) or the cluster's.
type inFlightCounter struct {
	name    string
	perRule bool
}

// inFlightCounters is the counter of each kind under test.
var inFlightCounters = map[string]inFlightCounter{
	rules.CatalogueRuleAbnormal:   {series.RuleFailed, true},
	rules.CatalogueRuleFailures:   {series.RuleFailed, true},
	rules.CatalogueActionFailures: {series.RuleActionsFailed, true},
	rules.CatalogueRuleRateDrop:   {series.RuleMatched, true},
	rules.CatalogueConnectAuth:    {series.ConnectAuthFailures, false},
	rules.CataloguePublishAuth:    {series.PublishAuthFailures, false},
	rules.CatalogueSubscribeAuth:  {series.SubscribeAuthFailures, false},
}

// firesWhileNewestSampleInFlight switches the catalogue entries on at
// their default thresholds in Debian's Prometheus, pushes their counters
// growing with every sample stamped just before an evaluation and
// delivered half an interval after it, and fails unless every alert of
// the entries fires.
func firesWhileNewestSampleInFlight(t *testing.T, entries ...string) {
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
	on := map[string]rules.RuleParams{}
	var alerts []string
	for _, id := range entries {
		e, _ := rules.CatalogueEntry(id)
		var rp rules.RuleParams
		if e.Threshold != nil {
			rp.Threshold = e.Threshold.Default
		}
		on[id] = rp
		alerts = append(alerts, e.Alerts...)
	}
	f, err := rules.Project(rules.Params{Project: project, Interval: interval, TriggerCount: 1, RecoveryCount: 1,
		Severity: "critical", ExternalURL: "http://ecp.example.test", Clusters: []rules.Cluster{{ID: cluster, Name: cluster}},
		Rules: on})
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

	labels := func(name string, perRule bool) []prompb.Label {
		ls := []prompb.Label{{Name: "__name__", Value: name}, {Name: "cluster", Value: cluster}}
		if perRule {
			ls = append(ls, prompb.Label{Name: "id", Value: rule})
		}
		return append(ls, prompb.Label{Name: "project", Value: project})
	}
	if slices.Contains(entries, rules.CatalogueRuleRateDrop) {
		// The hour before: the rule matched 100 an interval, long
		// arrived. Pushed first, while the head is empty and takes
		// samples that old.
		hourAgo := time.Now().Add(-time.Hour)
		var samples []prompb.Sample
		for i := -30; i <= 60; i++ {
			samples = append(samples, prompb.Sample{Value: float64(100 * (i + 30)), Timestamp: hourAgo.Add(time.Duration(i) * interval).UnixMilli()})
		}
		pushSamples(t, promURL, prompb.TimeSeries{Labels: labels(series.RuleMatched, true), Samples: samples})
	}

	// The group's schedule, from its first evaluation.
	var first time.Time
	eventually(t, 30*time.Second, "the rule group evaluated", func() (bool, string) {
		g, _ := ruleGroup(t, promURL, project)
		first = g.LastEvaluation
		return first.Year() > 2000, "not yet"
	})
	// The counters the entries read, each once.
	var counters []inFlightCounter
	for _, id := range entries {
		if c := inFlightCounters[id]; !slices.Contains(counters, c) {
			counters = append(counters, c)
		}
	}
	var fired []string
	for k := 1; k <= 8; k++ {
		// Stamped just before the k-th evaluation after the first, and
		// delivered half an interval after it.
		eval := first.Add(time.Duration(k) * interval)
		time.Sleep(time.Until(eval.Add(inFlight - 100*time.Millisecond)))
		var ts []prompb.TimeSeries
		for _, c := range counters {
			ts = append(ts, prompb.TimeSeries{Labels: labels(c.name, c.perRule),
				Samples: []prompb.Sample{{Value: float64(5 * k), Timestamp: eval.Add(-100 * time.Millisecond).UnixMilli()}}})
		}
		pushSamples(t, promURL, ts...)
		if k < 4 {
			continue
		}
		// From the third sample on, every evaluation has two arrived
		// samples within three intervals, the later one higher.
		fired = promLabelValues(t, promURL, `ALERTS{alertstate="firing"}`, "alertname")
		if missing := slices.DeleteFunc(slices.Clone(alerts), func(a string) bool { return slices.Contains(fired, a) }); len(missing) == 0 {
			t.Logf("%s fired at sample %d", strings.Join(alerts, ", "), k)
			return
		}
	}
	var why strings.Builder
	for _, a := range alerts {
		if !slices.Contains(fired, a) {
			fmt.Fprintf(&why, "\n%s never fired; Prometheus rule group: %s", a, as.ruleGroupTimes(t, project, a))
		}
	}
	names := make([]string, len(counters))
	for i, c := range counters {
		names[i] = c.name
	}
	sel := fmt.Sprintf(`{__name__=~%q, project=%q}`, strings.Join(names, "|"), project)
	t.Fatalf("while every condition held at every collection:%s\nPrometheus %s[1m]: %s", why.String(), sel, promRaw(t, promURL, sel+"[1m]"))
}

// pushSamples remote-writes the series, as the gateway forwards an
// agent's push.
func pushSamples(t *testing.T, promURL string, ts ...prompb.TimeSeries) {
	t.Helper()
	raw, err := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
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
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("remote write of %d series: %s: %s", len(ts), resp.Status, body)
	}
}
