// Package fleetreport is the machine-readable summary of one bench/fleet
// run: bench/fleet writes it (--summary.json) and bench/fleet/sweep reads
// it back to tabulate and chart several runs, so no program scrapes the
// other's text output. Field names are the JSON and CSV column names.
package fleetreport

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
)

// Summary is what one run measured. Counts named *_total cover the whole
// run (from registration to the end); the others cover the measured window.
type Summary struct {
	Agents          int     `json:"agents"`
	Projects        int     `json:"projects"`
	IntervalSeconds float64 `json:"interval_seconds"`
	WindowSeconds   float64 `json:"window_seconds"`
	// RemoteWriteSeries is the series each agent pushes per interval.
	RemoteWriteSeries int `json:"rw_series"`
	// RemoteWriteBackend is "sink" or "prometheus".
	RemoteWriteBackend string `json:"rw_backend"`
	// LogLines is the lines each agent ships per interval.
	LogLines int `json:"log_lines"`

	ECPCPUPercent   float64 `json:"ecp_cpu_percent"`
	RSSMiB          int64   `json:"rss_mib"`
	PeakRSSMiB      int64   `json:"peak_rss_mib"`
	Reports         int     `json:"reports"`
	ReportP50Millis float64 `json:"report_p50_ms"`
	ReportP99Millis float64 `json:"report_p99_ms"`
	// TooMany counts reports and pushes answered 429.
	TooMany       int   `json:"http_429s"`
	Errors        int   `json:"errors"`
	EtcdRevisions int64 `json:"etcd_revisions"`
	// EtcdDBMiB is etcd's database size at the window's end (the largest
	// member's), EtcdDBInUseMiB the part of it in use.
	EtcdDBMiB          float64 `json:"etcd_db_mib"`
	EtcdDBInUseMiB     float64 `json:"etcd_db_in_use_mib"`
	RevisionsPerReport float64 `json:"revisions_per_report"`
	RegisterRetries    int64   `json:"register_429_retries"`

	// SamplesPerSecond is the samples ecp's gateway accepted in the window.
	SamplesPerSecond float64 `json:"rw_samples_per_s"`
	// SamplesAccepted, SamplesRefused: samples in pushes answered 2xx, and
	// in pushes refused with 429 or 503, over the run.
	SamplesAccepted int64 `json:"rw_samples_accepted_total"`
	SamplesRefused  int64 `json:"rw_samples_refused_total"`
	// SamplesHeld is what the backend holds at the end of the run; -1
	// when not counted.
	SamplesHeld int64 `json:"rw_samples_held_total"`

	// LinesPerSecond is the log lines ecp acknowledged in the window.
	LinesPerSecond float64 `json:"log_lines_per_s"`
	// LinesAccepted, LinesRefused: lines in batches acknowledged, and in
	// batches refused with 429 or 503 (kept and sent again), over the run.
	LinesAccepted int64 `json:"log_lines_accepted_total"`
	LinesRefused  int64 `json:"log_lines_refused_total"`
	// LinesPending are lines the agents still held unacknowledged at the end.
	LinesPending int64 `json:"log_lines_pending_total"`
	// LinesHeld is what VictoriaLogs holds at the end; -1 when not counted.
	LinesHeld int64 `json:"log_lines_held_total"`

	// Dropped is what ecp counted as accepted and not stored, by counter
	// (ecp_remote_write_samples_dropped_total{reason=…},
	// ecp_log_lines_rejected_total); empty when nothing was.
	Dropped map[string]float64 `json:"ecp_dropped"`

	Silenced                int     `json:"silenced"`
	Detected                int     `json:"detected"`
	SilentToAbnormalMinSecs float64 `json:"silent_to_abnormal_min_s"`
	SilentToAbnormalMaxSecs float64 `json:"silent_to_abnormal_max_s"`
	OtherAbnormal           int     `json:"other_abnormal"`

	// LoadProcesses is how many processes drove the agents (--agents.processes).
	LoadProcesses int `json:"load_processes"`
	// Replicas is how many `ecp serve` ran; EtcdMembers the external etcd
	// cluster's size (0: ecp's embedded etcd).
	Replicas    int `json:"replicas"`
	EtcdMembers int `json:"etcd_members"`
	// NoFile is the open-file limit ecp ran under (0: the benchmark's own).
	NoFile int `json:"ecp_nofile"`
	// Unavailable counts reports, pushes and log batches answered 503.
	Unavailable int `json:"http_503s"`
	// ServedWindow counts the agents with a report answered in the window,
	// ServedEver those with one answered at all.
	ServedWindow int `json:"agents_served_window"`
	ServedEver   int `json:"agents_served_total"`
	// ConnectionsRefused is ecp_http_connections_refused_total's growth in
	// the window (summed over the replicas); ConnectionsRefusedTotal its
	// value at the end.
	ConnectionsRefused      int64 `json:"connections_refused"`
	ConnectionsRefusedTotal int64 `json:"connections_refused_total"`
	// ECPExited says a replica exited during the run.
	ECPExited bool `json:"ecp_exited"`
	// ECPFDs is the descriptors the replicas held at the window's end.
	ECPFDs int `json:"ecp_fds"`
	// EtcdCPUPercent and EtcdRSSMiB sum the external etcd's members (ECP*
	// and RSSMiB sum the replicas).
	EtcdCPUPercent float64 `json:"etcd_cpu_percent"`
	EtcdRSSMiB     int64   `json:"etcd_rss_mib"`
	// PerAgent is the deployment's cost divided by the fleet.
	PerAgent PerAgent `json:"per_agent"`
	// Processes is each replica's and etcd member's cost.
	Processes []Process `json:"processes"`
}

// PerAgent is what one agent costs the deployment, the figures
// docs/scaling.md projects from.
type PerAgent struct {
	// CPUMillicores is thousandths of a core, replicas and etcd together.
	CPUMillicores float64 `json:"cpu_millicores"`
	// RSSKiB is resident memory, replicas and etcd together.
	RSSKiB float64 `json:"rss_kib"`
	// FDs is the descriptors the replicas hold.
	FDs float64 `json:"fds"`
}

// Process is one replica's or etcd member's cost over the window.
type Process struct {
	Name       string  `json:"name"`
	Etcd       bool    `json:"etcd"`
	CPUPercent float64 `json:"cpu_percent"`
	RSSMiB     int64   `json:"rss_mib"`
	PeakRSSMiB int64   `json:"peak_rss_mib"`
	FDs        int     `json:"fds"`
}

// Variant names the load apart from the fleet size, so that runs of one
// sweep share a line on the chart.
func (s Summary) Variant() string {
	rw := "remote write off"
	if s.RemoteWriteSeries > 0 {
		rw = fmt.Sprintf("%d series/agent to %s", s.RemoteWriteSeries, s.RemoteWriteBackend)
	}
	if s.LogLines > 0 {
		rw = fmt.Sprintf("%s, %d log lines/agent", rw, s.LogLines)
	}
	if s.Replicas > 1 {
		rw = fmt.Sprintf("%s, %d replicas on %d etcd members", rw, s.Replicas, s.EtcdMembers)
	}
	return rw
}

// WriteFile writes s as indented JSON to path.
func WriteFile(path string, s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil { //nolint:gosec // a benchmark's figures, no secret.
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

// ReadFile reads a summary WriteFile wrote.
func ReadFile(path string) (Summary, error) {
	var s Summary
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("read summary: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("decode summary %s: %w", path, err)
	}
	return s, nil
}

// WriteCSV writes one header row of the JSON names and one row per summary.
func WriteCSV(w io.Writer, sums []Summary) error {
	cw := csv.NewWriter(w)
	t := reflect.TypeFor[Summary]()
	header := make([]string, t.NumField())
	for i := range header {
		header[i] = t.Field(i).Tag.Get("json")
	}
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	for _, s := range sums {
		v := reflect.ValueOf(s)
		row := make([]string, v.NumField())
		for i := range row {
			switch f := v.Field(i); f.Kind() {
			case reflect.Float64:
				row[i] = strconv.FormatFloat(f.Float(), 'f', -1, 64)
			case reflect.Map, reflect.Slice, reflect.Struct:
				b, err := json.Marshal(f.Interface())
				if err != nil {
					return fmt.Errorf("write csv: %w", err)
				}
				row[i] = string(b)
			default:
				row[i] = fmt.Sprint(f.Interface())
			}
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}
