package main

import (
	"time"

	"github.com/ecpio/ecp/bench/internal/fleetreport"
)

// record is the summary in its machine-readable form (--summary.json).
func (s summary) record() fleetreport.Summary {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	window := max(s.window.Seconds(), 1e-9)
	procs := make([]fleetreport.Process, len(s.costs))
	for i, c := range s.costs {
		procs[i] = fleetreport.Process{Name: c.name, Etcd: c.etcd, CPUPercent: 100 * c.cpu, RSSMiB: c.rssMiB, PeakRSSMiB: c.hwmMiB, FDs: c.fds}
	}
	return fleetreport.Summary{
		Agents: s.cfg.agents, Projects: s.cfg.projects, IntervalSeconds: s.cfg.interval.Seconds(), WindowSeconds: s.window.Seconds(),
		RemoteWriteSeries: s.cfg.series, RemoteWriteBackend: s.cfg.backend, LogLines: s.cfg.logLines,
		ECPCPUPercent: 100 * s.cpu, RSSMiB: s.rssMiB, PeakRSSMiB: s.hwmMiB,
		Reports: s.reports, ReportP50Millis: ms(s.p50), ReportP99Millis: ms(s.p99), TooMany: s.tooMany, Errors: s.errs,
		EtcdRevisions: s.revisions, RevisionsPerReport: float64(s.revisions) / float64(max(s.reports, 1)), RegisterRetries: s.regRetries,
		SamplesPerSecond: float64(s.pushSamples) / window, SamplesAccepted: s.rwAccepted, SamplesRefused: s.rwRefused, SamplesHeld: s.rwHeld,
		LinesPerSecond: float64(s.linesWindow) / window, LinesAccepted: s.linesAccepted, LinesRefused: s.linesRefused,
		LinesPending: s.linesPending, LinesHeld: s.linesHeld, Dropped: s.dropped,
		Silenced: s.silenced, Detected: s.detected, SilentToAbnormalMinSecs: s.detectMin.Seconds(), SilentToAbnormalMaxSecs: s.detectMax.Seconds(),
		OtherAbnormal: s.othersAbnormal,
		LoadProcesses: max(1, s.cfg.processes), Replicas: max(1, s.cfg.replicas), EtcdMembers: s.cfg.members, NoFile: s.cfg.nofile,
		Unavailable: s.unavailable, ServedWindow: s.servedWindow, ServedEver: s.servedEver,
		ConnectionsRefused: s.connsRefused, ConnectionsRefusedTotal: s.connsRefusedTotal, ECPExited: !s.ecpUp,
		EtcdDBMiB: s.dbMiB, EtcdDBInUseMiB: s.dbInUseMiB,
		ECPFDs: s.ecpFDs, EtcdCPUPercent: 100 * s.etcdCPU, EtcdRSSMiB: s.etcdRSSMiB, PerAgent: s.perAgent(), Processes: procs,
	}
}
