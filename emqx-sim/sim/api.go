package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ecpio/ecp/internal/secret"
)

// Handler returns the HTTP handler serving the EMQX API under /api/v5, the
// /status probe, the Prometheus endpoints, the dashboard page at / and the
// fault API under /sim/.
func (s *Sim) Handler() http.Handler { return s.handler }

func (s *Sim) routes() http.Handler {
	rt := &router{s: s}
	const v5 = "/api/v5"
	rt.handle(http.MethodPost, v5+"/login", authNone, s.login)
	rt.handle(http.MethodPost, v5+"/logout", authBearerOnly, s.logout)
	rt.handle(http.MethodGet, v5+"/api_key", authBearerOnly, s.listAPIKeys)
	rt.handle(http.MethodPost, v5+"/api_key", authBearerOnly, s.createAPIKey)
	rt.handle(http.MethodGet, v5+"/api_key/{name}", authBearerOnly, s.getAPIKey)
	rt.handle(http.MethodPut, v5+"/api_key/{name}", authBearerOnly, s.updateAPIKey)
	rt.handle(http.MethodDelete, v5+"/api_key/{name}", authBearerOnly, s.deleteAPIKey)
	rt.handle(http.MethodGet, v5+"/users", authBearerOnly, s.listUsers)
	rt.handle(http.MethodPost, v5+"/users", authBearerOnly, s.createUser)
	rt.handle(http.MethodPut, v5+"/users/{username}", authBearerOnly, s.updateUser)
	rt.handle(http.MethodDelete, v5+"/users/{username}", authBearerOnly, s.deleteUser)
	rt.handle(http.MethodPost, v5+"/users/{username}/change_pwd", authBearerOnly, s.changePassword)

	rt.handle(http.MethodGet, "/status", authNone, s.status)
	rt.handle(http.MethodGet, v5+"/status", authNone, s.status)
	rt.handle(http.MethodGet, v5+"/nodes", authAny, s.listNodes)
	rt.handle(http.MethodGet, v5+"/nodes/{node}", authAny, s.getNode)
	rt.handle(http.MethodGet, v5+"/nodes/{node}/metrics", authAny, s.nodeMetrics)
	rt.handle(http.MethodGet, v5+"/nodes/{node}/stats", authAny, s.nodeStats)
	rt.handle(http.MethodGet, v5+"/cluster", authAny, s.cluster)
	rt.handle(http.MethodGet, v5+"/stats", authAny, s.stats)
	rt.handle(http.MethodGet, v5+"/metrics", authAny, s.metrics)
	rt.handle(http.MethodGet, v5+"/monitor_current", authAny, s.monitorCurrent)
	rt.handle(http.MethodGet, v5+"/monitor_current/nodes/{node}", authAny, s.monitorCurrent)
	rt.handle(http.MethodGet, v5+"/alarms", authAny, s.listAlarms)

	rt.handle(http.MethodGet, v5+"/rules", authAny, s.listRules)
	rt.handle(http.MethodGet, v5+"/rules/{id}", authAny, s.getRule)
	rt.handle(http.MethodPut, v5+"/rules/{id}", authAny, s.putRule)
	rt.handle(http.MethodGet, v5+"/rules/{id}/metrics", authAny, s.ruleMetrics)

	rt.handle(http.MethodGet, v5+"/connectors", authAny, s.listConnectors)
	rt.handle(http.MethodGet, v5+"/connectors/{id}", authAny, s.getConnector)
	rt.handle(http.MethodPut, v5+"/connectors/{id}/enable/{enable}", authAny, s.enableConnector)
	for _, kind := range []string{"actions", "sources"} {
		rt.handle(http.MethodGet, v5+"/"+kind, authAny, s.listActions(kind))
		rt.handle(http.MethodGet, v5+"/"+kind+"/{id}", authAny, s.getAction(kind))
		rt.handle(http.MethodGet, v5+"/"+kind+"/{id}/metrics", authAny, s.actionMetrics(kind))
		if s.rel.countsSessions() {
			rt.handle(http.MethodGet, v5+"/"+kind+"_summary", authAny, s.actionsSummary(kind))
		}
	}

	rt.handle(http.MethodGet, v5+"/license", authAny, s.getLicense)
	rt.handle(http.MethodPost, v5+"/license", authAny, s.postLicense)
	rt.handle(http.MethodGet, v5+"/license/setting", authAny, s.getLicenseSetting)
	rt.handle(http.MethodPut, v5+"/license/setting", authAny, s.putLicenseSetting)
	rt.handle(http.MethodGet, v5+"/configs/log", authAny, s.configsLog)

	rt.handle(http.MethodGet, v5+"/prometheus/stats", authNone, s.promStats)
	rt.handle(http.MethodGet, v5+"/prometheus/data_integration", authNone, s.promDataIntegration)
	rt.handle(http.MethodGet, v5+"/prometheus/auth", authNone, s.promAuth)

	rt.handle(http.MethodGet, "/", authNone, s.dashboard)
	s.simRoutes(rt)
	return rt
}

// ---- auth endpoints (emqx-api.md §2) ----

func (s *Sim) login(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	var body struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
		MFAToken *string `json:"mfa_token"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	if body.Username == nil || body.Password == nil || len(*body.Username) > 100 || len(*body.Password) > 100 ||
		(body.MFAToken != nil && (!s.rel.ee59() || len(*body.MFAToken) > 9)) {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	if code := s.loginFault; code != "" {
		s.mu.Unlock()
		msg := "Auth failed"
		if code == "LOGIN_LOCKED" {
			msg = "Login locked"
		}
		writeError(w, http.StatusUnauthorized, code, msg)
		return
	}
	u, ok := s.users[*body.Username]
	if !ok || u.password.Reveal() != *body.Password {
		s.mu.Unlock()
		writeError(w, http.StatusUnauthorized, "BAD_USERNAME_OR_PWD", "Auth failed")
		return
	}
	tok := s.newToken(u, now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token": tok, "version": s.rel.String(), "license": map[string]any{"edition": "ee"}, "role": u.role,
	})
}

func (s *Sim) logout(w http.ResponseWriter, r *http.Request, p principal, _ params) {
	var body struct {
		Username string `json:"username"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if body.Username != p.username {
		writeError(w, http.StatusUnauthorized, "WRONG_TOKEN_OR_USERNAME", "Token or username wrong")
		return
	}
	delete(s.tokens, p.token)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) apiKeyJSON(k *apiKeyRec, now time.Time, withSecret bool) map[string]any {
	m := map[string]any{
		"name": k.name, "api_key": k.key, "enable": k.enable, "expired_at": "infinity",
		"created_at": k.createdAt.Format("2006-01-02T15:04:05-07:00"), "desc": k.desc, "expired": false, "role": k.role,
	}
	if !k.expiredAt.IsZero() {
		m["expired_at"] = k.expiredAt.Format("2006-01-02T15:04:05-07:00")
		m["expired"] = now.After(k.expiredAt)
	}
	if withSecret {
		m["api_secret"] = k.secret.Reveal()
	}
	return m
}

func (s *Sim) keyByName(name string) *apiKeyRec {
	for _, k := range s.apiKeys {
		if k.name == name {
			return k
		}
	}
	return nil
}

func (s *Sim) listAPIKeys(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	now := s.opts.Now()
	s.mu.Lock()
	out := make([]any, 0, len(s.keyNames))
	for _, n := range s.keyNames {
		out = append(out, s.apiKeyJSON(s.keyByName(n), now, false))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

type apiKeyBody struct {
	Name      *string          `json:"name"`
	Desc      *string          `json:"desc"`
	Enable    *bool            `json:"enable"`
	ExpiredAt *json.RawMessage `json:"expired_at"`
	Role      *string          `json:"role"`
}

func validKeyName(n string) bool {
	if n == "" || len(n) > 256 {
		return false
	}
	for i, c := range n {
		alpha := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !alpha {
			return false
		}
		if !alpha && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func parseExpiredAt(raw *json.RawMessage) (time.Time, bool) {
	if raw == nil || string(*raw) == `"infinity"` || string(*raw) == "null" {
		return time.Time{}, true
	}
	var secs int64
	if err := json.Unmarshal(*raw, &secs); err == nil {
		return time.Unix(secs, 0), true
	}
	var str string
	if err := json.Unmarshal(*raw, &str); err == nil {
		if t, err := time.Parse(time.RFC3339, str); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func (s *Sim) createAPIKey(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	var b apiKeyBody
	if !readJSON(w, r, &b) {
		return
	}
	exp, okExp := parseExpiredAt(b.ExpiredAt)
	role := RoleAdministrator
	if b.Role != nil {
		role = *b.Role
	}
	if b.Name == nil || !validKeyName(*b.Name) || !okExp ||
		(role != RoleAdministrator && role != RoleViewer && role != RolePublisher) {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	if s.keyByName(*b.Name) != nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Name already existed")
		return
	}
	k := &apiKeyRec{name: *b.Name, key: s.randomHex(16), role: role, enable: true, createdAt: now, expiredAt: exp}
	k.secret = secret.String(s.randomHex(32))
	if b.Enable != nil {
		k.enable = *b.Enable
	}
	if b.Desc != nil {
		k.desc = *b.Desc
	}
	s.apiKeys[k.key] = k
	s.keyNames = append(s.keyNames, k.name)
	body := s.apiKeyJSON(k, now, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) getAPIKey(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	now := s.opts.Now()
	s.mu.Lock()
	k := s.keyByName(ps["name"])
	var body map[string]any
	if k != nil {
		body = s.apiKeyJSON(k, now, false)
	}
	s.mu.Unlock()
	if k == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Name NotFound")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) updateAPIKey(w http.ResponseWriter, r *http.Request, _ principal, ps params) {
	var b apiKeyBody
	if !readJSON(w, r, &b) {
		return
	}
	exp, okExp := parseExpiredAt(b.ExpiredAt)
	if !okExp || (b.Role != nil && *b.Role != RoleAdministrator && *b.Role != RoleViewer && *b.Role != RolePublisher) {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	now := s.opts.Now()
	s.mu.Lock()
	k := s.keyByName(ps["name"])
	if k == nil {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Name NotFound")
		return
	}
	if b.Enable != nil {
		k.enable = *b.Enable
	}
	if b.Desc != nil {
		k.desc = *b.Desc
	}
	if b.Role != nil {
		k.role = *b.Role
	}
	if b.ExpiredAt != nil {
		k.expiredAt = exp
	}
	body := s.apiKeyJSON(k, now, false)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) deleteAPIKey(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keyByName(ps["name"])
	if k == nil {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Name NotFound")
		return
	}
	delete(s.apiKeys, k.key)
	for i, n := range s.keyNames {
		if n == k.name {
			s.keyNames = append(s.keyNames[:i], s.keyNames[i+1:]...)
			break
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// ---- cluster (emqx-api.md §3) ----

// self is the node serving the API: the first node.
func (s *Sim) self() *node { return s.nodes[0] }

func (s *Sim) status(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	s.mu.Lock()
	n := s.self()
	running := n.running
	s.mu.Unlock()
	broker, app, code := "started", "running", http.StatusOK
	if !running {
		broker, app, code = "stopped", "not_running", http.StatusServiceUnavailable
	}
	w.Header().Set("retry-after", "15")
	if r.URL.Query().Get("format") == "json" {
		body := map[string]any{"node_name": n.name, "broker_status": broker, "app_status": app}
		if !s.rel.promLicenseMax() {
			body["rel_vsn"] = "e" + s.rel.String()
		}
		if s.rel.ee59() {
			body["cluster"] = s.opts.ClusterName
		}
		b, _ := json.Marshal(body)
		ct := "application/json"
		if !s.rel.atLeast(5, 8, 0) {
			ct = "applicatin/json" // 5.7.x typo, fixed in 5.8
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(code)
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, "Node %s is %s\nemqx is %s", n.name, broker, app)
}

func (s *Sim) logPathValue() string {
	if s.opts.LogDir == "" {
		return "log.file.enable is false, not logging to file."
	}
	return s.opts.LogDir
}

func (s *Sim) nodeJSON(n *node, now time.Time) map[string]any {
	if !n.running {
		return map[string]any{"node": n.name, "node_status": "stopped", "role": n.role}
	}
	used := n.memBase + float64(n.sessions)*64*1024
	return map[string]any{
		"node": n.name, "node_status": "running", "version": s.rel.String(), "edition": "Enterprise",
		"role": n.role, "uptime": now.Sub(n.startedAt).Milliseconds(),
		"connections": n.sessions, "live_connections": n.live, "cluster_sessions": s.clusterSessions(),
		"max_fds": n.maxFDs, "load1": n.load[0], "load5": n.load[1], "load15": n.load[2],
		"memory_total": memString(n.memTotal), "memory_used": memString(used),
		"process_available": n.procAvail, "process_used": 600 + n.sessions*2,
		"otp_release": "26.2.5.2-1/14.2.5.2", "sys_path": "/opt/emqx", "log_path": s.logPathValue(),
	}
}

func (s *Sim) listNodes(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	now := s.opts.Now()
	s.mu.Lock()
	out := make([]any, 0, len(s.nodes))
	for _, n := range s.nodes { // running first, then stopped cores
		if n.running {
			out = append(out, s.nodeJSON(n, now))
		}
	}
	for _, n := range s.nodes {
		if !n.running && n.role == "core" {
			out = append(out, s.nodeJSON(n, now))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// lookupNode answers the 404 (unknown or stopped replicant) and the 500 for a
// stopped node when running is required.
func (s *Sim) lookupNode(w http.ResponseWriter, name string, needRunning bool) *node {
	n, _ := s.nodeByName(name)
	if n == nil || (!n.running && n.role != "core") {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Node not found: "+name)
		return nil
	}
	if needRunning && !n.running {
		writeError(w, http.StatusInternalServerError, "NODE_DOWN", "bad rpc call "+name)
		return nil
	}
	return n
}

func (s *Sim) getNode(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	now := s.opts.Now()
	s.mu.Lock()
	n := s.lookupNode(w, ps["node"], false)
	if n == nil {
		s.mu.Unlock()
		return
	}
	body := s.nodeJSON(n, now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) nodeMetricsJSON(n *node, withNode bool) map[string]any {
	m := make(map[string]any, len(metricKeys)+1)
	if withNode {
		m["node"] = n.name
	}
	for i, k := range metricKeys {
		m[k] = n.metrics[i]
	}
	return m
}

func (s *Sim) nodeStatsJSON(n *node, withNode bool) map[string]any {
	cur := map[string]int{
		"channels": n.sessions, "connections": n.sessions, "live_connections": n.live, "sessions": n.sessions,
		"cluster_sessions": s.clusterSessions(), "delayed": 0, "retained": retainedCount, "suboptions": n.subs,
		"subscribers": n.subs, "subscriptions": n.subs, "subscriptions.shared": 0,
		"topics": topicsPerNode * s.runningCount(),
	}
	m := make(map[string]any, 2*len(statKeys)+1)
	if withNode {
		m["node"] = n.name
	}
	for _, k := range statKeys {
		m[k+".count"] = cur[k]
		m[k+".max"] = max(n.hw[k], cur[k])
	}
	m["durable_subscriptions.count"] = 0
	return m
}

func (s *Sim) nodeMetrics(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	s.mu.Lock()
	n := s.lookupNode(w, ps["node"], true)
	if n == nil {
		s.mu.Unlock()
		return
	}
	body := s.nodeMetricsJSON(n, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) nodeStats(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	s.mu.Lock()
	n := s.lookupNode(w, ps["node"], true)
	if n == nil {
		s.mu.Unlock()
		return
	}
	body := s.nodeStatsJSON(n, true)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) cluster(w http.ResponseWriter, _ *http.Request, _ principal, _ params) {
	s.mu.Lock()
	names := []string{}
	for _, n := range s.runningNodes() {
		names = append(names, n.name)
	}
	self := s.self().name
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"name": s.opts.ClusterName, "nodes": names, "self": self})
}

// boolParam reads an EMQX boolean query parameter.
func boolParam(r *http.Request, name string) (val, set, ok bool) {
	v := r.URL.Query().Get(name)
	switch v {
	case "":
		return false, false, true
	case "true":
		return true, true, true
	case "false":
		return false, true, true
	}
	return false, true, false
}

func (s *Sim) stats(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	agg, _, ok := boolParam(r, "aggregate")
	if !ok {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	s.mu.Lock()
	var body any
	if agg {
		sum := map[string]any{}
		for _, n := range s.runningNodes() {
			for k, v := range s.nodeStatsJSON(n, false) {
				if strings.HasPrefix(k, "retained.") || strings.HasPrefix(k, "topics.") ||
					strings.HasPrefix(k, "subscriptions.shared.") {
					sum[k] = v // cluster-global: taken once
					continue
				}
				prev, _ := sum[k].(int)
				sum[k] = prev + v.(int)
			}
		}
		body = sum
	} else {
		out := []any{}
		for _, n := range s.runningNodes() {
			out = append(out, s.nodeStatsJSON(n, true))
		}
		body = out
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) metrics(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	agg, _, ok := boolParam(r, "aggregate")
	if !ok {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "Invalid request params")
		return
	}
	only := r.URL.Query().Get("node")
	s.mu.Lock()
	var body any
	if agg {
		sum := make(map[string]any, len(metricKeys))
		for i, k := range metricKeys {
			var t int64
			for _, n := range s.runningNodes() {
				t += n.metrics[i]
			}
			sum[k] = t
		}
		body = sum
	} else {
		out := []any{}
		for _, n := range s.runningNodes() {
			if only == "" || only == n.name {
				out = append(out, s.nodeMetricsJSON(n, true))
			}
		}
		body = out
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}

func (s *Sim) monitorCurrent(w http.ResponseWriter, _ *http.Request, _ principal, ps params) {
	now := s.opts.Now()
	s.mu.Lock()
	nodes := s.runningNodes()
	var one *node
	if name, per := ps["node"]; per {
		one, _ = s.nodeByName(name)
		if one == nil || !one.running {
			s.mu.Unlock()
			writeError(w, http.StatusNotFound, "NOT_FOUND", "Node not found: "+name)
			return
		}
		nodes = []*node{one}
	}
	var conns, live, subs, recv, sent int
	var ruleRate, actRate float64
	for _, n := range nodes {
		conns += n.sessions
		live += n.live
		subs += n.subs
		recv += n.rates[0]
		sent += n.rates[1]
		_, ni := s.nodeByName(n.name)
		for _, ru := range s.rules {
			ruleRate += ru.perNode[ni].rate
			if ru.failReason == "" {
				actRate += ru.perNode[ni].rate * float64(len(ru.actions))
			}
		}
	}
	var quota any = s.effectiveMax()
	if s.licenseExpired(now) {
		quota = "expired"
	}
	m := map[string]any{
		"connections": conns, "live_connections": live, "subscriptions": subs,
		"topics": topicsPerNode * s.runningCount(), "retained_msg_count": retainedCount, "shared_subscriptions": 0,
		"received_msg_rate": recv, "sent_msg_rate": sent, "dropped_msg_rate": 0, "persisted_rate": 0,
		"validation_succeeded_rate": 0, "validation_failed_rate": 0,
		"transformation_succeeded_rate": 0, "transformation_failed_rate": 0,
		"license_quota": quota,
	}
	if one == nil {
		m["subscriptions_ram"] = subs
		m["subscriptions_durable"] = 0
		m["disconnected_durable_sessions"] = 0
	} else {
		m["node_uptime"] = now.Sub(one.startedAt).Milliseconds()
	}
	if s.rel.ee59() {
		m["cluster_sessions"] = s.clusterSessions()
	}
	if s.rel.monitorRuleRates() {
		m["rules_matched_rate"] = int(ruleRate + 0.5)
		m["actions_executed_rate"] = int(actRate + 0.5)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, m)
}

// pageParams reads page and limit (defaults 1 and 100, limit 1..10000).
func pageParams(r *http.Request) (page, limit int, ok bool) {
	page, limit = 1, 100
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 {
			return 0, 0, false
		}
		page = p
	}
	if v := q.Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > 10000 {
			return 0, 0, false
		}
		limit = l
	}
	return page, limit, true
}

// paginate slices n items for page/limit and builds EMQX's meta.
func paginate(n, page, limit int, withCount bool) (lo, hi int, meta map[string]any) {
	lo = min((page-1)*limit, n)
	hi = min(lo+limit, n)
	meta = map[string]any{"page": page, "limit": limit, "hasnext": hi < n}
	if withCount {
		meta["count"] = n
	}
	return lo, hi, meta
}

func (s *Sim) listAlarms(w http.ResponseWriter, r *http.Request, _ principal, _ params) {
	page, limit, ok := pageParams(r)
	activated, set, okB := boolParam(r, "activated")
	if !ok || !okB {
		writeError(w, http.StatusBadRequest, "BAD_REQUEST", "page_limit_invalid")
		return
	}
	if !set {
		activated = true
	}
	now := s.opts.Now()
	s.mu.Lock()
	src := s.alarms
	if !activated {
		src = s.history
	}
	lo, hi, meta := paginate(len(src), page, limit, true)
	data := make([]any, 0, hi-lo)
	for _, a := range src[lo:hi] {
		item := map[string]any{
			"node": a.node, "name": a.name, "message": a.message, "details": a.details,
			"activate_at": rfc3339ms(a.activateAt),
		}
		if activated {
			item["duration"] = now.Sub(a.activateAt).Milliseconds()
		} else {
			item["duration"] = a.deactivateAt.Sub(a.activateAt).Milliseconds()
			item["deactivate_at"] = rfc3339ms(a.deactivateAt)
		}
		data = append(data, item)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "meta": meta})
}
