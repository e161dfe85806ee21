package sim

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors of the fault methods.
var (
	ErrUnknownConnector = errors.New("unknown connector")
	ErrUnknownRule      = errors.New("unknown rule")
	ErrUnknownNode      = errors.New("unknown node")
	ErrUnknownAlarm     = errors.New("unknown alarm")
	ErrBadFault         = errors.New("bad fault")
)

type apiFault struct {
	latency   time.Duration
	errorRate float64
	status    int // 500 or 503
}

// APIFault describes how the EMQX API misbehaves: every /api/v5 request is
// delayed by Latency, and a share ErrorRate (0..1) of them fails with Status
// (503 SERVICE_UNAVAILABLE "request timeout" by default, or 500 INTERNAL_ERROR).
type APIFault struct {
	Latency   time.Duration
	ErrorRate float64
	Status    int
}

// SetAPIFault installs f; a zero APIFault heals the API.
func (s *Sim) SetAPIFault(f APIFault) error {
	if f.ErrorRate < 0 || f.ErrorRate > 1 || f.Latency < 0 || math.IsNaN(f.ErrorRate) {
		return fmt.Errorf("%w: errorRate must be 0..1 and latency >= 0", ErrBadFault)
	}
	if f.Status == 0 {
		f.Status = http.StatusServiceUnavailable
	}
	if f.Status != http.StatusServiceUnavailable && f.Status != http.StatusInternalServerError {
		return fmt.Errorf("%w: status must be 500 or 503", ErrBadFault)
	}
	s.mu.Lock()
	s.fault = apiFault{latency: f.Latency, errorRate: f.ErrorRate, status: f.Status}
	s.apiPathMax = 0
	s.mu.Unlock()
	return nil
}

// enterAPI counts one more request in flight on path and returns its
// release. The highest count on one path since the last SetAPIFault is
// State.APIPathConcurrencyMax: a client that polls each path once per
// round keeps it at 1 unless two rounds overlap, which tests of a slow
// EMQX read to prove the agent never overlaps its collections.
func (s *Sim) enterAPI(path string) func() {
	s.mu.Lock()
	s.apiInFlight[path]++
	s.apiPathMax = max(s.apiPathMax, s.apiInFlight[path])
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.apiInFlight[path]--; s.apiInFlight[path] == 0 {
			delete(s.apiInFlight, path)
		}
		s.mu.Unlock()
	}
}

// applyAPIFault delays and maybe fails one API request; false means the
// error reply was written.
func (s *Sim) applyAPIFault(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	f := s.fault
	fail := f.errorRate > 0 && s.apiRng.Float64() < f.errorRate
	s.mu.Unlock()
	if f.latency > 0 {
		t := time.NewTimer(f.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return false
		}
	}
	if fail {
		if f.status == http.StatusInternalServerError {
			writeError(w, http.StatusInternalServerError, "INTERNAL_ERROR", "error, {badrpc,timeout}")
		} else {
			writeError(w, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "request timeout")
		}
		return false
	}
	return true
}

// FailConnector makes connector id ("type:name") disconnected with reason on
// the given nodes (all nodes when none are given); its actions follow.
func (s *Sim) FailConnector(id, reason string, nodes ...string) error {
	if reason == "" {
		reason = "econnrefused"
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connByID[id]
	if c == nil {
		return fmt.Errorf("fail connector %q: %w", id, ErrUnknownConnector)
	}
	nodes, err := s.faultNodes(nodes)
	if err != nil {
		return fmt.Errorf("fail connector %q on %w", id, err)
	}
	for _, name := range nodes {
		c.failed[name] = reason
	}
	// The log dir is the serving node's: it logs only its own failure.
	if _, down := c.failed[s.self().name]; down && s.self().running {
		s.logConnectorDown(now, c)
	}
	return nil
}

// faultNodes are the nodes a fault names, every node when it names none;
// the error names one the cluster does not have. s.mu is held.
func (s *Sim) faultNodes(nodes []string) ([]string, error) {
	if len(nodes) == 0 {
		for _, n := range s.nodes {
			nodes = append(nodes, n.name)
		}
	}
	for _, name := range nodes {
		if n, _ := s.nodeByName(name); n == nil {
			return nil, fmt.Errorf("%q: %w", name, ErrUnknownNode)
		}
	}
	return nodes, nil
}

// HealConnector reconnects connector id on every node.
func (s *Sim) HealConnector(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connByID[id]
	if c == nil {
		return fmt.Errorf("heal connector %q: %w", id, ErrUnknownConnector)
	}
	c.failed = map[string]string{}
	return nil
}

// FailRule makes every execution of rule id fail (failed and
// failed.exception grow) until HealRule.
func (s *Sim) FailRule(id, reason string) error {
	if reason == "" {
		reason = "{error,{decode_json_failed,<<\"not json\">>}}"
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ru := s.ruleByID[id]
	if ru == nil {
		return fmt.Errorf("fail rule %q: %w", id, ErrUnknownRule)
	}
	ru.failReason = reason
	s.logRuleFailed(now, ru)
	return nil
}

// HealRule ends a FailRule.
func (s *Sim) HealRule(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ru := s.ruleByID[id]
	if ru == nil {
		return fmt.Errorf("heal rule %q: %w", id, ErrUnknownRule)
	}
	ru.failReason = ""
	return nil
}

// StopNode stops a node: its clients go, it leaves /cluster, and /nodes shows
// it with node, node_status and role only (stopped replicants vanish).
func (s *Sim) StopNode(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := s.nodeByName(name)
	if n == nil {
		return fmt.Errorf("stop node %q: %w", name, ErrUnknownNode)
	}
	if !n.running {
		return nil
	}
	n.running = false
	s.settleConnections(n, 0)
	return nil
}

// StartNode starts a stopped node afresh: uptime restarts, counters reset.
func (s *Sim) StartNode(name string) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ni := s.nodeByName(name)
	if n == nil {
		return fmt.Errorf("start node %q: %w", name, ErrUnknownNode)
	}
	if n.running {
		return nil
	}
	n.running = true
	n.startedAt = now
	n.hw = map[string]int{}
	n.metrics = make([]int64, len(metricKeys))
	for _, ru := range s.rules {
		ru.perNode[ni] = ruleCounters{}
	}
	for _, a := range s.actions {
		a.perNode[ni] = actionCounters{}
	}
	for _, a := range s.sources {
		a.perNode[ni] = actionCounters{}
	}
	return nil
}

// SetNodeCPU pins a node's CPU usage (emqx_vm_cpu_use) to use percent, as
// a busy host would show; nil lets it follow the node's load again.
func (s *Sim) SetNodeCPU(name string, use *float64) error {
	if use != nil && !(*use >= 0 && *use <= 100) {
		return fmt.Errorf("%w: use must be 0..100", ErrBadFault)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, _ := s.nodeByName(name)
	if n == nil {
		return fmt.Errorf("set cpu of node %q: %w", name, ErrUnknownNode)
	}
	if use != nil {
		v := *use
		use = &v
	}
	n.cpuUse = use
	return nil
}

// MaxClientsPerNode bounds SetClientsPerNode.
const MaxClientsPerNode = 10_000_000

// SetClientsPerNode sets every node's client demand to n: from the next
// ticks the nodes' connections move towards it, within the licence's cap,
// as clients connecting or leaving would make them.
func (s *Sim) SetClientsPerNode(n int) error {
	if n < 0 || n > MaxClientsPerNode {
		return fmt.Errorf("%w: perNode must be 0..%d", ErrBadFault, MaxClientsPerNode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, nd := range s.nodes {
		nd.demand = n
	}
	return nil
}

// ResetLicense acts as if another licence had been uploaded on the dashboard:
// the start licence is loaded again and dynamic_max_connections returns to
// its default (25), so an agent must correct the drift.
func (s *Sim) ResetLicense() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lic = s.initLic
	s.setting.dynamic = DefaultDynamicMaxConnections
}

// RefuseLogin makes POST /api/v5/login fail with code (BAD_USERNAME_OR_PWD or
// LOGIN_LOCKED) whatever the credentials; "" accepts logins again.
func (s *Sim) RefuseLogin(code string) error {
	switch code {
	case "", "BAD_USERNAME_OR_PWD", "LOGIN_LOCKED":
	default:
		return fmt.Errorf("%w: login refusal code must be BAD_USERNAME_OR_PWD or LOGIN_LOCKED", ErrBadFault)
	}
	s.mu.Lock()
	s.loginFault = code
	s.mu.Unlock()
	return nil
}

// ExpireTokens ends every dashboard session, as if their TTL had passed: the
// next use of a token answers TOKEN_TIME_OUT.
func (s *Sim) ExpireTokens() {
	now := s.opts.Now()
	s.mu.Lock()
	for _, t := range s.tokens {
		t.expires = now
	}
	s.mu.Unlock()
}

// stepAlarms raises and clears license_quota (emqx-api.md §3.8, §6.4).
func (s *Sim) stepAlarms(now time.Time) {
	limit := float64(s.effectiveMax())
	high, _ := parsePercent(s.setting.high)
	low, _ := parsePercent(s.setting.low)
	count := float64(s.licenseCount())
	active := s.findAlarm("license_quota")
	switch {
	case active == nil && limit > 0 && count > limit*high/100:
		msg := "License: live connection number exceeds " + strconv.FormatFloat(high, 'f', -1, 64) + "%"
		if s.rel.countsSessions() {
			msg = "License: sessions quota exceeds " + strconv.FormatFloat(high, 'f', -1, 64) + "%"
		}
		s.alarms = append(s.alarms, &alarm{
			node: s.self().name, name: "license_quota", message: msg,
			details: map[string]any{"high_watermark": strconv.FormatFloat(high, 'f', -1, 64)}, activateAt: now,
		})
		s.logAlarm(now, "license_quota", msg, true)
	case active != nil && count < limit*low/100:
		active.deactivateAt = now
		s.removeAlarm(active)
		s.history = append(s.history, active)
		s.logAlarm(now, "license_quota", active.message, false)
	}
}

// RaiseAlarm activates EMQX's alarm name on node (empty: the node the API
// answers from), as emqx_alarm:activate does: it is listed by
// GET /api/v5/alarms from now on, with message (empty: the name, as EMQX
// words an alarm raised without one) and details. Raising an alarm that is
// already active on that node changes nothing (EMQX answers
// already_existed).
func (s *Sim) RaiseAlarm(node, name, message string, details map[string]any) error {
	if name == "" {
		return errors.New("raise alarm: name is empty")
	}
	if message == "" {
		message = name
	}
	if details == nil {
		details = map[string]any{}
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.alarmNode(node)
	if err != nil {
		return fmt.Errorf("raise alarm %q: %w", name, err)
	}
	if s.findNodeAlarm(n, name) != nil {
		return nil
	}
	s.alarms = append(s.alarms, &alarm{node: n, name: name, message: message, details: details, activateAt: now})
	s.logAlarm(now, name, message, true)
	return nil
}

// ClearAlarm deactivates the alarm name on node (empty: the node the API
// answers from): it moves to the history (GET /api/v5/alarms?activated=false).
func (s *Sim) ClearAlarm(node, name string) error {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.alarmNode(node)
	if err != nil {
		return fmt.Errorf("clear alarm %q: %w", name, err)
	}
	a := s.findNodeAlarm(n, name)
	if a == nil {
		return fmt.Errorf("clear alarm %q on %s: %w", name, n, ErrUnknownAlarm)
	}
	a.deactivateAt = now
	s.removeAlarm(a)
	s.history = append(s.history, a)
	s.logAlarm(now, name, a.message, false)
	return nil
}

// alarmNode resolves the node of an alarm call; s.mu is held.
func (s *Sim) alarmNode(name string) (string, error) {
	if name == "" {
		return s.self().name, nil
	}
	if n, _ := s.nodeByName(name); n == nil {
		return "", fmt.Errorf("node %q: %w", name, ErrUnknownNode)
	}
	return name, nil
}

func (s *Sim) findNodeAlarm(node, name string) *alarm {
	for _, a := range s.alarms {
		if a.node == node && a.name == name {
			return a
		}
	}
	return nil
}

func (s *Sim) findAlarm(name string) *alarm {
	for _, a := range s.alarms {
		if a.name == name {
			return a
		}
	}
	return nil
}

func (s *Sim) removeAlarm(a *alarm) {
	for i, x := range s.alarms {
		if x == a {
			s.alarms = append(s.alarms[:i], s.alarms[i+1:]...)
			return
		}
	}
}
