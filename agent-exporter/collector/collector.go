// Package collector polls EMQX once per interval and keeps the latest
// snapshot. That one snapshot feeds /metrics, the report to ecp and (later)
// remote write, so EMQX sees one load whatever the number of scrapers.
package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/agentproto/series"
)

// API is the part of the EMQX client a collection needs; *emqx.Client
// implements it.
type API interface {
	Nodes(ctx context.Context) ([]emqx.Node, error)
	ClusterName(ctx context.Context) (string, error)
	License(ctx context.Context) (emqx.License, error)
	LicenseSetting(ctx context.Context) (emqx.LicenseSetting, error)
	Rules(ctx context.Context) ([]emqx.Rule, error)
	RuleMetrics(ctx context.Context, id string) (emqx.RuleMetrics, error)
	AllRuleMetrics(ctx context.Context) (map[string]emqx.RuleMetrics, error)
	Connectors(ctx context.Context) ([]emqx.Resource, error)
	Actions(ctx context.Context) ([]emqx.Resource, error)
	Sources(ctx context.Context) ([]emqx.Resource, error)
	ActiveAlarms(ctx context.Context, limit int) ([]emqx.Alarm, bool, error)
	Metrics(ctx context.Context) (emqx.AuthFailures, error)
	AuthBackends(ctx context.Context) ([]emqx.AuthBackend, error)
	NodeCPU(ctx context.Context) (map[string]float64, error)
}

// Names of the sub-collectors, the values of the "collector" label.
const (
	SubNodes      = "nodes"
	SubLicense    = "license"
	SubRules      = "rules"
	SubConnectors = "connectors"
	SubActions    = "actions"
	SubSources    = "sources"
	SubAlarms     = "alarms"
	SubMetrics    = "metrics"
	SubAuth       = "auth"
	SubCPU        = "cpu"
)

// SubCollectors lists every sub-collector in collection order.
var SubCollectors = []string{SubNodes, SubLicense, SubRules, SubConnectors, SubActions, SubSources, SubAlarms, SubMetrics, SubAuth, SubCPU}

// Rule is a rule with its counters; Metrics is nil for a disabled rule or
// when reading them failed.
type Rule struct {
	emqx.Rule
	Metrics *emqx.RuleMetrics
	// Failing is set when failed or actions.failed grew since the previous
	// collection.
	Failing bool
}

// Result is the outcome of one sub-collector.
type Result struct {
	Name     string
	Duration time.Duration
	Err      error
}

// Snapshot is one complete collection. It is never modified after it is
// published.
type Snapshot struct {
	CollectedAt time.Time
	// Up is true when EMQX answered the nodes call (reachable, logged in).
	Up      bool
	Problem *agentproto.Problem

	Nodes []emqx.Node
	// ClusterName is EMQX's cluster name, empty when it could not be read.
	ClusterName string
	License     *emqx.License
	Setting     *emqx.LicenseSetting
	Rules       []Rule
	Connectors  []emqx.Resource
	Actions     []emqx.Resource
	Sources     []emqx.Resource
	// Alarms are EMQX's active alarms, one per name and node, at most
	// series.MaxAlarms of them.
	Alarms []emqx.Alarm
	// AuthFailures are the cluster's counters of refused CONNECTs,
	// PUBLISHes and SUBSCRIBEs; nil when they could not be read.
	AuthFailures *emqx.AuthFailures
	// AuthBackends are the authenticators and authorization sources with
	// their status.
	AuthBackends []emqx.AuthBackend
	// NodeCPU is each running node's CPU usage in percent, by node name.
	NodeCPU map[string]float64
	Results []Result
}

// ErrNotConfigured is the problem of a collection made before the agent
// knows which EMQX to talk to (not yet registered).
var ErrNotConfigured = errors.New("collector: no emqx configured")

// Collector makes collections and keeps the latest one.
type Collector struct {
	now func() time.Time
	// RuleMetricsConcurrency bounds the parallel rule metric calls.
	ruleConc int

	mu  sync.Mutex // one collection at a time
	api API
	// prevFailed remembers the rule counters of the previous collection.
	prevFailed map[string]float64

	latest atomic.Pointer[Snapshot]
}

// New returns a collector; now is injected so tests fix time.
func New(now func() time.Time) *Collector {
	if now == nil {
		now = time.Now
	}
	return &Collector{now: now, ruleConc: 4, prevFailed: map[string]float64{}}
}

// SetAPI points the collector at an EMQX cluster (nil: none).
func (c *Collector) SetAPI(api API) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.api = api
	c.prevFailed = map[string]float64{}
}

// Latest returns the last published snapshot, or nil before the first.
func (c *Collector) Latest() *Snapshot { return c.latest.Load() }

// Collect polls EMQX once, publishes the result as the latest snapshot and
// returns it. Sub-collector failures are recorded, never fatal.
func (c *Collector) Collect(ctx context.Context) *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &Snapshot{}
	if c.api == nil {
		s.Problem = &agentproto.Problem{Code: agentproto.ProblemEMQXUnreachable, Message: ErrNotConfigured.Error()}
		s.CollectedAt = c.now()
		c.latest.Store(s)
		return s
	}
	api := c.api
	run := func(name string, fn func() error) error {
		start := c.now()
		err := fn()
		s.Results = append(s.Results, Result{Name: name, Duration: c.now().Sub(start), Err: err})
		return err
	}
	err := run(SubNodes, func() error {
		n, err := api.Nodes(ctx)
		s.Nodes = n
		if err != nil {
			return err
		}
		// The name only serves the cluster's identity: without it ecp
		// skips the identity check for this report, which beats calling
		// a reachable EMQX down.
		s.ClusterName, _ = api.ClusterName(ctx)
		return nil
	})
	if err != nil {
		// Nodes failing means EMQX is down or refuses us: the rest would
		// fail the same way and only add load.
		s.Problem = ProblemFor(err)
		for _, name := range SubCollectors[1:] {
			s.Results = append(s.Results, Result{Name: name, Err: fmt.Errorf("skipped: %w", err)})
		}
		s.CollectedAt = c.now()
		c.latest.Store(s)
		return s
	}
	s.Up = true
	_ = run(SubLicense, func() error {
		l, err := api.License(ctx)
		if err != nil {
			return err
		}
		s.License = &l
		if l.CustomerType == emqx.CustomerTypeBusinessCritical {
			st, err := api.LicenseSetting(ctx)
			if err != nil {
				return err
			}
			s.Setting = &st
		}
		return nil
	})
	_ = run(SubRules, func() error {
		rules, err := c.collectRules(ctx, api)
		s.Rules = rules
		return err
	})
	_ = run(SubConnectors, func() (err error) { s.Connectors, err = api.Connectors(ctx); return err })
	_ = run(SubActions, func() (err error) { s.Actions, err = api.Actions(ctx); return err })
	_ = run(SubSources, func() (err error) { s.Sources, err = api.Sources(ctx); return err })
	_ = run(SubAlarms, func() error {
		alarms, _, err := api.ActiveAlarms(ctx, series.MaxAlarms)
		s.Alarms = uniqueAlarms(alarms)
		return err
	})
	_ = run(SubMetrics, func() error {
		m, err := api.Metrics(ctx)
		if err == nil {
			s.AuthFailures = &m
		}
		return err
	})
	_ = run(SubAuth, func() (err error) { s.AuthBackends, err = api.AuthBackends(ctx); return err })
	_ = run(SubCPU, func() (err error) { s.NodeCPU, err = api.NodeCPU(ctx); return err })
	s.CollectedAt = c.now()
	c.latest.Store(s)
	return s
}

// uniqueAlarms drops repeats of a name on a node, which EMQX never sends
// but which would make /metrics fail with duplicate series.
func uniqueAlarms(list []emqx.Alarm) []emqx.Alarm {
	type key struct{ name, node string }
	seen := make(map[key]bool, len(list))
	out := list[:0]
	for _, a := range list {
		k := key{a.Name, a.Node}
		if !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

func (c *Collector) collectRules(ctx context.Context, api API) ([]Rule, error) {
	list, err := api.Rules(ctx)
	if err != nil {
		return nil, err
	}
	rules := make([]Rule, len(list))
	for i, r := range list {
		rules[i].Rule = r
	}
	// One call for all counters; per-rule calls only where that endpoint is
	// missing or refused (older EMQX, Prometheus basic auth).
	errs := []error{}
	if all, err := api.AllRuleMetrics(ctx); err == nil {
		metrics := make([]emqx.RuleMetrics, len(rules)) // one allocation, not one a rule
		for i := range rules {
			if m, ok := all[rules[i].ID]; ok && rules[i].Enable {
				metrics[i] = m
				rules[i].Metrics = &metrics[i]
			}
		}
	} else {
		errs = c.perRuleMetrics(ctx, api, rules)
	}
	next := make(map[string]float64, len(rules))
	for i := range rules {
		m := rules[i].Metrics
		if m == nil {
			continue
		}
		failed := m.Failed + m.ActionsFailed
		if prev, ok := c.prevFailed[rules[i].ID]; ok && failed > prev {
			rules[i].Failing = true
		}
		next[rules[i].ID] = failed
	}
	c.prevFailed = next
	return rules, errors.Join(errs...)
}

func (c *Collector) perRuleMetrics(ctx context.Context, api API, rules []Rule) []error {
	sem := make(chan struct{}, c.ruleConc)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var errs []error
	for i := range rules {
		r := rules[i].Rule
		if !r.Enable {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			m, err := api.RuleMetrics(ctx, r.ID)
			if err != nil {
				errMu.Lock()
				errs = append(errs, fmt.Errorf("rule %s metrics: %w", r.ID, err))
				errMu.Unlock()
				return
			}
			rules[i].Metrics = &m
		}()
	}
	wg.Wait()
	return errs
}

// ProblemFor maps a failed EMQX call to the problem code ecp shows.
func ProblemFor(err error) *agentproto.Problem {
	if errors.Is(err, emqx.ErrAuthFailed) {
		return &agentproto.Problem{Code: agentproto.ProblemEMQXAuthFailed, Message: err.Error()}
	}
	return &agentproto.Problem{Code: agentproto.ProblemEMQXUnreachable, Message: err.Error()}
}

// Status turns a snapshot into the EMQX part of a report.
func (s *Snapshot) Status() agentproto.EMQXStatus {
	st := agentproto.EMQXStatus{Reachable: s.Up, Problem: s.Problem}
	if !s.Up {
		return st
	}
	st.ClusterName = s.ClusterName
	var oldest time.Duration
	for _, n := range s.Nodes {
		pn := agentproto.Node{
			Name: n.Node, Status: n.NodeStatus, Role: n.Role, Version: n.Version,
			Connections: n.Connections, LiveConnections: n.LiveConnections,
		}
		if n.NodeStatus == "running" {
			up := time.Duration(n.Uptime) * time.Millisecond
			pn.UptimeSeconds = int64(up / time.Second)
			st.Connections += n.Connections
			st.LiveConnections += n.LiveConnections
			if st.Version == "" {
				st.Version, st.Edition = n.Version, n.Edition
			}
			oldest = max(oldest, up)
		}
		st.Nodes = append(st.Nodes, pn)
	}
	if oldest > 0 {
		st.StartedAt = s.CollectedAt.Add(-oldest).Truncate(time.Second).UTC()
	}
	if s.License != nil {
		st.MaxConnections = s.License.Limit()
	}
	for _, r := range s.Rules {
		st.Rules.Total++
		switch {
		case !r.Enable:
			st.Rules.Unhealthy++
			st.Abnormal = append(st.Abnormal, agentproto.Resource{Kind: agentproto.KindRule, ID: r.ID, Name: r.Name, Status: "stopped"})
		case r.Failing:
			st.Rules.Unhealthy++
			st.Abnormal = append(st.Abnormal, agentproto.Resource{Kind: agentproto.KindRule, ID: r.ID, Name: r.Name, Status: "failing",
				Reason: fmt.Sprintf("failed %.0f, actions failed %.0f", r.Metrics.Failed, r.Metrics.ActionsFailed)})
		default:
			st.Rules.Healthy++
		}
	}
	count := func(kind string, list []emqx.Resource, into *agentproto.ResourceCounts) {
		for _, r := range list {
			into.Total++
			if r.Status == "connected" {
				into.Healthy++
				continue
			}
			into.Unhealthy++
			st.Abnormal = append(st.Abnormal, agentproto.Resource{Kind: kind, ID: r.ID(), Name: r.Name, Status: r.Status, Reason: r.StatusReason})
		}
	}
	count(agentproto.KindConnector, s.Connectors, &st.Connectors)
	count(agentproto.KindAction, s.Actions, &st.Actions)
	count(agentproto.KindSource, s.Sources, &st.Sources)
	slices.SortStableFunc(st.Abnormal, func(a, b agentproto.Resource) int {
		if a.Kind != b.Kind {
			return kindOrder(a.Kind) - kindOrder(b.Kind)
		}
		return 0
	})
	return st
}

func kindOrder(k string) int {
	switch k {
	case agentproto.KindRule:
		return 0
	case agentproto.KindConnector:
		return 1
	case agentproto.KindAction:
		return 2
	default:
		return 3
	}
}
