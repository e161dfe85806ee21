package kv

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watched is a key (or, with Prefix, every key under it) whose changes
// call for a new apply.
type Watched struct {
	Key    string
	Prefix bool
	// What names the keys in the error that ends the loop when the
	// watch fails.
	What string
}

// Reconcile is the leader's loop: it applies the desired state once at
// the start, again on every change of the watched keys, every Resync
// (which also repairs what was changed by hand elsewhere) and Retry after
// a failed apply. Run it inside Leadership.Run's lead function.
type Reconcile struct {
	Client  *clientv3.Client
	Watches []Watched
	// Resync and Retry are the periods of the unconditional apply and of
	// the retry after a failure.
	Resync, Retry time.Duration
	// Apply brings the world in line with etcd; an error is logged and
	// retried after Retry.
	Apply func(ctx context.Context) error
	// Resynced, when set, runs after the first apply and after each
	// resync's: periodic work that a change does not call for.
	Resynced func(ctx context.Context)
	Logger   *slog.Logger
	// Name says what is applied, in logs.
	Name string
}

// Run loops until ctx ends (nil) or a watch fails (its error, so the
// caller's term ends and the next leader starts afresh).
func (r Reconcile) Run(ctx context.Context) error {
	// Ends the watches and their forwarding goroutines when Run returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The watches start before the first apply reads, so no change falls
	// between the two.
	changes := r.watch(ctx)
	resync := time.NewTicker(r.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	pending, resynced := true, true
	for {
		if pending {
			pending, retry = false, nil
			if err := r.Apply(ctx); err != nil && ctx.Err() == nil {
				r.Logger.Error("apply failed; retrying", "applying", r.Name, "err", err, "retryIn", r.Retry)
				retry = time.After(r.Retry)
			}
		}
		if resynced && r.Resynced != nil {
			r.Resynced(ctx)
		}
		resynced = false
		select {
		case <-ctx.Done():
			return nil
		case c := <-changes:
			if c.ended {
				return nil
			}
			if err := c.resp.Err(); err != nil {
				return fmt.Errorf("watch %s: %w", c.what, err)
			}
			pending = true
		case <-retry:
			pending = true
		case <-resync.C:
			pending, resynced = true, true
		}
	}
}

// change is one watch response and what it watched; ended says the watch
// ended (with ctx or the client).
type change struct {
	what  string
	resp  clientv3.WatchResponse
	ended bool
}

// watch forwards every response of the watches to one channel, and then
// the end of each. Its goroutines end with ctx.
func (r Reconcile) watch(ctx context.Context) <-chan change {
	out := make(chan change)
	for _, w := range r.Watches {
		var opts []clientv3.OpOption
		if w.Prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		wc := r.Client.Watch(clientv3.WithRequireLeader(ctx), w.Key, opts...)
		go func() {
			for resp := range wc {
				select {
				case out <- change{what: w.What, resp: resp}:
				case <-ctx.Done():
					return
				}
			}
			select {
			case out <- change{what: w.What, ended: true}:
			case <-ctx.Done():
			}
		}()
	}
	return out
}
