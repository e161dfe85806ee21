package sim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// ---- rules (emqx-api.md §4) ----

type ruleJSON struct {
	ID             string          `json:"id"`
	Name           string          `json:"name"`
	SQL            string          `json:"sql"`
	From           []string        `json:"from"`
	Actions        []any           `json:"actions"`
	Enable         bool            `json:"enable"`
	Description    string          `json:"description"`
	CreatedAt      string          `json:"created_at"`
	LastModifiedAt string          `json:"last_modified_at,omitempty"`
	ActionDetails  *[]actionDetail `json:"action_details,omitempty"`
}

type actionDetail struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Status string `json:"status"`
}

func (s *Sim) ruleJSON(ru *rule) ruleJSON {
	j := ruleJSON{
		ID: ru.id, Name: ru.name, SQL: ru.sql, From: ru.from, Actions: ru.actions, Enable: ru.enable,
		Description: ru.description, CreatedAt: rfc3339ms(ru.createdAt),
	}
	if s.rel.countsSessions() {
		j.LastModifiedAt = rfc3339ms(ru.modifiedAt)
	}
	if s.rel.ee59() {
		d := make([]actionDetail, 0, len(ru.actionIDs))
		for _, aid := range ru.actionIDs {
			typ, name, _ := strings.Cut(aid, ":")
			st := "not_found"
			if a := s.actByID[aid]; a != nil {
				st, _, _ = s.aggregateStatus(a)
			}
			d = append(d, actionDetail{Type: typ, Name: name, Status: st})
		}
		j.ActionDetails = &d
	}
	return j
}

func (s *Sim) listRules(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	page, limit, ok := pageParams(r)
	if !ok {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "page_limit_invalid")
		return
	}
	q := r.URL.Query()
	enable, enableSet, okB := boolParam(r, "enable")
	if !okB {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	likeID, likeFrom, likeDesc := q.Get("like_id"), q.Get("like_from"), q.Get("like_description")
	from, matchFrom := q.Get("from"), q.Get("match_from")
	filtered := enableSet || likeID != "" || likeFrom != "" || likeDesc != "" || from != "" || matchFrom != ""
	keep := func(ru *rule) bool {
		if enableSet && ru.enable != enable {
			return false
		}
		if likeID != "" && !strings.Contains(ru.id, likeID) {
			return false
		}
		if likeDesc != "" && !strings.Contains(ru.description, likeDesc) {
			return false
		}
		if likeFrom != "" && !anyMatch(ru.from, func(f string) bool { return strings.Contains(f, likeFrom) }) {
			return false
		}
		if from != "" && !contains(ru.from, from) {
			return false
		}
		if matchFrom != "" && !anyMatch(ru.from, func(f string) bool { return topicMatch(matchFrom, f) }) {
			return false
		}
		return true
	}
	s.mu.Lock()
	sel := s.rules
	if filtered {
		sel = make([]*rule, 0, len(s.rules))
		for _, ru := range s.rules {
			if keep(ru) {
				sel = append(sel, ru)
			}
		}
	}
	lo, hi, meta := paginate(len(sel), page, limit, !filtered)
	data := make([]ruleJSON, 0, hi-lo)
	for _, ru := range sel[lo:hi] {
		data = append(data, s.ruleJSON(ru))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": meta})
}

func anyMatch(xs []string, f func(string) bool) bool {
	for _, x := range xs {
		if f(x) {
			return true
		}
	}
	return false
}

// topicMatch reports whether topic filter f matches topic name t (MQTT
// wildcards), used for match_from.
func topicMatch(t, f string) bool {
	ts, fs := strings.Split(t, "/"), strings.Split(f, "/")
	for i, seg := range fs {
		if seg == "#" {
			return true
		}
		if i >= len(ts) || (seg != "+" && seg != ts[i]) {
			return false
		}
	}
	return len(ts) == len(fs)
}

func (s *Sim) getRule(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	s.mu.Lock()
	ru := s.ruleByID[ps["id"]]
	if ru == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Rule Id Not Found")
		return
	}
	body := s.ruleJSON(ru)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// putRule supports what the dashboard uses to toggle a rule: {"enable": bool}
// (plus description).
func (s *Sim) putRule(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
	var body struct {
		Enable      *bool   `json:"enable"`
		Description *string `json:"description"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	ru := s.ruleByID[ps["id"]]
	if ru == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Rule Id Not Found")
		return
	}
	if body.Enable != nil {
		ru.enable = *body.Enable
	}
	if body.Description != nil {
		ru.description = *body.Description
	}
	ru.modifiedAt = now
	out := s.ruleJSON(ru)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) ruleCountersJSON(c ruleCounters) map[string]any {
	m := map[string]any{
		"matched": c.matched, "passed": c.passed, "failed": c.failed,
		"failed.exception": c.failedException, "failed.no_result": c.failedNoResult,
		"actions.total": c.actTotal, "actions.success": c.actSuccess, "actions.failed": c.actFailed,
		"actions.failed.out_of_service": c.actOOS, "actions.failed.unknown": c.actUnknown,
		"matched.rate": c.rate, "matched.rate.max": c.rateMax, "matched.rate.last5m": c.rate,
	}
	if s.rel.ruleActionsDiscarded() {
		m["actions.discarded"] = c.actDisc
	}
	return m
}

func (s *Sim) ruleMetrics(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	s.mu.Lock()
	ru := s.ruleByID[ps["id"]]
	if ru == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Rule Id Not Found")
		return
	}
	var sum ruleCounters
	nodeMetrics := []any{}
	for ni, n := range s.nodes {
		if !n.running {
			continue
		}
		c := ru.perNode[ni]
		sum.matched += c.matched
		sum.passed += c.passed
		sum.failed += c.failed
		sum.failedException += c.failedException
		sum.failedNoResult += c.failedNoResult
		sum.actTotal += c.actTotal
		sum.actSuccess += c.actSuccess
		sum.actFailed += c.actFailed
		sum.actOOS += c.actOOS
		sum.actUnknown += c.actUnknown
		sum.actDisc += c.actDisc
		sum.rate = round2(sum.rate + c.rate)
		sum.rateMax = round2(sum.rateMax + c.rateMax)
		nodeMetrics = append(nodeMetrics, map[string]any{"node": n.name, "metrics": s.ruleCountersJSON(c)})
	}
	body := map[string]any{"id": ru.id, "metrics": s.ruleCountersJSON(sum), "node_metrics": nodeMetrics}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

// ---- connectors, actions, sources (emqx-api.md §5) ----

type nodeStatus struct {
	Node         string `json:"node"`
	Status       string `json:"status"`
	StatusReason string `json:"status_reason,omitempty"`
}

// connNodeStatus lists the connector's status on every running node.
func (s *Sim) connNodeStatus(c *connector) []nodeStatus {
	out := make([]nodeStatus, 0, len(s.nodes))
	for _, n := range s.nodes {
		if !n.running {
			continue
		}
		ns := nodeStatus{Node: n.name, Status: s.connStatusOn(c, n)}
		if ns.Status == "disconnected" {
			ns.StatusReason = c.failed[n.name]
		}
		out = append(out, ns)
	}
	return out
}

// actNodeStatus: an action follows its connector's channel; a disabled
// action is stopped.
func (s *Sim) actNodeStatus(a *action) []nodeStatus {
	out := s.connNodeStatus(a.conn)
	for i := range out {
		if !a.enable {
			out[i] = nodeStatus{Node: out[i].Node, Status: "stopped"}
		} else if out[i].Status == "stopped" {
			out[i].Status = "disconnected"
		}
	}
	return out
}

// aggregate folds per-node statuses: one status if all agree, else
// inconsistent; the first reason is copied to the top (§5.1).
func aggregate(ns []nodeStatus) (status, reason string) {
	for i, n := range ns {
		if i == 0 {
			status = n.Status
		} else if n.Status != status {
			status = "inconsistent"
		}
		if reason == "" && n.StatusReason != "" {
			reason = n.StatusReason
		}
	}
	if status == "" {
		status = "disconnected"
	}
	return status, reason
}

func (s *Sim) aggregateStatus(a *action) (string, string, []nodeStatus) {
	ns := s.actNodeStatus(a)
	st, reason := aggregate(ns)
	return st, reason, ns
}

func (s *Sim) connectorJSON(c *connector) map[string]any {
	m := make(map[string]any, len(c.config)+10)
	for k, v := range c.config {
		m[k] = v
	}
	ns := s.connNodeStatus(c)
	st, reason := aggregate(ns)
	m["type"], m["name"], m["enable"], m["description"], m["tags"] = c.typ, c.name, c.enable, "", []string{}
	m["status"], m["node_status"], m["actions"] = st, ns, nonNil(c.actions)
	if reason != "" {
		m["status_reason"] = reason
	}
	if s.rel.connectorSources() {
		m["sources"] = nonNil(c.sources)
	}
	return m
}

func nonNil(xs []string) []string {
	if xs == nil {
		return []string{}
	}
	return xs
}

func (s *Sim) listConnectors(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	s.mu.Lock()
	out := make([]any, 0, len(s.connectors))
	for _, c := range s.connectors {
		out = append(out, s.connectorJSON(c))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// connectorLookup resolves a "type:name" id with EMQX's 404 texts.
func (s *Sim) connectorLookup(w http.ResponseWriter, id string) *connector {
	typ, name, ok := strings.Cut(id, ":")
	if !ok || typ == "" || name == "" {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Invalid connector ID, it should be of the form <type>:<name>")
		return nil
	}
	c := s.connByID[id]
	if c == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND",
			"Connector lookup failed: connector named '"+name+"' of type "+typ+" does not exist.")
	}
	return c
}

func (s *Sim) getConnector(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	s.mu.Lock()
	c := s.connectorLookup(w, ps["id"])
	if c == nil {
		s.mu.Unlock()
		return
	}
	body := s.connectorJSON(c)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) enableConnector(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	var on bool
	switch ps["enable"] {
	case "true":
		on = true
	case "false":
	default:
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.connectorLookup(w, ps["id"])
	if c == nil {
		return
	}
	c.enable = on
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) actionMap(kind string) (map[string]*action, []*action) {
	if kind == "sources" {
		return s.srcByID, s.sources
	}
	return s.actByID, s.actions
}

func (s *Sim) actionJSON(a *action, summary bool) map[string]any {
	st, reason, ns := s.aggregateStatus(a)
	m := map[string]any{
		"type": a.typ, "name": a.name, "enable": a.enable, "description": "",
		"status": st, "node_status": ns, "rules": nonNil(a.rules),
	}
	if reason != "" {
		m["status_reason"] = reason
	}
	if s.rel.countsSessions() {
		m["created_at"] = a.createdAt.UnixMilli()
		m["last_modified_at"] = a.modifiedAt.UnixMilli()
	}
	if summary {
		return m
	}
	m["connector"] = a.conn.name
	m["tags"] = []string{}
	m["parameters"] = a.parameters
	m["resource_opts"] = a.resOpts
	m["error"] = "undefined"
	if reason != "" {
		m["error"] = reason
	}
	return m
}

func (s *Sim) listActions(kind string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		s.mu.Lock()
		_, list := s.actionMap(kind)
		out := make([]any, 0, len(list))
		for _, a := range list {
			out = append(out, s.actionJSON(a, false))
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Sim) actionsSummary(kind string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
		s.mu.Lock()
		_, list := s.actionMap(kind)
		out := make([]any, 0, len(list))
		for _, a := range list {
			out = append(out, s.actionJSON(a, true))
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Sim) actionLookup(w http.ResponseWriter, kind, id string) *action {
	byID, _ := s.actionMap(kind)
	typ, name, ok := strings.Cut(id, ":")
	a := byID[id]
	if !ok || a == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND",
			"Bridge lookup failed: bridge named '"+name+"' of type "+typ+" does not exist.")
		return nil
	}
	return a
}

func (s *Sim) getAction(kind string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
		s.mu.Lock()
		a := s.actionLookup(w, kind, ps["id"])
		if a == nil {
			s.mu.Unlock()
			return
		}
		body := s.actionJSON(a, false)
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, body)
	}
}

func (s *Sim) actionCountersJSON(c actionCounters) map[string]any {
	m := map[string]any{
		"matched": c.matched, "success": c.success, "failed": c.failed, "dropped": c.dropped,
		"dropped.other": c.droppedOther, "dropped.expired": c.droppedExpired,
		"dropped.queue_full": c.droppedQueueFull, "dropped.resource_not_found": c.droppedNotFound,
		"dropped.resource_stopped": c.droppedStopped, "retried": c.retried, "late_reply": c.lateReply,
		"received": c.received, "inflight": 0, "queuing": 0, "rate": c.rate, "rate_last5m": c.rate, "rate_max": c.rate,
	}
	if s.rel.queuingBytes() {
		m["queuing_bytes"] = 0
	}
	return m
}

func (s *Sim) actionMetrics(kind string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
		s.mu.Lock()
		a := s.actionLookup(w, kind, ps["id"])
		if a == nil {
			s.mu.Unlock()
			return
		}
		var sum actionCounters
		nm := []any{}
		for ni, n := range s.nodes {
			if !n.running {
				continue
			}
			c := a.perNode[ni]
			sum.matched += c.matched
			sum.success += c.success
			sum.failed += c.failed
			sum.dropped += c.dropped
			sum.droppedStopped += c.droppedStopped
			sum.received += c.received
			nm = append(nm, map[string]any{"node": n.name, "metrics": s.actionCountersJSON(c)})
		}
		body := map[string]any{"metrics": s.actionCountersJSON(sum), "node_metrics": nm}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, body)
	}
}

// ---- licence (emqx-api.md §6) ----

func (s *Sim) getLicense(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	now := s.opts.Now()
	s.mu.Lock()
	body := s.licenseBody(now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) postLicense(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	var body struct {
		Key *string `json:"key"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if body.Key == nil {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	var lic License
	switch {
	case *body.Key == "default":
		lic = s.defaultLicense()
	case *body.Key == "evaluation" && s.rel.ee59():
		lic = s.evaluationLicense()
	default:
		var err error
		lic, err = parseLicenseKey(*body.Key)
		if err != nil || (lic.Type == 2 && !s.rel.ee59()) {
			msg := "Bad license key"
			if s.rel.ee59() {
				msg = "Bad license key, see logs for more details"
			}
			writeError(w, http.StatusBadRequest, "BAD_REQUEST", msg)
			return
		}
	}
	now := s.opts.Now()
	s.mu.Lock()
	s.lic = lic
	out := s.licenseBody(now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) getLicenseSetting(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	s.mu.Lock()
	body := s.settingBody()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) putLicenseSetting(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	var body map[string]json.RawMessage
	if !readJSON(w, r, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.setting
	for k, raw := range body {
		switch k {
		case "connection_low_watermark", "connection_high_watermark":
			var v string
			if err := json.Unmarshal(raw, &v); err != nil {
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Bad license setting")
				return
			}
			if _, err := parsePercent(v); err != nil {
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Bad license setting")
				return
			}
			if k == "connection_low_watermark" {
				next.low = v
			} else {
				next.high = v
			}
		case "dynamic_max_connections":
			var v int
			if err := json.Unmarshal(raw, &v); err != nil || v < 0 {
				writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Bad license setting")
				return
			}
			if s.lic.CustomerType == 3 { // silently dropped otherwise (§6.3)
				next.dynamic = v
			}
		}
	}
	low, _ := parsePercent(next.low)
	high, _ := parsePercent(next.high)
	if low >= high {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Bad license setting")
		return
	}
	s.setting = next
	writeJSON(w, http.StatusOK, s.settingBody())
}

// ---- configs/log (emqx-api.md §8.1) ----

func (s *Sim) configsLog(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	size := any(formatBytes(s.opts.LogRotationSize))
	body := map[string]any{
		"console": map[string]any{
			"enable": s.opts.LogDir == "", "level": s.opts.LogLevel, "formatter": s.opts.LogFormat,
			"time_offset": "system", "timestamp_format": "auto", "single_line": true,
		},
		"file": map[string]any{"default": map[string]any{
			"enable": s.opts.LogDir != "", "level": s.opts.LogLevel, "formatter": s.opts.LogFormat,
			"path": "${EMQX_LOG_DIR}/emqx.log", "rotation_count": s.opts.LogRotationCount, "rotation_size": size,
			"time_offset": "system", "timestamp_format": "auto", "single_line": true,
		}},
		"throttling": map[string]any{"time_window": "1m"},
	}
	writeJSON(w, http.StatusOK, body)
}

// formatBytes renders a byte size the way EMQX prints rotation_size ("50MB").
func formatBytes(b int64) string {
	switch {
	case b%(1<<30) == 0:
		return strconv.FormatInt(b>>30, 10) + "GB"
	case b%(1<<20) == 0:
		return strconv.FormatInt(b>>20, 10) + "MB"
	case b%(1<<10) == 0:
		return strconv.FormatInt(b>>10, 10) + "KB"
	}
	return strconv.FormatInt(b, 10)
}
