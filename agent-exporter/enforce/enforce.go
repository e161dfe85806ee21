// Package enforce keeps EMQX's connection limit where ecp wants it.
//
// ecp decides a cluster's max connections; the agent writes it to EMQX's
// licence setting dynamic_max_connections (honoured only by a
// business-critical licence, customer_type 3) and puts it back whenever
// someone changes it on EMQX's own dashboard (drift correction).
//
// It writes nothing while ecp says the cluster is held by another entry's
// agent (agentproto.DesiredState.Hold): two agents enforcing two limits on
// one cluster would flip it between them at every collection.
package enforce

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agentproto"
)

// API is the part of the EMQX client enforcement needs.
type API interface {
	License(ctx context.Context) (emqx.License, error)
	LicenseSetting(ctx context.Context) (emqx.LicenseSetting, error)
	SetDynamicMaxConnections(ctx context.Context, n int) (emqx.LicenseSetting, error)
}

// Enforcer holds the wanted limit and applies it. Safe for concurrent use;
// applications are serialised so a long-poll and the interval tick never
// write at once.
type Enforcer struct {
	log *slog.Logger

	mu       sync.Mutex
	want     int
	hasWant  bool
	revision int64
	applied  int
	ok       bool
	problem  *agentproto.Problem
	hold     *agentproto.Problem

	corrections prometheus.Counter
	held        prometheus.Gauge
	failures    prometheus.Counter
	wanted      prometheus.Gauge
}

// New returns an enforcer with its metrics on reg.
func New(log *slog.Logger, reg prometheus.Registerer) *Enforcer {
	f := promauto.With(reg)
	return &Enforcer{
		log: log,
		corrections: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_max_connections_corrections_total",
			Help: "Times the agent wrote dynamic_max_connections because EMQX held another value.",
		}),
		failures: f.NewCounter(prometheus.CounterOpts{
			Name: "agent_exporter_max_connections_apply_failures_total",
			Help: "Times applying max connections to EMQX failed or was refused.",
		}),
		held: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_enforcement_held",
			Help: "1 while ecp says another entry's agent manages this EMQX cluster, so this agent writes nothing to it.",
		}),
		wanted: f.NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_desired_max_connections",
			Help: "Max connections ecp wants on EMQX (0 until ecp says).",
		}),
	}
}

// SetDesired records what ecp wants, from desired state at revision rev.
// It returns false when rev is not newer than what is held.
func (e *Enforcer) SetDesired(d agentproto.DesiredState) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d.Revision <= e.revision && e.hasWant {
		return false
	}
	e.want, e.hasWant, e.revision = d.MaxConnections, true, d.Revision
	e.wanted.Set(float64(d.MaxConnections))
	switch {
	case d.Hold != nil && e.hold == nil:
		e.log.Warn("not enforcing max connections: another agent manages this EMQX cluster", "reason", d.Hold.Code, "message", d.Hold.Message)
		e.held.Set(1)
	case d.Hold == nil && e.hold != nil:
		e.log.Info("enforcing max connections again: ecp lifted the hold", "want", d.MaxConnections)
		e.held.Set(0)
	}
	e.hold = d.Hold
	return true
}

// Reset forgets the desired state (after unregister).
func (e *Enforcer) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.want, e.hasWant, e.revision, e.applied, e.ok, e.problem, e.hold = 0, false, 0, 0, false, nil, nil
	e.wanted.Set(0)
	e.held.Set(0)
}

// State is what status and the report show.
type State struct {
	// Revision is the desired-state revision held (and applied when
	// Problem is nil).
	Revision int64
	Wanted   int
	// Applied is the value last seen on EMQX after enforcing, valid when
	// AppliedOK.
	Applied   int
	AppliedOK bool
	Problem   *agentproto.Problem
	// Held is ecp's hold when it said not to enforce: the desired state
	// at Revision is then applied by writing nothing.
	Held *agentproto.Problem
}

// State returns the current enforcement state.
func (e *Enforcer) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return State{Revision: e.revision, Wanted: e.want, Applied: e.applied, AppliedOK: e.ok, Problem: e.problem, Held: e.hold}
}

// Enforce makes EMQX hold the wanted limit: it reads the licence and the
// setting and writes dynamic_max_connections only when it differs. With no
// wanted value yet, or while ecp holds this agent, it does nothing.
func (e *Enforcer) Enforce(ctx context.Context, api API) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.hasWant || e.hold != nil {
		e.problem = nil
		return nil
	}
	err := e.enforce(ctx, api)
	if err != nil {
		e.ok = false
		e.failures.Inc()
		e.log.Warn("max connections not applied", "want", e.want, "err", err)
	}
	return err
}

func (e *Enforcer) fail(code, msg string) error {
	e.problem = &agentproto.Problem{Code: code, Message: msg}
	return fmt.Errorf("%s: %s", code, msg)
}

func (e *Enforcer) enforce(ctx context.Context, api API) error {
	lic, err := api.License(ctx)
	if err != nil {
		return e.fail(agentproto.ProblemQuotaApplyFailed, "reading the licence: "+err.Error())
	}
	if lic.CustomerType != emqx.CustomerTypeBusinessCritical {
		return e.fail(agentproto.ProblemLicenceUnsupported, fmt.Sprintf(
			"the EMQX licence has customer_type %d; max connections can only be enforced with a business-critical licence (customer_type 3)", lic.CustomerType))
	}
	st, err := api.LicenseSetting(ctx)
	if err != nil {
		return e.fail(agentproto.ProblemQuotaApplyFailed, "reading the licence setting: "+err.Error())
	}
	if st.DynamicMaxConnections != nil && *st.DynamicMaxConnections == e.want {
		e.applied, e.ok, e.problem = e.want, true, nil
		return nil
	}
	was := "unset"
	if st.DynamicMaxConnections != nil {
		was = fmt.Sprint(*st.DynamicMaxConnections)
	}
	got, err := api.SetDynamicMaxConnections(ctx, e.want)
	if err != nil {
		return e.fail(agentproto.ProblemQuotaApplyFailed, "EMQX refused dynamic_max_connections: "+err.Error())
	}
	if got.DynamicMaxConnections == nil || *got.DynamicMaxConnections != e.want {
		// EMQX drops the value silently for a licence that is not
		// business-critical; seeing it here means the licence changed
		// between the two calls.
		return e.fail(agentproto.ProblemQuotaApplyFailed, "EMQX did not keep dynamic_max_connections")
	}
	e.corrections.Inc()
	e.log.Info("max connections applied", "want", e.want, "was", was, "revision", e.revision)
	e.applied, e.ok, e.problem = e.want, true, nil
	return nil
}
