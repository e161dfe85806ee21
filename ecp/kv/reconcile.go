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
	// Signal, when set, is a change as a watched key's: from a
	// replica-local view that follows etcd itself (a registry.Mirror
	// subscriber), which must signal after its memory changed, so that
	// the apply it calls for reads the change. It holds at most one
	// signal, as the watches' channel does.
	Signal <-chan struct{}
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
	changed, ended := r.watch(ctx)
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
		case <-changed:
			pending = true
		case <-r.Signal:
			pending = true
		case c := <-ended:
			if c.err != nil {
				return fmt.Errorf("watch %s: %w", c.what, c.err)
			}
			return nil
		case <-retry:
			pending = true
		case <-resync.C:
			pending, resynced = true, true
		}
	}
}

// watchEnd is how a watch ended: with an error, or with ctx or the
// client (err nil).
type watchEnd struct {
	what string
	err  error
}

// watch signals changed after every change of the watched keys and ended
// when a watch ends. changed holds one signal: every change that arrives
// while an apply runs is covered by one more apply, not one apply each,
// which would fall ever further behind a burst (3,000 registrations kept
// the alert leader applying 16 times a second a minute later). Its
// goroutines end with ctx.
func (r Reconcile) watch(ctx context.Context) (changed <-chan struct{}, ended <-chan watchEnd) {
	signal, end := make(chan struct{}, 1), make(chan watchEnd)
	for _, w := range r.Watches {
		var opts []clientv3.OpOption
		if w.Prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		wc := r.Client.Watch(clientv3.WithRequireLeader(ctx), w.Key, opts...)
		go func() {
			var err error
			for resp := range wc {
				if err = resp.Err(); err != nil {
					break
				}
				select {
				case signal <- struct{}{}:
				default: // a signal is already waiting
				}
			}
			select {
			case end <- watchEnd{what: w.What, err: err}:
			case <-ctx.Done():
			}
		}()
	}
	return signal, end
}
