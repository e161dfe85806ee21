// Package agentproto is the wire contract between ecp and agent-exporter.
//
// It holds the paths, the JSON bodies and the few rules both sides must agree
// on, and nothing else: it imports neither side, so either can be replaced as
// long as it speaks this package. The agent always opens the connection; ecp
// never calls the agent.
//
// Every call but Register authenticates with the agent's own credential in
// "Authorization: Bearer <credential>". Register authenticates with the
// single-use registration token in the request body. Errors use ecp's
// envelope, ErrorBody.
package agentproto

import (
	"bytes"
	"encoding/json"
	"maps"
	"time"
)

// Paths of the agent-side API, relative to ecp's base URL.
const (
	PathRegister   = "/api/v1/agent/register"
	PathReport     = "/api/v1/agent/report"
	PathDesired    = "/api/v1/agent/desired"
	PathWrite      = "/api/v1/agent/write"
	PathLogs       = "/api/v1/agent/logs"
	PathUnregister = "/api/v1/agent/unregister"
	// PathDashboardSession takes the agent's answer to a
	// DashboardSessionRequest (POST, DashboardSessionReply, 204).
	PathDashboardSession = "/api/v1/agent/dashboard-session"
)

// Query parameters of PathDesired, and of PathReport for a held report.
const (
	// QueryAfter is the revision the agent already holds; the call returns
	// as soon as the desired state has a newer one.
	QueryAfter = "after"
	// QueryTimeout bounds the long-poll, as a Go duration ("30s"). ecp caps
	// it at MaxDesiredWait and answers 204 No Content when nothing changed.
	QueryTimeout = "timeout"
)

// A held report is a report that is also the desired-state long-poll, so
// that an agent makes one request per interval instead of two:
//
//	POST PathReport?after=<revision>&timeout=<duration>
//
// ecp records the report on arrival exactly as an unheld one (liveness,
// status, monitoring: nothing waits for the hold) and refuses it as one
// (400, 401, 429 beyond the reports in flight, 503), at once and never
// held. Then, when the desired revision is newer than after, it answers at
// once; otherwise it holds the reply like a PathDesired poll (the same
// limit of held polls, capped at MaxDesiredWait, answered early when ecp
// shuts down) and answers when the desired state changes or the timeout
// passes. The reply is always 200 with a ReportResponse carrying the
// desired state then in force, never 204: a report always gets its reply.
//
// Every reply of an ecp that honoured the query carries HeaderReportHeld.
// An ecp older than held reports ignores the query and answers at once
// without it; so does an ecp holding all the polls it may (MaxWaiters),
// whose next poll would be refused 429. Either way the agent long-polls
// PathDesired as before. Both query parameters must be given for a hold;
// an agent that gives neither gets the immediate reply it always got.
const (
	// HeaderReportHeld is set on the reply to a held report when ecp
	// honoured the hold: the reply came when the desired state was newer
	// than after, or at the timeout. Without it the agent polls PathDesired.
	HeaderReportHeld = "X-Ecp-Report-Held"
	// ReportHeld is the value of HeaderReportHeld.
	ReportHeld = "true"
	// HeaderServerTiming (the W3C Server-Timing header) is set on a
	// held report's reply as "record;dur=<milliseconds>": how long ecp took
	// to record the report, which the reply's own latency no longer shows.
	// Informational; agents need not read it.
	HeaderServerTiming = "Server-Timing"
)

// Timing rules both sides share.
const (
	// DefaultReportInterval is used until ecp says otherwise in a
	// RegisterResponse or ReportResponse.
	DefaultReportInterval = 15 * time.Second
	// SilentIntervals is how many report intervals may pass without a
	// report before ecp marks the cluster abnormal with AgentSilent.
	SilentIntervals = 3
	// ReconnectBackoffMax is the longest an agent waits between attempts
	// to reach ecp (jittered exponential backoff from one second). After a
	// restart ecp's sweeper allows for it: an agent that failed for a
	// while may be that long from its next attempt.
	ReconnectBackoffMax = 2 * time.Minute
	// MaxDesiredWait is the longest ecp holds a desired-state long-poll.
	MaxDesiredWait = 60 * time.Second
	// MinAgentInterval and MaxAgentInterval bound the collection interval
	// an agent reports (ReportRequest.IntervalSeconds); ecp refuses a
	// report outside them.
	MinAgentInterval = time.Second
	MaxAgentInterval = 5 * time.Minute
)

// HeaderRetryAfter is set with 429 and 503 replies; the agent waits at least
// that many seconds (plus its own jitter) before trying again.
const HeaderRetryAfter = "Retry-After"

// A request ecp may hold (the desired-state long-poll, QueryTimeout) holds
// its connection while held. When ecp holds so many connections that it
// would soon refuse new ones (docs/scaling.md, "Overload"), it holds none:
// it answers such a request at once (204, or the newer state), closes the
// connection after the answer, and sets HeaderHold to HoldNextSend. The
// agent then sends no request ecp may hold before its next scheduled send
// (its next report, or a tick's remote write or logs), which opens a new
// connection. So each agent holds a connection only for a moment per
// interval and every agent is served, instead of the first ones holding
// every connection and the rest being refused.
const (
	HeaderHold   = "X-Ecp-Hold"
	HoldNextSend = "next-send"
)

// Remote write (PathWrite) is Prometheus remote write 1.0: a snappy block
// of a prompb.WriteRequest with Content-Encoding: snappy, Content-Type:
// application/x-protobuf and X-Prometheus-Remote-Write-Version: 0.1.0. ecp
// answers 204 when it took the samples, and 429 with Retry-After when its
// forwarding queue is full (the agent keeps the samples and retries).
const (
	// HeaderRemoteWrite is set on a 204 reply to PathWrite when ecp has no
	// remote-write backend: the samples were counted and not stored, and
	// the agent may pause pushing for a while.
	HeaderRemoteWrite = "X-Ecp-Remote-Write"
	// RemoteWriteDisabled is the value of HeaderRemoteWrite then.
	RemoteWriteDisabled = "disabled"
)

// RegisterRequest is the body of PathRegister.
type RegisterRequest struct {
	// Token is the registration token rendered by ecp; single use.
	Token string `json:"token"`
	// AgentVersion is the agent's build version.
	AgentVersion string `json:"agentVersion"`
	// Hostname of the machine the agent runs on, for the operator.
	Hostname string `json:"hostname,omitempty"`
	// DashboardURL and APIURL are what the operator gave to register; ecp
	// shows the dashboard URL and may use it as the service URL when the
	// entry has none. The EMQX password never travels to ecp.
	DashboardURL string `json:"dashboardUrl"`
	APIURL       string `json:"apiUrl"`
	// LogCollection is the initial log collection choice.
	LogCollection LogCollection `json:"logCollection"`
	// Cluster is the identity of the EMQX cluster the agent sits on, read
	// from EMQX just before registering. ecp refuses the registration with
	// CodeClusterAlreadyManaged when another entry's agent holds it. Nil
	// (an agent older than the field, or EMQX did not say) defers the
	// check to the first report that carries EMQXStatus.ClusterName.
	Cluster *ClusterIdentity `json:"cluster,omitempty"`
}

// ClusterIdentity says which EMQX cluster an agent is on, from what EMQX
// itself exposes: the cluster name (GET /api/v5/cluster "name", the
// cluster.name setting, "emqxcl" by default) and the names of its nodes
// (GET /api/v5/nodes, stopped core nodes included).
//
// Two identities are the same cluster when they share the cluster name and
// at least one node name. Node names alone are not enough (emqx@127.0.0.1
// and emqx@10.0.0.1 recur in every lab), the name alone is not either
// (most clusters keep "emqxcl"), and the whole node set is not stable:
// adding or removing a node changes it while the cluster stays the same,
// and a node that joins a second managed cluster is exactly the case to
// catch. The licence is no identity: one key is installed on many
// clusters. Two distinct clusters that share a name and a node name (the
// defaults, on separate private networks) look like one; giving one of
// them its own cluster.name tells them apart.
type ClusterIdentity struct {
	Name  string   `json:"name"`
	Nodes []string `json:"nodes"`
}

// RegisterResponse is the reply to a successful registration.
type RegisterResponse struct {
	ClusterID string `json:"clusterId"`
	Project   string `json:"project"`
	// Credential authenticates every later call; ecp keeps only its hash.
	// The agent stores it with mode 0600 and never logs it.
	Credential string `json:"credential"`
	// ReportIntervalSeconds is how often the agent reports.
	ReportIntervalSeconds int `json:"reportIntervalSeconds"`
	// FirstReportDelayMillis is how long after registering the agent sends
	// its first report, and so where in the interval its reports fall from
	// then on. Zero (at once) for a registration on its own; during a burst
	// of registrations (a fleet rolled out at once) ecp spreads it over the
	// interval by cluster, so that those agents do not all report in the
	// same instant, interval after interval.
	FirstReportDelayMillis int64 `json:"firstReportDelayMillis,omitempty"`
	// Desired is the state the agent must apply at once.
	Desired DesiredState `json:"desired"`
}

// LogCollection says whether the agent tails EMQX's log directory.
type LogCollection struct {
	Enabled bool   `json:"enabled"`
	Dir     string `json:"dir,omitempty"`
}

// DesiredState is what ecp wants the agent to enforce. Revision grows with
// every change; an agent applies a state only if its revision is newer than
// the one it holds.
type DesiredState struct {
	Revision int64 `json:"revision"`
	// MaxConnections is the connection limit to keep on EMQX through its
	// licence setting (dynamic_max_connections).
	MaxConnections int `json:"maxConnections"`
	// LogCollection switches log shipping on or off.
	LogCollection LogCollection `json:"logCollection"`
	// Unregister tells the agent to forget its credential and stop: the
	// entry was deleted or re-registered elsewhere.
	Unregister bool `json:"unregister,omitempty"`
	// DashboardSessions are pending requests of a user of ecp to open the
	// cluster's dashboard without a second login. Each lives about 30 s;
	// the agent answers each id once at PathDashboardSession. A new request
	// raises Revision, so it wakes the long-poll.
	DashboardSessions []DashboardSessionRequest `json:"dashboardSessions,omitempty"`
	// Hold, when set, tells the agent to write nothing to EMQX (no
	// dynamic_max_connections) because the cluster it reports is held by
	// another entry's agent (Code ProblemClusterManagedElsewhere); it keeps
	// collecting and reporting, and enforces again once a desired state
	// without Hold arrives.
	Hold *Problem `json:"hold,omitempty"`
}

// ReportRequest is sent every report interval; it is a snapshot of one
// collection, never a delta, so a lost report loses nothing.
type ReportRequest struct {
	// CollectedAt is when the agent finished the collection.
	CollectedAt time.Time `json:"collectedAt"`
	// AgentVersion is the agent's build version.
	AgentVersion string `json:"agentVersion"`
	// AppliedRevision is the desired-state revision the agent has applied.
	AppliedRevision int64 `json:"appliedRevision"`
	// EMQX is what the agent saw of the cluster. When it could not reach
	// EMQX, Reachable is false, Problem says why and the rest is empty.
	EMQX EMQXStatus `json:"emqx"`
	// IntervalSeconds is how often the agent really collects (and pushes
	// samples), in whole seconds rounded up: ecp's report interval unless
	// the operator pinned one. It reports at the first collection after
	// each report interval, so ecp allows SilentIntervals of the longer of
	// the two before it calls the agent silent. Zero (an agent older than
	// the field) means ecp's interval.
	IntervalSeconds int `json:"intervalSeconds,omitempty"`
	// IntervalPinned says the operator chose IntervalSeconds; otherwise
	// the agent follows ecp's, and a difference is one it has not yet
	// caught up with (ecp's interval changed since the last reply).
	IntervalPinned bool `json:"intervalPinned,omitempty"`
}

// EMQXStatus is the cluster snapshot carried by a report.
type EMQXStatus struct {
	Reachable bool `json:"reachable"`
	// Problem is set when Reachable is false or when the agent could not
	// apply the desired state.
	Problem *Problem `json:"problem,omitempty"`

	Version string `json:"version,omitempty"`
	Edition string `json:"edition,omitempty"`
	// StartedAt is the start of the longest-running node (now - uptime).
	StartedAt time.Time `json:"startedAt,omitzero"`
	Nodes     []Node    `json:"nodes,omitempty"`
	// Connections counts sessions (EMQX "connections"), LiveConnections
	// connected clients, both summed over running nodes.
	Connections     int `json:"connections"`
	LiveConnections int `json:"liveConnections"`
	// MaxConnections is the effective licence limit EMQX reports.
	MaxConnections int `json:"maxConnections"`
	// ClusterName is EMQX's cluster name (GET /api/v5/cluster); with the
	// names in Nodes it is the cluster's identity (see ClusterIdentity).
	// Empty when unknown, and then ecp does not check the identity.
	ClusterName string `json:"clusterName,omitempty"`

	Rules      ResourceCounts `json:"rules"`
	Connectors ResourceCounts `json:"connectors"`
	Actions    ResourceCounts `json:"actions"`
	Sources    ResourceCounts `json:"sources"`
	// Abnormal lists the rules, connectors, actions and sources that are
	// not healthy, so ecp can show and alert on them.
	Abnormal []Resource `json:"abnormal,omitempty"`
}

// Node is one EMQX node as /api/v5/nodes lists it.
type Node struct {
	Name    string `json:"name"`
	Status  string `json:"status"` // "running" or "stopped"
	Role    string `json:"role,omitempty"`
	Version string `json:"version,omitempty"`
	// UptimeSeconds is zero for a stopped node.
	UptimeSeconds   int64 `json:"uptimeSeconds,omitempty"`
	Connections     int   `json:"connections"`
	LiveConnections int   `json:"liveConnections"`
}

// ResourceCounts summarises one kind of data-integration object. Healthy
// means running rules and connected connectors, actions and sources.
type ResourceCounts struct {
	Total     int `json:"total"`
	Healthy   int `json:"healthy"`
	Unhealthy int `json:"unhealthy"`
}

// Kinds of Resource.
const (
	KindRule      = "rule"
	KindConnector = "connector"
	KindAction    = "action"
	KindSource    = "source"
)

// Resource is one abnormal rule, connector, action or source.
type Resource struct {
	Kind string `json:"kind"`
	// ID is the id EMQX itself uses: "rule_0ab1", "http:my_http".
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Status is EMQX's own word: "stopped", "disconnected", "connecting",
	// "inconsistent", or for a rule "failing" when its failed counters grow.
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// ReportResponse is the reply to a report.
type ReportResponse struct {
	ReportIntervalSeconds int          `json:"reportIntervalSeconds"`
	Desired               DesiredState `json:"desired"`
}

// Problem codes an agent sends in EMQXStatus.Problem. They become the
// cluster's stateReason code in ecp.
const (
	ProblemEMQXUnreachable    = "EMQXUnreachable"
	ProblemEMQXAuthFailed     = "EMQXAuthFailed"
	ProblemQuotaApplyFailed   = "QuotaApplyFailed"
	ProblemLicenceUnsupported = "LicenceUnsupported"
	// ProblemEMQXTimeout: EMQX did not answer a call before the agent's
	// tick deadline (one collection interval, for enforcement and
	// collection together); the message names the call. The report is
	// sent on time with what EMQX answered before, so a slow EMQX shows
	// as this reason, never as ecp's AgentSilent.
	ProblemEMQXTimeout = "EMQXTimeout"
	// ProblemClusterManagedElsewhere is the code of DesiredState.Hold: the
	// cluster is held by another entry's agent. Only ecp sets it.
	ProblemClusterManagedElsewhere = "ClusterManagedElsewhere"
)

// Problem is a stable code with a human message.
type Problem struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// LogBatch is the body of PathLogs. Sequence numbers let ecp acknowledge
// exactly what it stored; the agent advances its file offsets only after.
type LogBatch struct {
	// BatchID is unique per agent and stable across retries, so ecp can
	// drop a batch it already stored.
	BatchID string     `json:"batchId"`
	Lines   []LogEntry `json:"lines"`
}

// LogEntry is one EMQX log line, parsed by the agent, raw line kept.
type LogEntry struct {
	Time    time.Time         `json:"time"`
	Level   string            `json:"level"`
	Node    string            `json:"node,omitempty"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
	Raw     string            `json:"raw"`
	// File and Offset identify the line in the agent's source, for
	// idempotent storage.
	File   string `json:"file"`
	Offset int64  `json:"offset"`
}

// LogBatchResponse acknowledges a stored batch.
type LogBatchResponse struct {
	Accepted int `json:"accepted"`
}

// ErrorBody is ecp's error envelope, on the agent API and every other API
// of ecp alike: {"error": {"code", "message", "field"?, ...details}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// Details are extra members of the error object, beside the three
	// above (for example the licence's remaining quota on a refused
	// change); a detail named like one of them is ignored.
	Details map[string]any `json:"-"`
}

// MarshalJSON writes the three members and the details in one object, with
// '<', '>' and '&' as themselves (ecp writes every reply that way).
func (d ErrorDetail) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(d.Details)+3)
	maps.Copy(m, d.Details)
	m["code"], m["message"] = d.Code, d.Message
	if d.Field != "" {
		m["field"] = d.Field
	} else {
		delete(m, "field")
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads the three members and keeps any other as a detail.
func (d *ErrorDetail) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	code, _ := m["code"].(string)
	message, _ := m["message"].(string)
	field, _ := m["field"].(string)
	delete(m, "code")
	delete(m, "message")
	delete(m, "field")
	*d = ErrorDetail{Code: code, Message: message, Field: field}
	if len(m) > 0 {
		d.Details = m
	}
	return nil
}

// Error codes ecp returns on the agent API that an agent acts on.
const (
	// CodeTokenInvalid: the registration token is unknown, used or expired.
	CodeTokenInvalid = "TokenInvalid"
	// CodeTokenExpired: the registration token was valid but has expired.
	CodeTokenExpired = "TokenExpired"
	// CodeCredentialRevoked: the agent's credential is no longer valid (the
	// entry was deleted, re-registered or unregistered); the agent forgets
	// it and stops reporting.
	CodeCredentialRevoked = "CredentialRevoked"
	// CodeClusterAlreadyManaged (409): the EMQX cluster the agent is on is
	// already managed by another entry; the message names that entry when
	// the caller may see it. The token is not spent.
	CodeClusterAlreadyManaged = "ClusterAlreadyManaged"
	// CodeRateLimited comes with 429 and Retry-After.
	CodeRateLimited = "RateLimited"
)
