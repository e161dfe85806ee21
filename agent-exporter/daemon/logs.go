package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ecpio/ecp/agent-exporter/collector"
	"github.com/ecpio/ecp/agent-exporter/ecpclient"
	"github.com/ecpio/ecp/agent-exporter/logship"
	"github.com/ecpio/ecp/agentproto"
)

// logBatchTimeout is the least time one log batch may take: ecp answers
// only once its store took the batch.
const logBatchTimeout = 30 * time.Second

// logControl runs at most one log shipper, for the session in force and
// the log collection it asks for (at registration, then ecp's desired
// state), and stops it when either changes.
type logControl struct {
	opts     Options
	log      *slog.Logger
	stateDir string                     // where the shipper keeps its offsets
	latest   func() *collector.Snapshot // the last collection, naming the nodes
	metrics  *logship.Metrics

	mu      sync.Mutex
	sess    *session
	lc      agentproto.LogCollection
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool
}

func newLogControl(opts Options, stateDir string, latest func() *collector.Snapshot) *logControl {
	return &logControl{opts: opts, log: opts.Logger, stateDir: stateDir, latest: latest, metrics: logship.NewMetrics(opts.Registerer)}
}

// apply makes the shipper match (s, lc): started, restarted on another
// directory or session, or stopped when collection is off.
func (c *logControl) apply(s *session, lc agentproto.LogCollection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || (c.sess == s && c.lc == lc && (c.done != nil) == lc.Enabled) {
		return
	}
	c.stopLocked()
	c.sess, c.lc = s, lc
	if !lc.Enabled || lc.Dir == "" || s == nil {
		return
	}
	// Log batches wait for the store behind ecp (which retries for up to
	// 10 s before answering 503), so they get a longer timeout than
	// reports, and on one HTTP/1.1 connection for the held poll to end:
	// a batch read while the poll is held goes out when it is answered,
	// before the next tick.
	hc := s.toECP.Client(max(3*c.opts.HTTPTimeout, logBatchTimeout) + s.queued)
	client, err := ecpclient.New(s.reg.ECPURL, s.reg.Credential, hc)
	if err != nil {
		c.log.Error("log collection not started", "err", err)
		return
	}
	sh, err := logship.New(logship.Options{
		Dir: lc.Dir, StateDir: c.stateDir, Cluster: s.reg.ClusterID, Node: c.nodeNamer(s),
		BackoffBase: c.opts.BackoffBase, BackoffMax: c.opts.BackoffMax,
		RetryAfter: ecpclient.RetryAfter,
		Permanent:  func(err error) bool { return errors.Is(err, ecpclient.ErrCredentialRevoked) },
		Sender:     client, Logger: c.log.With("component", "logship"), Metrics: c.metrics, Now: c.opts.Now,
	})
	if err != nil {
		c.log.Error("log collection not started", "err", err)
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	c.cancel, c.done = cancel, done
	go func() {
		defer close(done)
		if err := sh.Run(ctx); err != nil {
			c.log.Warn("log collection ended", "err", err)
		}
	}()
}

func (c *logControl) stopLocked() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.cancel, c.done = nil, nil
}

// stop ends the shipper; with final set it also refuses later starts
// (the daemon is stopping).
func (c *logControl) stop(final bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopLocked()
	c.sess = nil
	c.stopped = c.stopped || final
}

// nodeAskInterval spaces the agent's questions to EMQX about which node it
// is while EMQX does not answer.
const nodeAskInterval = time.Minute

// nodeNamer returns the shipper's Options.Node for session s: the name of
// the EMQX node whose log directory the agent reads. In order: the only
// node; the node whose host part is this machine (its hostname or one of
// its addresses, as EMQX names nodes emqx@<ip> or emqx@<fqdn>); the node
// that answers the API when the API URL is this machine (an agent next to
// EMQX talks to its own node, as the registration guide has it); else ""
// rather than a guess. The shipper calls it from its one goroutine.
func (c *logControl) nodeNamer(s *session) func() string {
	var (
		answering string    // the API's node, asked once it is needed
		askAfter  time.Time // after a failed ask, not before (EMQX may be down)
	)
	apiLocal := isLocalHost(hostOf(s.reg.EMQX.APIURL))
	return func() string {
		if snap := c.latest(); snap != nil {
			if len(snap.Nodes) == 1 {
				return snap.Nodes[0].Node
			}
			for _, n := range snap.Nodes {
				if _, h, ok := strings.Cut(n.Node, "@"); ok && isLocalHost(h) {
					return n.Node
				}
			}
		}
		// Also before the first collection: the first batches of a
		// backlog are shipped while it runs.
		if !apiLocal {
			return ""
		}
		if answering == "" && !c.opts.Now().Before(askAfter) {
			name, err := s.emqx.LocalNode(s.ctx)
			if err != nil {
				if askAfter.IsZero() {
					c.log.Warn("cannot tell which EMQX node this is; log lines go without a node until it answers", "err", err)
				}
				askAfter = c.opts.Now().Add(nodeAskInterval)
				return ""
			}
			answering = name
		}
		return answering
	}
}

// hostOf is the host of a URL, "" when it has none.
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// isLocalHost reports whether host names this machine: localhost, a
// loopback address, the hostname (or a name under it) or an address of one
// of its interfaces.
func isLocalHost(host string) bool {
	if host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if me, err := os.Hostname(); err == nil && me != "" && (strings.EqualFold(host, me) || strings.HasPrefix(strings.ToLower(host), strings.ToLower(me)+".")) {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
