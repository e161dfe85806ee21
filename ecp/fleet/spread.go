package fleet

import (
	"hash/fnv"
	"sync"
	"time"
)

// burstRegistrations is how many registrations per report interval a
// replica lets report at once. A registration on its own reports at once
// (the operator watching the cluster turn running waits for nothing);
// beyond this many in one interval, each agent is told its cluster's place
// in the interval (9,900 agents registered at once otherwise report in the
// same instant, interval after interval, and the in-flight limit refuses
// thousands of them).
const burstRegistrations = 32

// spreader counts the registrations of the current interval.
type spreader struct {
	mu          sync.Mutex
	windowStart time.Time
	count       int
}

// firstReport is how long the agent of clusterID, registering now, waits
// before its first report.
func (s *spreader) firstReport(now time.Time, clusterID string, interval time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.windowStart) >= interval {
		s.windowStart, s.count = now, 0
	}
	s.count++
	if s.count <= burstRegistrations {
		return 0
	}
	return firstReportDelay(clusterID, interval)
}

// firstReportDelay is a cluster's place in the report interval: a hash of
// its id, so that clusters spread evenly over the interval and a cluster
// gets the same place whichever replica registers it.
func firstReportDelay(clusterID string, interval time.Duration) time.Duration {
	ms := interval.Milliseconds()
	if ms <= 0 {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(clusterID))
	return time.Duration(h.Sum64()%uint64(ms)) * time.Millisecond
}
