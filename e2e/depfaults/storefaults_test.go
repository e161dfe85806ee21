package depfaults

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// ecpShardQueue is ecp's remote-write queue per shard
// (remotewrite.DefaultQueueSize): one agent's pushes fill one shard, so
// back-pressure reaches the agent once an outage outlasts that many
// pushes.
const ecpShardQueue = 64

// TestPrometheusDown stops the remote-write backend under a pushing agent.
// ecp's forwarding queue stays within its capacity and, once full, answers
// the agent 429 with Retry-After; the agent keeps its newest collections
// (agentPushQueue) and counts what it dropped. When Prometheus returns the
// queues drain, and Prometheus holds a sample for every collection of the
// outage the buffers could keep.
func TestPrometheusDown(t *testing.T) {
	t.Parallel() // see TestMain
	down := outage(20*time.Second, 5*time.Minute)
	s := newStack(t, deps{prom: true})
	a := s.manage()
	ecpMetrics := s.base + "/metrics"
	eventually(t, 30*time.Second, "samples forwarded to Prometheus", func() (bool, string) {
		n := mustMetric(t, ecpMetrics, "ecp_remote_write_samples_forwarded_total")
		return n > 0, fmt.Sprint(n)
	})
	capacity := mustMetric(t, ecpMetrics, "ecp_remote_write_queue_capacity")
	throttled0 := mustMetric(t, ecpMetrics, "ecp_remote_write_requests_throttled_total")
	ecpDropped0 := mustMetric(t, ecpMetrics, "ecp_remote_write_samples_dropped_total")
	agentDropped0 := mustMetric(t, a.metrics, "agent_exporter_remote_write_samples_dropped_total")
	rssECP0, rssAgent0 := rssMiB(t, s.ecp), rssMiB(t, a.proc)

	if err := s.prom.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var maxECPQueue, maxAgentQueue float64
	during(down, time.Second, func() {
		maxECPQueue = max(maxECPQueue, mustMetric(t, ecpMetrics, "ecp_remote_write_queue_length"))
		maxAgentQueue = max(maxAgentQueue, mustMetric(t, a.metrics, "agent_exporter_remote_write_queue_length"))
	})
	rssECP1, rssAgent1 := rssMiB(t, s.ecp), rssMiB(t, a.proc)
	throttled := mustMetric(t, ecpMetrics, "ecp_remote_write_requests_throttled_total") - throttled0
	if maxECPQueue > capacity || maxAgentQueue > agentPushQueue {
		t.Errorf("queues grew past their bounds: ecp %v (capacity %v), agent %v (bound %d)", maxECPQueue, capacity, maxAgentQueue, agentPushQueue)
	}
	if down > (ecpShardQueue+10)*interval && throttled == 0 {
		t.Errorf("Prometheus down %s, longer than ecp's queue holds, and no push was answered 429", down)
	}

	s.startProm()
	back := time.Now()
	// After a long outage the agent's backoff has grown to its maximum:
	// Retry-After is only its floor.
	eventually(t, agentBackoffMax+30*time.Second, "queues drained", func() (bool, string) {
		q, aq := mustMetric(t, ecpMetrics, "ecp_remote_write_queue_length"), mustMetric(t, a.metrics, "agent_exporter_remote_write_queue_length")
		return q == 0 && aq == 0, fmt.Sprintf("ecp %v, agent %v", q, aq)
	})
	drained := time.Since(back)
	ecpDropped := mustMetric(t, ecpMetrics, "ecp_remote_write_samples_dropped_total") - ecpDropped0
	agentDropped := mustMetric(t, a.metrics, "agent_exporter_remote_write_samples_dropped_total") - agentDropped0
	if ecpDropped != 0 {
		t.Errorf("ecp dropped %v samples it had accepted", ecpDropped)
	}
	// Collections of the outage that reached Prometheus after it returned:
	// emqx_up is pushed with every collection.
	window := time.Since(stopped) - drained
	got := promCount(t, "http://"+s.addrs["prom"], fmt.Sprintf("count_over_time(emqx_up{cluster=%q}[%ds])", a.id, int(window.Seconds())), stopped.Add(window))
	want := int(window / interval)
	if agentDropped == 0 && got < want-3 {
		t.Errorf("Prometheus holds %d samples of emqx_up for the %s outage, want about %d, and nothing was counted as dropped", got, window.Round(time.Second), want)
	}
	t.Logf("Prometheus down %s: ecp dropped %.0f samples, agent dropped %.0f (it keeps its newest %d collections); Prometheus holds %d of ~%d collections of the outage; "+
		"ecp queue peaked at %.0f of %.0f requests, %.0f pushes answered 429; agent queue peaked at %.0f; drained %s after Prometheus returned; "+
		"RSS ecp %.1f→%.1f MiB, agent %.1f→%.1f MiB",
		down, ecpDropped, agentDropped, agentPushQueue, got, want, maxECPQueue, capacity, throttled, maxAgentQueue, drained.Round(time.Second),
		rssECP0, rssECP1, rssAgent0, rssAgent1)
}

// promCount evaluates an instant query returning one number at ts.
func promCount(t *testing.T, promURL, query string, ts time.Time) int {
	t.Helper()
	u := fmt.Sprintf("%s/api/v1/query?query=%s&time=%d", promURL, url.QueryEscape(query), ts.Unix())
	resp, err := http.Get(u) //nolint:gosec,noctx // loopback test URL
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Data.Result) == 0 {
		return 0
	}
	var n int
	_, _ = fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &n)
	return n
}

// TestVictoriaLogsDown stops the log store while EMQX keeps logging. ecp
// answers the agent's batches 503 with Retry-After instead of holding them,
// the agent holds at most its in-flight batches and reads the rest from
// EMQX's files later, and when the store returns every line is stored
// exactly once.
func TestVictoriaLogsDown(t *testing.T) {
	t.Parallel() // see TestMain
	down := outage(20*time.Second, 2*time.Minute)
	s := newStack(t, deps{vl: true})
	a := s.manage()
	ecpMetrics := s.base + "/metrics"
	post(t, s.simURL+"/sim/logs/write", `{"lines":200}`)
	eventually(t, 30*time.Second, "the first lines stored", func() (bool, string) {
		n, err := s.logCount()
		return err == nil && n >= 200, fmt.Sprint(n, err)
	})
	refused0 := mustMetric(t, ecpMetrics, "ecp_log_batches_received_total", `outcome="backpressure"`)
	retried0 := mustMetric(t, a.metrics, "agent_exporter_log_batches_retried_total")
	rssECP0, rssAgent0 := rssMiB(t, s.ecp), rssMiB(t, a.proc)

	if err := s.vl.Stop(); err != nil {
		t.Fatal(err)
	}
	var maxBehind float64
	during(down, 2*time.Second, func() {
		post(t, s.simURL+"/sim/logs/write", `{"lines":100}`)
		maxBehind = max(maxBehind, mustMetric(t, a.metrics, "agent_exporter_log_bytes_behind"))
	})
	rssECP1, rssAgent1 := rssMiB(t, s.ecp), rssMiB(t, a.proc)
	refused := mustMetric(t, ecpMetrics, "ecp_log_batches_received_total", `outcome="backpressure"`) - refused0
	retried := mustMetric(t, a.metrics, "agent_exporter_log_batches_retried_total") - retried0
	if retried == 0 {
		t.Error("the agent retried no batch while the log store was down")
	}

	s.startVL()
	back := time.Now()
	written := s.simState().LogLines
	eventually(t, 90*time.Second, "every line stored", func() (bool, string) {
		n, err := s.logCount()
		return err == nil && n >= written, fmt.Sprintf("%d of %d (%v)", n, written, err)
	})
	caughtUp := time.Since(back)
	time.Sleep(2 * interval)
	stored, err := s.logCount()
	if err != nil {
		t.Fatal(err)
	}
	if stored != written {
		t.Errorf("the store holds %d lines, EMQX wrote %d", stored, written)
	}
	lost := mustMetric(t, a.metrics, "agent_exporter_log_bytes_lost_total")
	t.Logf("VictoriaLogs down %s: lost %d of %d lines (%.0f bytes overwritten by EMQX before shipping), %d stored twice; ecp answered %.0f batches 503, the agent retried %.0f; "+
		"at most %.0f bytes behind; caught up %s after the store returned; RSS ecp %.1f→%.1f MiB, agent %.1f→%.1f MiB",
		down, max(0, written-stored), written, lost, max(0, stored-written), refused, retried, maxBehind, caughtUp.Round(time.Second),
		rssECP0, rssECP1, rssAgent0, rssAgent1)
}
