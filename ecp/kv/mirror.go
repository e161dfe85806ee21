package kv

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/internal/backoff"
)

// Backoff bounds of Mirror.Run between a broken watch and the next load.
const (
	mirrorMinBackoff = 100 * time.Millisecond
	mirrorMaxBackoff = 10 * time.Second
)

// Mirror follows one key range of etcd into memory: one load of the whole
// range at one revision, then one watch from the next revision on, so
// memory sees every change once and in revision order. When the watch
// breaks (compaction, a lost member, no leader) it backs off and loads
// again from scratch. It is the one copy of this loop; the packages that
// keep a replica-local view of etcd (the cluster records, which carry
// fleet's keys too, and the monitoring snapshots) differ only in Reset and
// Apply.
type Mirror struct {
	// Client is the etcd client. Required.
	Client *clientv3.Client
	// From and To are the range followed, [From, To); an empty To means
	// every key with the prefix From.
	From, To string
	// LoadTimeout bounds the load (4×CallTimeout when zero: a large range
	// takes longer than one call).
	LoadTimeout time.Duration
	// Name says what is followed, in log messages.
	Name   string
	Logger *slog.Logger
	// Reset makes memory match the whole range as it stood at rev: what
	// memory holds and kvs lacks was deleted meanwhile (unless memory
	// learnt of it after rev), and the watch that would have said so is
	// the one that broke.
	Reset func(kvs []*mvccpb.KeyValue, rev int64)
	// Apply applies one batch of watch events, in revision order.
	Apply func(events []*clientv3.Event)
	// Loaded, when set, runs after every successful load (the first one
	// makes a replica ready).
	Loaded func()
}

func (m *Mirror) rangeEnd() string {
	if m.To == "" {
		return clientv3.GetPrefixRangeEnd(m.From)
	}
	return m.To
}

// Load reads the range at one revision, hands it to Reset and returns the
// revision.
func (m *Mirror) Load(ctx context.Context) (int64, error) {
	timeout := m.LoadTimeout
	if timeout <= 0 {
		timeout = 4 * CallTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := m.Client.Get(cctx, m.From, clientv3.WithRange(m.rangeEnd()))
	if err != nil {
		return 0, fmt.Errorf("load %s: %w", m.Name, err)
	}
	m.Reset(resp.Kvs, resp.Header.Revision)
	if m.Loaded != nil {
		m.Loaded()
	}
	return resp.Header.Revision, nil
}

// Run loads and follows the range until ctx ends.
func (m *Mirror) Run(ctx context.Context) {
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	retry := backoff.Backoff{Base: mirrorMinBackoff, Max: mirrorMaxBackoff}
	for ctx.Err() == nil {
		rev, err := m.Load(ctx)
		if err == nil {
			retry.Reset()
			err = m.watch(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return
		}
		wait := retry.Next(0)
		logger.Warn("watch interrupted; reloading", "what", m.Name, "err", err, "retryIn", wait)
		if backoff.Sleep(ctx, wait) != nil {
			return
		}
	}
}

// watch applies events from rev on until the watch fails or ctx ends.
func (m *Mirror) watch(ctx context.Context, rev int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	events := m.Client.Watch(wctx, m.From, clientv3.WithRange(m.rangeEnd()), clientv3.WithRev(rev))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case wr, ok = <-events:
		}
		if !ok {
			return fmt.Errorf("watch %s: closed", m.Name)
		}
		if err := wr.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", m.Name, err)
		}
		if len(wr.Events) > 0 {
			m.Apply(wr.Events)
		}
	}
}
