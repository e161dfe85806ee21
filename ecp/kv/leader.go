package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ecpio/ecp/internal/backoff"
)

// Leadership runs singleton work on one replica at a time: the elected
// leader of an etcd election. Losing the etcd session ends the work; the
// replica then campaigns again, with backoff.
type Leadership struct {
	Client *clientv3.Client
	// Prefix is the election's key prefix.
	Prefix string
	// Value identifies this replica among the candidates.
	Value string
	// TTL of the session; a replica that dies lets another lead after it.
	TTL    time.Duration
	Logger *slog.Logger
	// Name says what is led, in logs and errors.
	Name string
	// Joined, when set, runs once the session is open and before the
	// campaign: work that lives on the session's lease, such as a
	// replica announcing itself. An error ends the term.
	Joined func(ctx context.Context, sess *concurrency.Session) error
	// Left, when set, runs when the session ends, before its lease is
	// revoked.
	Left func()
}

// Run campaigns and, while this replica leads, runs lead with a context
// that ends when leadership is lost or ctx ends. It returns when ctx ends.
func (l Leadership) Run(ctx context.Context, lead func(ctx context.Context, el *concurrency.Election) error) error {
	bo := backoff.Backoff{Base: time.Second, Max: 30 * time.Second}
	for ctx.Err() == nil {
		led, err := l.term(ctx, lead)
		if ctx.Err() != nil {
			// Stopping: the term's end is expected, not a failure.
			return nil //nolint:nilerr // err is the stop itself.
		}
		if led {
			// A term that led was no failure to campaign: the next
			// campaign starts from the shortest wait.
			bo.Reset()
		}
		wait := bo.Next(0)
		l.Logger.Warn("leadership ended; campaigning again", "leading", l.Name, "err", err, "retryIn", wait)
		_ = backoff.Sleep(ctx, wait) // an ended ctx ends the loop
	}
	return nil
}

// term is one session: campaign, lead until the session or ctx ends. led
// says whether this replica led in it.
func (l Leadership) term(ctx context.Context, lead func(context.Context, *concurrency.Election) error) (led bool, err error) {
	sess, err := concurrency.NewSession(l.Client, concurrency.WithTTL(max(1, int(l.TTL/time.Second))), concurrency.WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("open etcd session: %w", err)
	}
	defer func() {
		if l.Left != nil {
			l.Left()
		}
		// Revoking the lease lets another replica lead at once rather
		// than after the TTL.
		cctx, cancel := WithTimeout(context.WithoutCancel(ctx))
		defer cancel()
		_, _ = l.Client.Revoke(cctx, sess.Lease())
		_ = sess.Close()
	}()
	if l.Joined != nil {
		if err := l.Joined(ctx, sess); err != nil {
			return false, err
		}
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-sess.Done():
			stop()
		case <-sctx.Done():
		}
	}()
	el := concurrency.NewElection(sess, l.Prefix)
	if err := Campaign(sctx, el, l.Value); err != nil {
		return false, fmt.Errorf("campaign to lead %s: %w", l.Name, err)
	}
	err = lead(sctx, el)
	if err == nil && ctx.Err() == nil {
		err = errors.New("etcd session lease lost")
	}
	return true, err
}
