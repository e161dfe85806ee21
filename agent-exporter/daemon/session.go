package daemon

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/remotewrite"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agent-exporter/transport"
)

// session is one registration in force: the clients built from it and a
// context that ends with it, so unregister or revocation cancels every
// call it has in flight.
type session struct {
	reg  state.Registration
	emqx *emqx.Client
	// reads is emqx as the collection loop uses it: one licence read per
	// tick for the enforcer and the collector.
	reads *tickReads
	ecp   *ecpclient.Client
	poll  *ecpclient.Client // same ecp, with a client timeout above DesiredWait
	// aside is ecp for calls that must not wait for a held poll (the
	// operator's unregister, a person's dashboard jump): on one HTTP/1.1
	// connection, a short-lived connection of their own; else ecp.
	aside *ecpclient.Client
	push  *remotewrite.Target
	// toECP carries every call to ecp, the log shipper's too.
	toECP *transport.ECP
	// queued is how long a call other than the report may wait for the
	// connection: the poll's longest hold on one HTTP/1.1 connection, else
	// 0. The report is sent when no poll is held (sendSchedule).
	queued time.Duration
	hcs    []*http.Client
	ctx    context.Context
	cancel context.CancelFunc
	// firstReport is when, after registering, ecp asked for the first
	// report (agentproto.RegisterResponse.FirstReportDelayMillis).
	firstReport time.Duration
}

// newSession builds the clients of reg, with a context under parent (the
// run's). ec may be given when register already logged in with it.
// timeout bounds each call; the long-poll's client waits pollWait longer.
// http2 makes the one connection to ecp HTTP/2 (transport.ECP).
func newSession(parent context.Context, reg state.Registration, ec *emqx.Client, timeout, pollWait time.Duration, http2 bool) (*session, error) {
	// One transport towards ecp (report, long-poll, remote write, logs:
	// one connection); the clients differ only in their timeouts.
	toECP := transport.NewECP(transport.Options{InsecureSkipVerify: reg.InsecureSkipVerify, HTTP2: http2})
	var queued time.Duration
	if toECP.OneConn() {
		queued = pollWait
	}
	hc := toECP.Client(timeout)
	pollHC := toECP.Client(pollWait + timeout)
	pushHC := toECP.Client(queued + timeout)
	emqxHC := transport.New(transport.Options{InsecureSkipVerify: reg.InsecureSkipVerify, Timeout: timeout})
	if ec == nil {
		var err error
		ec, err = emqx.New(emqx.Config{APIURL: reg.EMQX.APIURL, Username: reg.EMQX.Username, Password: reg.EMQX.Password, HTTPClient: emqxHC})
		if err != nil {
			return nil, err
		}
	}
	ecp, err := ecpclient.New(reg.ECPURL, reg.Credential, hc)
	if err != nil {
		return nil, err
	}
	poll, err := ecpclient.New(reg.ECPURL, reg.Credential, pollHC)
	if err != nil {
		return nil, err
	}
	aside := ecp
	if toECP.OneConn() {
		asideHC := transport.New(transport.Options{InsecureSkipVerify: reg.InsecureSkipVerify, Timeout: timeout})
		asideHC.Transport.(*http.Transport).DisableKeepAlives = true
		if aside, err = ecpclient.New(reg.ECPURL, reg.Credential, asideHC); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(parent)
	push := &remotewrite.Target{ECPURL: reg.ECPURL, Credential: reg.Credential, Client: pushHC}
	return &session{reg: reg, emqx: ec, reads: newTickReads(ec), ecp: ecp, poll: poll, aside: aside, push: push, toECP: toECP, queued: queued,
		hcs: []*http.Client{hc, emqxHC}, ctx: ctx, cancel: cancel}, nil
}

func (s *session) close() {
	s.cancel()
	for _, hc := range s.hcs {
		hc.CloseIdleConnections()
	}
}

// sessions holds the session in force and signals its changes: who waits
// for a registration (the long-poll while the agent is not registered)
// takes the channel current returns, closed at the next install or end.
// It also keeps why the last registration ended, for status. It knows
// nothing of what a session does; App builds, installs and ends them.
type sessions struct {
	registered prometheus.Gauge

	mu      sync.Mutex
	sess    *session      // nil while not registered
	changed chan struct{} // closed and replaced when sess changes
	ended   *state.Ended  // why the last one ended; nil while one is in force
}

func newSessions(reg prometheus.Registerer) *sessions {
	return &sessions{
		registered: promauto.With(reg).NewGauge(prometheus.GaugeOpts{
			Name: "agent_exporter_registered", Help: "Whether the agent holds a credential of ecp.",
		}),
		changed: make(chan struct{}),
	}
}

// current is the session in force (nil when none) and a channel closed
// when it changes.
func (c *sessions) current() (*session, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess, c.changed
}

// install makes s the session in force.
func (c *sessions) install(s *session) {
	c.mu.Lock()
	c.sess, c.ended = s, nil
	c.signalLocked()
	c.mu.Unlock()
	c.registered.Set(1)
}

// end forgets s if it is still the session in force, and reports whether
// it was. forget runs first, before anyone sees the agent unregistered:
// it removes the registration from disk, so that once status says "not
// registered" a restart cannot resume the old credential.
func (c *sessions) end(s *session, e state.Ended, forget func(state.Ended)) bool {
	c.mu.Lock()
	if c.sess != s {
		c.mu.Unlock()
		return false
	}
	forget(e)
	c.sess, c.ended = nil, &e
	c.signalLocked()
	c.mu.Unlock()
	c.registered.Set(0)
	return true
}

// restoreEnded shows e, an end saved before a restart, while no session
// is in force.
func (c *sessions) restoreEnded(e state.Ended) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		c.ended = &e
	}
}

// status is the session in force and the last end, read together.
func (c *sessions) status() (*session, *state.Ended) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess, c.ended
}

func (c *sessions) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}
