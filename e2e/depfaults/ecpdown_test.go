package depfaults

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Agent buffers, as agent-exporter's remotewrite and daemon packages
// document them (DefaultQueueSize, DefaultReportBuffer).
const (
	agentPushQueue   = 8
	agentReportQueue = 4
	// agentBackoffMax is the agent's default --ecp.backoff-max: the longest
	// an agent waits between reconnects, so the bound on catching up.
	agentBackoffMax = 2 * time.Minute
)

// TestECPDown stops ecp entirely while three agents run (one shipping
// logs): the agents keep collecting and serving /metrics, hold at most
// their documented buffers, and when ecp returns every one of them
// reconnects on its own jittered backoff, no cluster is marked abnormal,
// and every log line EMQX wrote during the outage is stored exactly once.
// It prints the reconnect curve (reports per second ecp received after it
// came back).
func TestECPDown(t *testing.T) {
	t.Parallel() // see TestMain
	down := outage(20*time.Second, 10*time.Minute)
	s := newStack(t, deps{prom: true, vl: true})
	agents := []agent{s.manage(), s.manage(), s.manage()}
	post(t, s.simURL+"/sim/logs/write", `{"lines":200}`)
	eventually(t, 30*time.Second, "the first lines stored", func() (bool, string) {
		n, err := s.logCount()
		return err == nil && n >= 200, fmt.Sprint(n, err)
	})
	rssECP, rssAgent := rssMiB(t, s.ecp), rssMiB(t, agents[0].proc)
	sumAgents := func(name string, labels ...string) float64 {
		var v float64
		for _, a := range agents {
			v += mustMetric(t, a.metrics, name, labels...)
		}
		return v
	}
	pushDropped0 := sumAgents("agent_exporter_remote_write_samples_dropped_total", `reason="queue_full"`)
	reportsDropped0 := sumAgents("agent_exporter_reports_dropped_total")

	if err := s.ecp.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var maxPush, maxReports float64
	var lastCollected float64
	during(down, 2*time.Second, func() {
		// EMQX keeps logging while ecp is away.
		post(t, s.simURL+"/sim/logs/write", `{"lines":50}`)
		for i, a := range agents {
			q, ok := metric(a.metrics, "agent_exporter_remote_write_queue_length")
			if !ok {
				t.Fatalf("agent %d stopped serving /metrics %s into the outage", i, time.Since(stopped).Round(time.Second))
			}
			maxPush = max(maxPush, q)
			maxReports = max(maxReports, mustMetric(t, a.metrics, "agent_exporter_reports_buffered"))
		}
		lastCollected = mustMetric(t, agents[0].metrics, "emqx_last_collection_timestamp_seconds")
	})
	rssAgentDown := rssMiB(t, agents[0].proc)
	if behind := time.Since(time.Unix(int64(lastCollected), 0)); behind > 5*interval {
		t.Errorf("the agent stopped collecting while ecp was down: last collection %s before the outage ended", behind.Round(time.Second))
	}
	if maxPush > agentPushQueue || maxReports > agentReportQueue {
		t.Errorf("agent buffers grew past their bounds: %v pushes (bound %d), %v reports (bound %d)", maxPush, agentPushQueue, maxReports, agentReportQueue)
	}

	s.startECP()
	back := time.Now()
	// The reconnect curve: reports ecp received in each second after it
	// came back, until every agent has reported and drained its buffers.
	ecpMetrics := s.base + "/metrics"
	var curve []string
	var prev float64
	var peak float64
	caughtUp := time.Duration(0)
	var behind []string // the agents not caught up at the last look
	for caughtUp == 0 && time.Since(back) < agentBackoffMax+30*time.Second {
		time.Sleep(time.Second)
		n := mustMetric(t, ecpMetrics, "ecp_agent_reports_total")
		curve = append(curve, fmt.Sprint(n-prev))
		peak = max(peak, n-prev)
		prev = n
		done := true
		behind = behind[:0]
		for _, a := range agents {
			cl, err := s.api.Cluster(t.Context(), a.id)
			if err != nil || cl.State != "running" {
				t.Fatalf("cluster %s after ecp returned: %s %+v (%v)", a.id, cl.State, cl.StateReason, err)
			}
			buffered := mustMetric(t, a.metrics, "agent_exporter_reports_buffered")
			queued := mustMetric(t, a.metrics, "agent_exporter_remote_write_queue_length")
			if !cl.LastReportAt.After(back) || buffered != 0 || queued != 0 {
				done = false
				behind = append(behind, fmt.Sprintf("%s: last report %s, %v reports buffered, %v pushes queued",
					a.id, cl.LastReportAt.Format(time.TimeOnly), buffered, queued))
			}
		}
		if done {
			caughtUp = time.Since(back)
		}
	}
	if caughtUp == 0 {
		t.Fatalf("the agents had not caught up %s after ecp returned (%s); reports per second: %s",
			time.Since(back).Round(time.Second), strings.Join(behind, "; "), strings.Join(curve, " "))
	}
	throttled := mustMetric(t, ecpMetrics, "ecp_agent_requests_throttled_total")

	// Every line EMQX wrote reaches the store, once.
	written := s.simState().LogLines
	eventually(t, 60*time.Second, "every log line stored", func() (bool, string) {
		n, err := s.logCount()
		return err == nil && n >= written, fmt.Sprintf("%d of %d (%v)", n, written, err)
	})
	time.Sleep(2 * interval)
	stored, err := s.logCount()
	if err != nil {
		t.Fatal(err)
	}
	if stored != written {
		t.Errorf("log store holds %d lines, EMQX wrote %d", stored, written)
	}
	pushDropped := sumAgents("agent_exporter_remote_write_samples_dropped_total", `reason="queue_full"`) - pushDropped0
	reportsDropped := sumAgents("agent_exporter_reports_dropped_total") - reportsDropped0
	if forwarded := mustMetric(t, ecpMetrics, "ecp_remote_write_samples_forwarded_total"); forwarded == 0 {
		t.Error("no sample forwarded to Prometheus after ecp returned")
	}
	t.Logf("reconnect curve (reports/s ecp received per second after it returned, %d agents at %s): %s", len(agents), interval, strings.Join(curve, " "))
	t.Logf("ecp down %s: lost %d log lines of %d; remote write kept the newest %d collections per agent and dropped %.0f older samples (3 agents); "+
		"%.0f reports dropped (buffer %d per agent); every agent back and drained %s after ecp returned, peak %.0f reports/s, %.0f throttled; "+
		"agent RSS %.1f→%.1f MiB during the outage, ecp RSS %.1f MiB before",
		down, written-stored, written, agentPushQueue, pushDropped, reportsDropped, agentReportQueue,
		caughtUp.Round(time.Second), peak, throttled, rssAgent, rssAgentDown, rssECP)
}
