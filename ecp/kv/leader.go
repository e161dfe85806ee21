package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
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
}

// Run campaigns and, while this replica leads, runs lead with a context
// that ends when leadership is lost or ctx ends. It returns when ctx ends.
func (l Leadership) Run(ctx context.Context, lead func(ctx context.Context, el *concurrency.Election) error) error {
	backoff := time.Second
	for ctx.Err() == nil {
		err := l.term(ctx, lead)
		if ctx.Err() != nil {
			// Stopping: the term's end is expected, not a failure.
			return nil //nolint:nilerr // err is the stop itself.
		}
		l.Logger.Warn("leadership ended; campaigning again", "leading", l.Name, "err", err, "retryIn", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return nil
}

// term is one session: campaign, lead until the session or ctx ends.
func (l Leadership) term(ctx context.Context, lead func(context.Context, *concurrency.Election) error) error {
	sess, err := concurrency.NewSession(l.Client, concurrency.WithTTL(max(1, int(l.TTL/time.Second))), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("open etcd session: %w", err)
	}
	defer func() {
		// Revoking the lease lets another replica lead at once rather
		// than after the TTL.
		cctx, cancel := WithTimeout(context.WithoutCancel(ctx))
		defer cancel()
		_, _ = l.Client.Revoke(cctx, sess.Lease())
		_ = sess.Close()
	}()
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
		return fmt.Errorf("campaign to lead %s: %w", l.Name, err)
	}
	err = lead(sctx, el)
	if err == nil && ctx.Err() == nil {
		err = errors.New("etcd session lease lost")
	}
	return err
}
