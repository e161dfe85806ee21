package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"
)

// node is one EMQX node. Gauges follow the /api/v5/nodes and /stats
// definitions (emqx-api.md §3.1, §3.4).
type node struct {
	name      string
	role      string // core or replicant
	running   bool
	startedAt time.Time

	memTotal  float64 // bytes
	memBase   float64 // bytes used with no clients
	maxFDs    int
	procAvail int
	load      [3]float64
	// cpuUse, when set, is the CPU usage (percent) a fault pinned;
	// otherwise it follows the load.
	cpuUse *float64

	demand     int // clients that want to connect to this node
	sessions   int // "connections": channel table size incl. disconnected persistent sessions
	live       int // connected clients
	persistent int // disconnected persistent sessions
	subs       int

	hw      map[string]int // *.max high-water marks since node start
	metrics []int64        // indexed like metricKeys
	rates   [2]int         // received, sent msg/s at last step
	rejects int            // CONNECTs refused by the licence since the last log line
}

// rule is one rule-engine rule (emqx-api.md §4).
type rule struct {
	id, name, sql string
	from          []string
	actions       []any    // JSON: action IDs and function maps
	actionIDs     []string // the "type:name" action IDs among actions
	enable        bool
	description   string
	createdAt     time.Time
	modifiedAt    time.Time
	rate          float64 // matched per second per node
	failReason    string  // set while a fault makes the rule fail
	perNode       []ruleCounters
}

type ruleCounters struct {
	matched, passed, failed, failedException, failedNoResult     int64
	actTotal, actSuccess, actFailed, actOOS, actUnknown, actDisc int64
	rate, rateMax                                                float64
}

// connector is one connector; failures are per node (empty reason = fine).
type connector struct {
	typ, name string
	enable    bool
	config    map[string]any
	failed    map[string]string // node name -> status_reason
	lastHC    time.Time         // last health_check_failed line written
	createdAt time.Time
	actions   []string // names of actions using it
	sources   []string // names of sources using it
}

func (c *connector) id() string { return c.typ + ":" + c.name }

// action is an action or a source (same shape, emqx-api.md §5.3).
type action struct {
	typ, name  string
	enable     bool
	conn       *connector
	parameters map[string]any
	resOpts    map[string]any
	createdAt  time.Time
	modifiedAt time.Time
	rules      []string // sorted rule IDs referencing it
	perNode    []actionCounters
}

func (a *action) id() string { return a.typ + ":" + a.name }

type actionCounters struct {
	matched, success, failed, dropped, droppedOther, droppedExpired, droppedQueueFull int64
	droppedNotFound, droppedStopped, retried, lateReply, received                     int64
	rate                                                                              float64
}

// alarm is an EMQX alarm (emqx-api.md §3.8).
type alarm struct {
	node, name, message string
	details             map[string]any
	activateAt          time.Time
	deactivateAt        time.Time
}

// metricKeys are the dotted counters of GET /api/v5/metrics (emqx-api.md §3.5).
var metricKeys = []string{
	"bytes.received", "bytes.sent",
	"packets.received", "packets.sent",
	"packets.connect.received",
	"packets.connack.sent", "packets.connack.error", "packets.connack.auth_error",
	"packets.publish.received", "packets.publish.sent", "packets.publish.inuse",
	"packets.publish.error", "packets.publish.auth_error", "packets.publish.dropped",
	"packets.puback.received", "packets.puback.sent", "packets.puback.inuse", "packets.puback.missed",
	"packets.pubrec.received", "packets.pubrec.sent", "packets.pubrec.inuse", "packets.pubrec.missed",
	"packets.pubrel.received", "packets.pubrel.sent", "packets.pubrel.missed",
	"packets.pubcomp.received", "packets.pubcomp.sent", "packets.pubcomp.inuse", "packets.pubcomp.missed",
	"packets.subscribe.received", "packets.subscribe.error", "packets.subscribe.auth_error",
	"packets.suback.sent",
	"packets.unsubscribe.received", "packets.unsubscribe.error", "packets.unsuback.sent",
	"packets.pingreq.received", "packets.pingresp.sent",
	"packets.disconnect.received", "packets.disconnect.sent",
	"packets.auth.received", "packets.auth.sent",
	"messages.received", "messages.sent",
	"messages.qos0.received", "messages.qos0.sent",
	"messages.qos1.received", "messages.qos1.sent",
	"messages.qos2.received", "messages.qos2.sent",
	"messages.publish", "messages.dropped",
	"messages.dropped.await_pubrel_timeout", "messages.dropped.no_subscribers",
	"messages.forward", "messages.delayed", "messages.delivered", "messages.acked", "messages.persisted",
	"messages.validation_failed", "messages.validation_succeeded",
	"messages.transformation_failed", "messages.transformation_succeeded",
	"delivery.dropped", "delivery.dropped.no_local", "delivery.dropped.too_large",
	"delivery.dropped.qos0_msg", "delivery.dropped.queue_full", "delivery.dropped.expired",
	"client.connect", "client.connack", "client.connected", "client.authenticate",
	"client.auth.anonymous", "client.authorize", "client.subscribe", "client.unsubscribe",
	"client.disconnected",
	"session.created", "session.resumed", "session.takenover", "session.discarded", "session.terminated",
	"authorization.allow", "authorization.deny", "authorization.cache_hit", "authorization.cache_miss",
	"authentication.success", "authentication.success.anonymous", "authentication.failure",
	"overload_protection.delay.ok", "overload_protection.delay.timeout",
	"overload_protection.hibernation", "overload_protection.gc", "overload_protection.new_conn",
}

var metricIndex = func() map[string]int {
	m := make(map[string]int, len(metricKeys))
	for i, k := range metricKeys {
		m[k] = i
	}
	return m
}()

// statKeys are the gauges of GET /api/v5/stats (emqx-api.md §3.4), without
// the .count/.max suffix.
var statKeys = []string{
	"channels", "connections", "live_connections", "sessions", "cluster_sessions",
	"delayed", "retained", "suboptions", "subscribers", "subscriptions",
	"subscriptions.shared", "topics",
}

// Cluster-global gauges taken once when aggregating (emqx-api.md §3.4).
const (
	retainedCount = 3
	topicsPerNode = 20
)

var connectorTypes = []string{"http", "kafka_producer", "mqtt"}

// build creates the nodes, connectors, actions, sources and rules.
func (s *Sim) build(r *rand.Rand, now time.Time) {
	o := s.opts
	cores := min(o.Nodes, 3)
	for i := range o.Nodes {
		role := "core"
		if i >= cores {
			role = "replicant"
		}
		memGiB := []float64{7.7, 15.52, 31.26, 62.8}[r.IntN(4)]
		n := &node{
			name:      fmt.Sprintf("emqx@%s%d", o.NodeHostPrefix, i+1),
			role:      role,
			running:   true,
			startedAt: now.Add(-time.Duration(1+r.IntN(72*60)) * time.Minute),
			memTotal:  memGiB * (1 << 30),
			memBase:   (0.08 + 0.1*r.Float64()) * (1 << 30),
			maxFDs:    1048576,
			procAvail: 2097152,
			demand:    max(0, o.ClientsPerNode+r.IntN(o.ClientsPerNode/5+1)-o.ClientsPerNode/10),
			hw:        map[string]int{},
			metrics:   make([]int64, len(metricKeys)),
		}
		for j := range n.load {
			n.load[j] = round2(0.2 + 1.5*r.Float64())
		}
		up := now.Sub(n.startedAt).Seconds()
		base := int64(up * (5 + 10*r.Float64()))
		for k := range n.metrics {
			n.metrics[k] = base / int64(1+k%7)
		}
		s.nodes = append(s.nodes, n)
	}

	s.connByID = map[string]*connector{}
	s.actByID = map[string]*action{}
	s.srcByID = map[string]*action{}
	for i := range o.Connectors {
		typ := connectorTypes[i%len(connectorTypes)]
		created := now.Add(-time.Duration(30+r.IntN(60*24*30)) * time.Minute).Truncate(time.Millisecond)
		c := &connector{
			typ:       typ,
			name:      fmt.Sprintf("conn_%04d", i+1),
			enable:    true,
			config:    connectorConfig(typ, i),
			failed:    map[string]string{},
			createdAt: created,
		}
		s.connectors = append(s.connectors, c)
		s.connByID[c.id()] = c
		a := &action{
			typ: typ, name: fmt.Sprintf("action_%04d", i+1), enable: true, conn: c,
			parameters: actionParameters(typ, i), resOpts: actionResourceOpts(),
			createdAt: created, modifiedAt: created.Add(time.Duration(r.IntN(3600)) * time.Second),
			perNode: make([]actionCounters, o.Nodes),
		}
		c.actions = append(c.actions, a.name)
		s.actions = append(s.actions, a)
		s.actByID[a.id()] = a
		if typ == "mqtt" {
			src := &action{
				typ: typ, name: fmt.Sprintf("source_%04d", i+1), enable: true, conn: c,
				parameters: map[string]any{"topic": fmt.Sprintf("remote/%d/#", i+1), "qos": 1},
				resOpts:    map[string]any{"health_check_interval": "15s"},
				createdAt:  created, modifiedAt: created,
				perNode: make([]actionCounters, o.Nodes),
			}
			c.sources = append(c.sources, src.name)
			s.sources = append(s.sources, src)
			s.srcByID[src.id()] = src
		}
	}

	s.ruleByID = map[string]*rule{}
	ids := ruleIDs(r, o.Rules)
	for i := range o.Rules {
		created := now.Add(-time.Duration(60+(o.Rules-i)*7+r.IntN(5)) * time.Minute).Truncate(time.Millisecond)
		ru := &rule{
			id:          ids[i],
			enable:      r.IntN(10) != 0,
			description: "",
			createdAt:   created,
			modifiedAt:  created.Add(time.Duration(r.IntN(3600)) * time.Second),
			rate:        float64(r.IntN(50)) / 10,
			perNode:     make([]ruleCounters, o.Nodes),
		}
		topic := fmt.Sprintf("t/%d/#", i+1)
		ru.from = []string{topic}
		if len(s.actions) > 0 {
			a := s.actions[i%len(s.actions)]
			ru.actions = append(ru.actions, a.id())
			ru.actionIDs = append(ru.actionIDs, a.id())
			ru.name = "to_" + a.name
			if len(s.sources) > 0 && i%4 == 3 {
				src := s.sources[(i/4)%len(s.sources)]
				ru.from = []string{"$bridges/" + src.id()}
				src.rules = append(src.rules, ru.id)
			}
		} else {
			ru.name = fmt.Sprintf("rule_%d", i+1)
		}
		switch i % 5 {
		case 1:
			ru.actions = append(ru.actions, map[string]any{"function": "console"})
		case 2:
			ru.actions = append(ru.actions, map[string]any{"function": "republish", "args": map[string]any{
				"topic": "republish/${topic}", "qos": 0, "retain": false, "payload": "${payload}",
				"mqtt_properties": map[string]any{}, "user_properties": "",
			}})
		}
		if i%7 == 6 {
			ru.name = ""
		}
		ru.sql = fmt.Sprintf("SELECT * FROM \"%s\"", ru.from[0])
		for _, aid := range ru.actionIDs {
			a := s.actByID[aid]
			a.rules = append(a.rules, ru.id)
		}
		// Counters as if the rule had been running since its node started.
		for ni, n := range s.nodes {
			secs := now.Sub(n.startedAt).Seconds()
			if !ru.enable {
				secs /= 3
			}
			m := int64(secs * ru.rate)
			c := &ru.perNode[ni]
			c.matched, c.passed = m, m
			c.actTotal = m * int64(len(ru.actions))
			c.actSuccess = c.actTotal
			if ru.enable {
				c.rate, c.rateMax = ru.rate, round2(ru.rate*1.5)
			}
		}
		s.rules = append(s.rules, ru)
		s.ruleByID[ru.id] = ru
	}
	for _, a := range append(append([]*action{}, s.actions...), s.sources...) {
		sort.Strings(a.rules)
		for ni := range s.nodes {
			var m int64
			for _, rid := range a.rules {
				m += s.ruleByID[rid].perNode[ni].passed
			}
			a.perNode[ni].matched, a.perNode[ni].success = m, m
			if a.typ == "mqtt" && a.conn != nil && contains(a.conn.sources, a.name) {
				a.perNode[ni].received = m
			}
		}
	}
	for _, n := range s.nodes {
		s.settleConnections(n, n.demand)
	}
	s.fixConnectionsToCap()
	for _, n := range s.nodes {
		s.updateHighWater(n)
	}
}

// ruleIDs draws n distinct ids in EMQX's "rule_" + hex style.
func ruleIDs(r *rand.Rand, n int) []string {
	ids := make([]string, 0, n)
	if n <= 1<<14 {
		for _, v := range r.Perm(1 << 16)[:n] {
			ids = append(ids, fmt.Sprintf("rule_%04x", v))
		}
		return ids
	}
	seen := make(map[uint32]bool, n)
	for len(ids) < n {
		v := r.Uint32()
		if !seen[v] {
			seen[v] = true
			ids = append(ids, fmt.Sprintf("rule_%08x", v))
		}
	}
	return ids
}

func connectorConfig(typ string, i int) map[string]any {
	ssl := map[string]any{"enable": false, "verify": "verify_peer"}
	ropts := map[string]any{"health_check_interval": "15s", "start_timeout": "5s", "start_after_created": true}
	switch typ {
	case "http":
		return map[string]any{
			"url": fmt.Sprintf("http://10.0.1.%d:8080", i%250+1), "connect_timeout": "15s",
			"pool_type": "random", "pool_size": 8, "enable_pipelining": 100, "headers": map[string]any{},
			"ssl": ssl, "resource_opts": ropts,
		}
	case "kafka_producer":
		return map[string]any{
			"bootstrap_hosts": fmt.Sprintf("10.0.2.%d:9092", i%250+1), "connect_timeout": "5s",
			"authentication": "none", "ssl": ssl, "resource_opts": ropts,
		}
	default: // mqtt
		return map[string]any{
			"server": fmt.Sprintf("10.0.3.%d:1883", i%250+1), "pool_size": 8, "proto_ver": "v4",
			"clientid_prefix": "", "keepalive": "160s", "ssl": ssl, "resource_opts": ropts,
		}
	}
}

func actionParameters(typ string, i int) map[string]any {
	switch typ {
	case "http":
		return map[string]any{"method": "post", "path": "/hook", "headers": map[string]any{}, "body": "${payload}", "max_retries": 2}
	case "kafka_producer":
		return map[string]any{"topic": fmt.Sprintf("kafka-topic-%d", i+1), "message": map[string]any{
			"key": "${.clientid}", "value": "${.}", "timestamp": "${.timestamp}",
		}}
	default:
		return map[string]any{"topic": "fwd/${topic}", "qos": 1, "retain": false, "payload": "${payload}"}
	}
}

func actionResourceOpts() map[string]any {
	return map[string]any{"query_mode": "async", "inflight_window": 100, "health_check_interval": "15s",
		"worker_pool_size": 16, "max_buffer_bytes": "256MB", "request_ttl": "45s"}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// memString renders bytes as EMQX does for memory_total / memory_used:
// "15.52G", "256.00M", "12.00K", or a bare integer under 1 KiB.
func memString(b float64) string {
	switch {
	case b >= 1<<30:
		return strconv.FormatFloat(b/(1<<30), 'f', 2, 64) + "G"
	case b >= 1<<20:
		return strconv.FormatFloat(b/(1<<20), 'f', 2, 64) + "M"
	case b >= 1<<10:
		return strconv.FormatFloat(b/(1<<10), 'f', 2, 64) + "K"
	default:
		return strconv.FormatInt(int64(b), 10)
	}
}

func (s *Sim) nodeByName(name string) (*node, int) {
	for i, n := range s.nodes {
		if n.name == name {
			return n, i
		}
	}
	return nil, -1
}

func (s *Sim) runningNodes() []*node {
	out := make([]*node, 0, len(s.nodes))
	for _, n := range s.nodes {
		if n.running {
			out = append(out, n)
		}
	}
	return out
}

// licenseCount is what EMQX counts against the limit (emqx-api.md §6.4):
// sessions from 5.8.5, live clients before.
func (s *Sim) licenseCount() int {
	total := 0
	for _, n := range s.nodes {
		if !n.running {
			continue
		}
		if s.rel.countsSessions() {
			total += n.sessions
		} else {
			total += n.live
		}
	}
	return total
}

// connectionCap is the largest count EMQX lets the cluster reach under the
// effective limit: from 5.8.5 a CONNECT is refused when count >= limit (limit
// <= 25) or count >= round(limit*1.1); before, when count > limit*1.1.
func (s *Sim) connectionCap() int {
	limit := s.effectiveMax()
	if s.rel.countsSessions() {
		if limit <= 25 {
			return limit
		}
		return int(math.Round(float64(limit) * 1.1))
	}
	return int(math.Floor(float64(limit) * 1.1))
}

// settleConnections moves a node towards want clients without a licence
// check; callers cap afterwards.
func (s *Sim) settleConnections(n *node, want int) {
	want = max(want, 0)
	n.persistent = want / 50
	n.live = want - n.persistent
	n.sessions = want
	n.subs = n.live * 2
}

// fixConnectionsToCap scales the counts built at start down, in proportion,
// so the cluster begins within the licence as one that always ran under it.
func (s *Sim) fixConnectionsToCap() {
	limit := s.connectionCap()
	total := s.licenseCount()
	if total <= limit || total == 0 {
		return
	}
	left := limit
	for _, n := range s.nodes {
		if !n.running {
			continue
		}
		share := n.sessions * limit / total
		s.settleConnections(n, share)
		left -= s.countOf(n)
	}
	for _, n := range s.nodes {
		if left <= 0 {
			break
		}
		if n.running {
			s.settleConnections(n, n.sessions+1)
			left -= 1
		}
	}
}

// countOf is one node's share of licenseCount.
func (s *Sim) countOf(n *node) int {
	if s.rel.countsSessions() {
		return n.sessions
	}
	return n.live
}

func (s *Sim) updateHighWater(n *node) {
	cs := s.clusterSessions()
	vals := map[string]int{
		"channels": n.sessions, "connections": n.sessions, "live_connections": n.live,
		"sessions": n.sessions, "cluster_sessions": cs, "subscriptions": n.subs,
		"suboptions": n.subs, "subscribers": n.subs, "topics": topicsPerNode * s.runningCount(),
		"retained": retainedCount,
	}
	for k, v := range vals {
		if v > n.hw[k] {
			n.hw[k] = v
		}
	}
}

func (s *Sim) runningCount() int {
	c := 0
	for _, n := range s.nodes {
		if n.running {
			c++
		}
	}
	return c
}

func (s *Sim) clusterSessions() int {
	t := 0
	for _, n := range s.nodes {
		if n.running {
			t += n.sessions
		}
	}
	return t
}

// Step advances the model to Options.Now(): connections move towards demand
// within the licence, counters grow, alarms are raised or cleared and
// background log lines are written. Run calls it every TickInterval; tests
// call it directly with a stepped clock.
func (s *Sim) Step() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	dt := now.Sub(s.last).Seconds()
	if dt < 0 {
		dt = 0
	}
	s.last = now
	s.stepConnections(now)
	s.stepCounters(now, dt)
	s.stepAlarms(now)
	s.stepFaultLogs(now)
	if s.logs != nil && s.opts.LogRate > 0 {
		if err := s.logs.background(now, s.opts.LogRate); err != nil {
			s.logger.Error("write emqx log", "err", err)
		}
	}
}

func (s *Sim) stepConnections(now time.Time) {
	limit := s.connectionCap()
	for _, n := range s.nodes {
		if !n.running {
			continue
		}
		jitter := 0
		if span := n.demand/20 + 1; span > 0 {
			jitter = s.rng.IntN(2*span+1) - span
		}
		want := n.sessions + (n.demand-n.sessions)/4 + jitter
		if want < n.sessions {
			s.settleConnections(n, want)
			continue
		}
		room := limit - s.licenseCount()
		grow := want - n.sessions
		if grow > room {
			n.rejects += grow - max(room, 0)
			grow = max(room, 0)
		}
		s.settleConnections(n, n.sessions+grow)
		// Load and memory follow the clients a little.
		for j := range n.load {
			n.load[j] = round2(math.Max(0, n.load[j]+(s.rng.Float64()-0.5)*0.1))
		}
	}
	for _, n := range s.nodes {
		if n.running {
			s.updateHighWater(n)
		}
	}
	// EMQX throttles this line per one-minute window.
	if now.Sub(s.rejectAt) >= time.Minute {
		rejected := 0
		for _, n := range s.nodes {
			rejected += n.rejects
			n.rejects = 0
		}
		if rejected > 0 {
			s.logLicenseRejected(now)
			s.rejectAt = now
		}
	}
}

func (s *Sim) stepCounters(now time.Time, dt float64) {
	if dt == 0 {
		return
	}
	for ni, n := range s.nodes {
		if !n.running {
			n.rates = [2]int{}
			continue
		}
		recv := int64(float64(n.live) * 0.5 * dt)
		sent := recv + int64(s.rng.IntN(3))
		add := func(k string, v int64) { n.metrics[metricIndex[k]] += v }
		add("messages.received", recv)
		add("messages.sent", sent)
		add("messages.qos0.received", recv/2)
		add("messages.qos1.received", recv-recv/2)
		add("messages.qos0.sent", sent/2)
		add("messages.qos1.sent", sent-sent/2)
		add("messages.publish", recv)
		add("messages.delivered", sent)
		add("messages.acked", (sent-sent/2)*9/10)
		add("packets.publish.received", recv)
		add("packets.publish.sent", sent)
		add("packets.received", recv+int64(n.live)/10)
		add("packets.sent", sent+int64(n.live)/10)
		add("packets.pingreq.received", int64(n.live)/10)
		add("packets.pingresp.sent", int64(n.live)/10)
		add("bytes.received", recv*120)
		add("bytes.sent", sent*120)
		n.rates = [2]int{int(math.Round(float64(recv) / dt)), int(math.Round(float64(sent) / dt))}

		for _, ru := range s.rules {
			if !ru.enable {
				ru.perNode[ni].rate = 0
				continue
			}
			c := &ru.perNode[ni]
			m := int64(ru.rate * dt)
			if frac := ru.rate*dt - float64(m); s.rng.Float64() < frac {
				m++
			}
			c.matched += m
			c.rate = round2(float64(m) / dt)
			c.rateMax = math.Max(c.rateMax, c.rate)
			if ru.failReason != "" {
				c.failed += m
				c.failedException += m
				continue
			}
			c.passed += m
			for _, out := range ru.actions {
				c.actTotal += m
				aid, isAction := out.(string)
				if !isAction {
					c.actSuccess += m
					continue
				}
				a := s.actByID[aid]
				ac := &a.perNode[ni]
				ac.matched += m
				if a.enable && s.connStatusOn(a.conn, n) == "connected" {
					c.actSuccess += m
					ac.success += m
				} else {
					c.actFailed += m
					c.actOOS += m
					ac.failed += m
					ac.dropped += m
					ac.droppedStopped += m
				}
			}
		}
	}
}

// connStatusOn is the status of a connector (and so of its actions) on one
// running node (emqx-api.md §5.1).
func (s *Sim) connStatusOn(c *connector, n *node) string {
	if !c.enable {
		return "stopped"
	}
	if _, bad := c.failed[n.name]; bad {
		return "disconnected"
	}
	return "connected"
}

// healthCheckInterval is the connectors' resource_opts.health_check_interval.
const healthCheckInterval = 15 * time.Second

// stepFaultLogs repeats the lines ongoing faults cause in the log of the
// node serving the API: a failed health check every interval, and a rule
// exception each tick a failing rule runs.
func (s *Sim) stepFaultLogs(now time.Time) {
	if s.logs == nil || !s.self().running {
		return
	}
	self := s.self().name
	for _, c := range s.connectors {
		if _, down := c.failed[self]; down && c.enable && now.Sub(c.lastHC) >= healthCheckInterval {
			s.logConnectorDown(now, c)
		}
	}
	for _, ru := range s.rules {
		if ru.failReason != "" && ru.enable && ru.rate > 0 {
			s.logRuleFailed(now, ru)
		}
	}
}
