package fleet

import (
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// States of a managed cluster, as ARCHITECTURE.md's lifecycle names them.
const (
	// StateCreated: the entry exists and no agent is bound to it.
	StateCreated = "created"
	// StateRegistering: an agent registered and has not reported yet.
	StateRegistering = "registering"
	// StateRunning: the agent reports and reaches EMQX.
	StateRunning = "running"
	// StateAbnormal: the agent is silent, cannot reach EMQX, or reports a
	// problem; StateReason says which.
	StateAbnormal = "abnormal"
)

// Reason codes fleet sets itself. Problem codes the agent reports
// (agentproto.ProblemEMQXUnreachable, ...) are used as reason codes as is.
const (
	// ReasonNotRegistered: no agent is bound and no registration token is pending.
	ReasonNotRegistered = "NotRegistered"
	// ReasonAwaitingRegistration: a registration token is pending.
	ReasonAwaitingRegistration = "AwaitingRegistration"
	// ReasonTokenExpired: the pending registration token expired unused.
	ReasonTokenExpired = "TokenExpired"
	// ReasonAwaitingFirstReport: the agent registered and has not reported yet.
	ReasonAwaitingFirstReport = "AwaitingFirstReport"
	// ReasonAgentSilent: no report for agentproto.SilentIntervals intervals.
	ReasonAgentSilent = "AgentSilent"
	// ReasonAgentIntervalTooLong: the agent collects slower than ecp's
	// report interval (its operator pinned --collect.interval), so the
	// alert rules, built for ecp's interval, cannot see its samples.
	ReasonAgentIntervalTooLong = "AgentIntervalTooLong"
	// ReasonClusterManagedElsewhere: the EMQX cluster the agent reports is
	// held by another entry's agent (see identity.go); this agent is told
	// not to enforce.
	ReasonClusterManagedElsewhere = agentproto.ProblemClusterManagedElsewhere
)

// Status is what fleet knows of one managed cluster: its lifecycle state
// with the reason, and the latest snapshot its agent reported. The JSON
// names are the cluster fields of the public API.
type Status struct {
	State string `json:"state"`
	// StateReason is nil only when State is running.
	StateReason *Reason `json:"stateReason,omitempty"`

	Version      string `json:"version,omitempty"`
	Nodes        int    `json:"nodes"`
	NodesRunning int    `json:"nodesRunning"`
	Connections  int    `json:"connections"`
	// LiveConnections counts connected clients, Connections sessions.
	LiveConnections int `json:"liveConnections"`
	// MaxConnectionsReported is the licence limit EMQX itself reports,
	// which the agent keeps equal to the allocated max connections.
	MaxConnectionsReported int `json:"maxConnectionsReported"`

	StartedAt    time.Time `json:"startedAt,omitzero"`
	ManagedSince time.Time `json:"managedSince,omitzero"`
	LastReportAt time.Time `json:"lastReportAt,omitzero"`

	AgentVersion string `json:"agentVersion,omitempty"`
	Hostname     string `json:"hostname,omitempty"`
	DashboardURL string `json:"dashboardUrl,omitempty"`
	// RegisteredLogCollection is the log collection the agent chose when
	// it registered (zero when none is bound). What it applies is
	// registry.Spec.EffectiveLogCollection of it.
	RegisteredLogCollection agentproto.LogCollection `json:"registeredLogCollection"`
}

// Reason says why a cluster is in a state other than running: a stable
// code for alerts and scripts, a message for people, and since when.
type Reason struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	Since   time.Time `json:"since"`
}
