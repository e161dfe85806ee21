package sim

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// Prometheus endpoints (emqx-api.md §7): text with "# TYPE" then an empty
// "# HELP" per family, or JSON with the exact header Accept: application/json.

const (
	modeNode         = "node"
	modeAggregated   = "all_nodes_aggregated"
	modeUnaggregated = "all_nodes_unaggregated"
)

func promMode(r *http.Request) string {
	switch m := r.URL.Query().Get("mode"); m {
	case modeAggregated, modeUnaggregated:
		return m
	}
	return modeNode // invalid values fall back to node
}

type promSample struct {
	node  string // "" = no node label
	id    string // "" = no id label
	label string // the id label's name; "" = "id"
	value float64
}

type promFamily struct {
	name, typ string
	group     string // JSON group for /prometheus/stats
	samples   []promSample
}

func (f *promFamily) add(node, id string, v float64) {
	f.samples = append(f.samples, promSample{node: node, id: id, value: v})
}

func writePromText(w http.ResponseWriter, fams []*promFamily) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	// Families are rendered into a buffer that is handed to w in chunks, so
	// a large unaggregated reply is never held whole.
	var b bytes.Buffer
	var num []byte
	for _, f := range fams {
		b.WriteString("# TYPE " + f.name + " " + f.typ + "\n# HELP " + f.name + " \n")
		for _, s := range f.samples {
			b.WriteString(f.name)
			label := "id"
			if s.label != "" {
				label = s.label
			}
			switch {
			case s.node != "" && s.id != "":
				b.WriteString(`{node="` + s.node + `",` + label + `="` + s.id + `"}`)
			case s.node != "":
				b.WriteString(`{node="` + s.node + `"}`)
			case s.id != "":
				b.WriteString(`{` + label + `="` + s.id + `"}`)
			}
			b.WriteByte(' ')
			num = strconv.AppendFloat(num[:0], s.value, 'f', -1, 64)
			b.Write(num)
			b.WriteByte('\n')
			if b.Len() >= 64*1024 {
				if _, err := w.Write(b.Bytes()); err != nil {
					return
				}
				b.Reset()
			}
		}
	}
	_, _ = w.Write(b.Bytes())
}

func (s *Sim) wantsJSON(r *http.Request) bool {
	return !s.opts.PrometheusTextOnly && r.Header.Get("Accept") == "application/json"
}

// promNodes returns the nodes a mode reads and whether samples carry the node label.
func (s *Sim) promNodes(mode string) []*node {
	if mode == modeNode {
		if s.self().running {
			return []*node{s.self()}
		}
		return nil
	}
	return s.runningNodes()
}

func num(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case float64:
		return x
	}
	return 0
}

// statsFamilies builds /prometheus/stats for mode.
func (s *Sim) statsFamilies(mode string) []*promFamily {
	nodes := s.promNodes(mode)
	var fams []*promFamily
	perNode := func(name, typ, group string, val func(n *node, ni int) float64, alwaysLabel, clusterWide bool) {
		f := &promFamily{name: name, typ: typ, group: group}
		switch {
		case clusterWide:
			if len(nodes) > 0 {
				f.add("", "", val(nodes[0], s.nodeIndex(nodes[0])))
			}
		case mode == modeUnaggregated || (mode == modeAggregated && alwaysLabel):
			for _, n := range nodes {
				f.add(n.name, "", val(n, s.nodeIndex(n)))
			}
		default:
			var sum float64
			for _, n := range nodes {
				sum += val(n, s.nodeIndex(n))
			}
			f.add("", "", sum)
		}
		fams = append(fams, f)
	}
	statName := map[string]string{"subscriptions.shared": "subscriptions_shared"}
	clusterWideStat := map[string]bool{"cluster_sessions": true, "topics": true, "retained": true, "subscriptions.shared": true}
	for _, k := range append(append([]string{}, statKeys...), "durable_subscriptions") {
		name := k
		if v, ok := statName[k]; ok {
			name = v
		}
		for _, suffix := range []string{"count", "max"} {
			key := k + "." + suffix
			perNode("emqx_"+name+"_"+suffix, "gauge", "stats", func(n *node, _ int) float64 {
				return num(s.nodeStatsJSON(n, false)[key])
			}, false, clusterWideStat[k])
		}
	}
	running, stopped := float64(s.runningCount()), float64(len(s.nodes)-s.runningCount())
	perNode("emqx_cluster_nodes_running", "gauge", "cluster", func(*node, int) float64 { return running }, true, false)
	perNode("emqx_cluster_nodes_stopped", "gauge", "cluster", func(*node, int) float64 { return stopped }, true, false)
	vm := []struct {
		name string
		val  func(n *node) float64
	}{
		{"emqx_vm_cpu_use", func(n *node) float64 { return n.cpuUsage() }},
		{"emqx_vm_cpu_idle", func(n *node) float64 { return round2(100 - n.cpuUsage()) }},
		{"emqx_vm_run_queue", func(*node) float64 { return 0 }},
		{"emqx_vm_process_messages_in_queues", func(*node) float64 { return 0 }},
		{"emqx_vm_total_memory", func(n *node) float64 { return float64(int64(n.memTotal)) }},
		{"emqx_vm_used_memory", func(n *node) float64 { return float64(int64(n.memBase + float64(n.sessions)*64*1024)) }},
		{"emqx_vm_mnesia_tm_mailbox_size", func(*node) float64 { return 0 }},
		{"emqx_vm_broker_pool_max_mailbox_size", func(*node) float64 { return 0 }},
	}
	for _, m := range vm {
		perNode(m.name, "gauge", "metrics", func(n *node, _ int) float64 { return m.val(n) }, true, false)
	}
	for i, k := range metricKeys {
		name := "emqx_" + strings.ReplaceAll(k, ".", "_")
		perNode(name, "counter", metricGroup(k), func(n *node, _ int) float64 { return float64(n.metrics[i]) }, false, false)
	}
	exp := float64(s.lic.expiryAt().Unix())
	perNode("emqx_license_expiry_at", "gauge", "license", func(*node, int) float64 { return exp }, false, true)
	if s.rel.promLicenseMax() {
		maxS := float64(s.effectiveMax())
		issued := float64(s.lic.Start.Unix())
		perNode("emqx_license_max_sessions", "gauge", "license", func(*node, int) float64 { return maxS }, false, true)
		perNode("emqx_license_issued_at", "gauge", "license", func(*node, int) float64 { return issued }, false, true)
		perNode("emqx_routes_count", "gauge", "stats", func(n *node, _ int) float64 { return float64(n.subs / 2) }, false, false)
		perNode("emqx_routes_max", "gauge", "stats", func(n *node, _ int) float64 { return float64(n.hw["subscriptions"] / 2) }, false, false)
	}
	return fams
}

// cpuUsage is the node's CPU usage in percent: the pinned one, or ten
// times its 1-minute load.
func (n *node) cpuUsage() float64 {
	if n.cpuUse != nil {
		return *n.cpuUse
	}
	return round2(n.load[0] * 10)
}

func metricGroup(k string) string {
	switch {
	case strings.HasPrefix(k, "packets."), strings.HasPrefix(k, "bytes."):
		return "packets"
	case strings.HasPrefix(k, "messages."):
		return "messages"
	case strings.HasPrefix(k, "delivery."):
		return "delivery"
	case strings.HasPrefix(k, "client."):
		return "client"
	case strings.HasPrefix(k, "session."):
		return "session"
	case strings.HasPrefix(k, "authorization."):
		return "acl"
	case strings.HasPrefix(k, "authentication."):
		return "authn"
	default:
		return "olp"
	}
}

func (s *Sim) nodeIndex(n *node) int {
	_, i := s.nodeByName(n.name)
	return i
}

func (s *Sim) promStats(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	mode := promMode(r)
	s.mu.Lock()
	fams := s.statsFamilies(mode)
	s.mu.Unlock()
	if !s.wantsJSON(r) {
		writePromText(w, fams)
		return
	}
	groups := []string{"stats", "metrics", "packets", "messages", "delivery", "client", "session", "cluster",
		"olp", "acl", "authn", "certs", "cluster_rpc", "license"}
	out := make(map[string]any, len(groups))
	for _, g := range groups {
		out[g] = groupJSON(fams, g, mode)
	}
	writeJSON(w, http.StatusOK, out)
}

// groupJSON renders one JSON group: an object of name → value, or, in
// unaggregated mode, a list of per-node objects (cluster-wide values in an
// item without node).
func groupJSON(fams []*promFamily, group, mode string) any {
	if mode != modeUnaggregated {
		m := map[string]any{}
		for _, f := range fams {
			if f.group != group {
				continue
			}
			var sum float64
			for _, s := range f.samples {
				sum += s.value
			}
			m[f.name] = sum
		}
		return m
	}
	byNode := map[string]map[string]any{}
	var order []string
	for _, f := range fams {
		if f.group != group {
			continue
		}
		for _, s := range f.samples {
			item, ok := byNode[s.node]
			if !ok {
				item = map[string]any{}
				if s.node != "" {
					item["node"] = s.node
				}
				byNode[s.node] = item
				order = append(order, s.node)
			}
			item[f.name] = s.value
		}
	}
	list := make([]any, 0, len(order))
	for _, n := range order {
		list = append(list, byNode[n])
	}
	return list
}

// ---- /prometheus/data_integration (emqx-api.md §7.2) ----

type diSeries struct {
	name, typ string
	and       bool // aggregated with logical AND (enable/status)
}

var ruleSeries = []diSeries{
	{"emqx_rule_enable", "gauge", true}, {"emqx_rule_matched", "counter", false}, {"emqx_rule_passed", "counter", false},
	{"emqx_rule_failed", "counter", false}, {"emqx_rule_failed_exception", "counter", false},
	{"emqx_rule_failed_no_result", "counter", false}, {"emqx_rule_actions_total", "counter", false},
	{"emqx_rule_actions_success", "counter", false}, {"emqx_rule_actions_failed", "counter", false},
	{"emqx_rule_actions_failed_out_of_service", "counter", false}, {"emqx_rule_actions_failed_unknown", "counter", false},
	{"emqx_rule_actions_discarded", "counter", false},
}

var actionSeries = []diSeries{
	{"emqx_action_enable", "gauge", true}, {"emqx_action_status", "gauge", true},
	{"emqx_action_matched", "counter", false}, {"emqx_action_success", "counter", false},
	{"emqx_action_failed", "counter", false}, {"emqx_action_dropped", "counter", false},
	{"emqx_action_dropped_other", "counter", false}, {"emqx_action_dropped_expired", "counter", false},
	{"emqx_action_dropped_queue_full", "counter", false}, {"emqx_action_dropped_resource_not_found", "counter", false},
	{"emqx_action_dropped_resource_stopped", "counter", false}, {"emqx_action_received", "counter", false},
	{"emqx_action_late_reply", "counter", false}, {"emqx_action_retried", "counter", false},
	{"emqx_action_retried_success", "counter", false}, {"emqx_action_retried_failed", "counter", false},
	{"emqx_action_inflight", "gauge", false}, {"emqx_action_queuing", "gauge", false},
}

var connectorSeries = []diSeries{{"emqx_connector_enable", "gauge", true}, {"emqx_connector_status", "gauge", true}}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *Sim) ruleValue(ru *rule, ni int, name string) float64 {
	c := ru.perNode[ni]
	switch name {
	case "emqx_rule_enable":
		return b2f(ru.enable)
	case "emqx_rule_matched":
		return float64(c.matched)
	case "emqx_rule_passed":
		return float64(c.passed)
	case "emqx_rule_failed":
		return float64(c.failed)
	case "emqx_rule_failed_exception":
		return float64(c.failedException)
	case "emqx_rule_failed_no_result":
		return float64(c.failedNoResult)
	case "emqx_rule_actions_total":
		return float64(c.actTotal)
	case "emqx_rule_actions_success":
		return float64(c.actSuccess)
	case "emqx_rule_actions_failed":
		return float64(c.actFailed)
	case "emqx_rule_actions_failed_out_of_service":
		return float64(c.actOOS)
	case "emqx_rule_actions_failed_unknown":
		return float64(c.actUnknown)
	case "emqx_rule_actions_discarded":
		return float64(c.actDisc)
	}
	return 0
}

func (s *Sim) actionValue(a *action, n *node, ni int, name string) float64 {
	c := a.perNode[ni]
	switch name {
	case "emqx_action_enable":
		return b2f(a.enable)
	case "emqx_action_status":
		return b2f(a.enable && s.connStatusOn(a.conn, n) == "connected")
	case "emqx_action_matched":
		return float64(c.matched)
	case "emqx_action_success":
		return float64(c.success)
	case "emqx_action_failed":
		return float64(c.failed)
	case "emqx_action_dropped":
		return float64(c.dropped)
	case "emqx_action_dropped_resource_stopped":
		return float64(c.droppedStopped)
	case "emqx_action_received":
		return float64(c.received)
	}
	return 0
}

func (s *Sim) connectorValue(c *connector, n *node, name string) float64 {
	if name == "emqx_connector_enable" {
		return b2f(c.enable)
	}
	return b2f(s.connStatusOn(c, n) == "connected")
}

type diItem struct {
	id    string
	value func(n *node, ni int, name string) float64
}

// diFamilies builds the data-integration families and the JSON lists.
func (s *Sim) diFamilies(mode string, wantJSON bool) ([]*promFamily, map[string]any) {
	nodes := s.promNodes(mode)
	actionsCount := 0
	for _, ru := range s.rules {
		actionsCount += len(ru.actions)
	}
	overview := []struct {
		name string
		v    int
	}{
		{"emqx_rules_count", len(s.rules)}, {"emqx_actions_count", actionsCount},
		{"emqx_connectors_count", len(s.connectors)}, {"emqx_schema_registrys_count", 0},
	}
	var fams []*promFamily
	ov := map[string]any{}
	for _, o := range overview {
		f := &promFamily{name: o.name, typ: "gauge"}
		f.add("", "", float64(o.v))
		fams = append(fams, f)
		ov[o.name] = o.v
	}
	rules := make([]diItem, 0, len(s.rules))
	for _, ru := range s.rules {
		rules = append(rules, diItem{ru.id, func(_ *node, ni int, name string) float64 { return s.ruleValue(ru, ni, name) }})
	}
	acts := make([]diItem, 0, len(s.actions))
	for _, a := range s.actions {
		acts = append(acts, diItem{a.id(), func(n *node, ni int, name string) float64 { return s.actionValue(a, n, ni, name) }})
	}
	conns := make([]diItem, 0, len(s.connectors))
	for _, c := range s.connectors {
		conns = append(conns, diItem{c.id(), func(n *node, _ int, name string) float64 { return s.connectorValue(c, n, name) }})
	}
	rs := ruleSeries
	if !s.rel.ruleActionsDiscarded() {
		rs = rs[:len(rs)-1]
	}
	out := map[string]any{"data_integration_overview": ov}
	for _, grp := range []struct {
		key    string
		series []diSeries
		items  []diItem
	}{{"rules", rs, rules}, {"actions", actionSeries, acts}, {"connectors", connectorSeries, conns}} {
		var list []map[string]any
		index := map[string]map[string]any{}
		for _, ser := range grp.series {
			f := &promFamily{name: ser.name, typ: ser.typ}
			for _, it := range grp.items {
				for _, smp := range s.diSamples(mode, nodes, ser, it) {
					f.samples = append(f.samples, smp)
					if !wantJSON {
						continue
					}
					key := smp.node + "\x00" + it.id
					item, ok := index[key]
					if !ok {
						item = map[string]any{"id": it.id}
						if smp.node != "" {
							item["node"] = smp.node
						}
						index[key] = item
						list = append(list, item)
					}
					item[ser.name] = smp.value
				}
			}
			fams = append(fams, f)
		}
		if list == nil {
			list = []map[string]any{}
		}
		out[grp.key] = list
	}
	return fams, out
}

func (s *Sim) diSamples(mode string, nodes []*node, ser diSeries, it diItem) []promSample {
	if len(nodes) == 0 {
		return nil
	}
	if mode == modeUnaggregated {
		out := make([]promSample, 0, len(nodes))
		for _, n := range nodes {
			out = append(out, promSample{node: n.name, id: it.id, value: it.value(n, s.nodeIndex(n), ser.name)})
		}
		return out
	}
	var v float64
	if ser.and {
		v = 1
	}
	for _, n := range nodes {
		x := it.value(n, s.nodeIndex(n), ser.name)
		if ser.and {
			v = min(v, x)
		} else {
			v += x
		}
	}
	return []promSample{{id: it.id, value: v}}
}

func (s *Sim) promDataIntegration(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	mode := promMode(r)
	s.mu.Lock()
	fams, body := s.diFamilies(mode, s.wantsJSON(r))
	s.mu.Unlock()
	if s.wantsJSON(r) {
		writeJSON(w, http.StatusOK, body)
		return
	}
	writePromText(w, fams)
}
