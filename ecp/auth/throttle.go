package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/kv"
)

// Login throttling. Every login attempt is recorded in etcd before its
// password is compared, once for the username and once for the client
// address; it is answered 429 (Retry-After, no bcrypt) when, counting
// itself, the failed and unfinished attempts of the current and the
// previous LoginWindow exceed MaxLoginFailuresPerUser for that username
// (from any address) or MaxLoginFailuresPerAddress for that address (for
// any username). A successful login removes only its own record, so it
// does not wipe out the failures of a guesser; a refused one too, so that
// hammering a blocked name stores nothing.
//
// The record and the count are one etcd transaction: concurrent guesses
// are counted one after the other, on every replica alike. That is one
// round trip before the password check and one after a success or a
// refusal. The records live on a lease that ends with the window after
// theirs, so an attacker's guesses at many names cost etcd nothing once
// the window has passed.
//
// The per-username count means a guesser can keep one account from
// logging in with its password (not its sessions or API tokens) by
// failing on purpose; that is the price of not letting many addresses
// guess at one account together.
const (
	LoginWindow                = 15 * time.Minute
	MaxLoginFailuresPerUser    = 6
	MaxLoginFailuresPerAddress = 30
)

// LoginAttemptsPrefix holds the attempt records:
// <prefix><window>/<user|addr>/<sha256 of the name or address>/<attempt id>.
const LoginAttemptsPrefix = "/ecp/login-attempts/"

// throttle counts login attempts in etcd.
type throttle struct {
	cli *clientv3.Client
	now func() time.Time

	mu sync.Mutex
	// leases holds, per window, the lease its records are attached to:
	// one grant per window and replica, not one per attempt.
	leases map[int64]clientv3.LeaseID
}

func newThrottle(cli *clientv3.Client, now func() time.Time) *throttle {
	return &throttle{cli: cli, now: now, leases: map[int64]clientv3.LeaseID{}}
}

// attempt is one recorded login attempt.
type attempt struct {
	keys []string
}

// errThrottled carries how long the caller should wait.
type errThrottled struct{ wait time.Duration }

func (e *errThrottled) Error() string { return "login throttled for " + e.wait.String() }

// begin records an attempt of username from addr and returns it, or an
// *errThrottled when the attempt is over a limit (then nothing stays
// recorded).
func (t *throttle) begin(ctx context.Context, username, addr string) (*attempt, error) {
	now := t.now()
	window := now.UnixNano() / int64(LoginWindow)
	resp, at, err := t.record(ctx, window, now, username, addr)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease ended early (etcd restored from a backup, a clock
		// jump): once more with a new one.
		t.forget(window)
		resp, at, err = t.record(ctx, window, now, username, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("record login attempt: %w", err)
	}
	count := func(i int) int64 { return resp.Responses[i].GetResponseRange().Count }
	users, addrs := count(2)+count(3), count(4)+count(5)
	if users <= MaxLoginFailuresPerUser && addrs <= MaxLoginFailuresPerAddress {
		return at, nil
	}
	if err := t.end(ctx, at); err != nil {
		return nil, err
	}
	// The failures of this window count until the next one ends; by then
	// the caller can at least try again.
	return nil, &errThrottled{wait: time.Duration((window+1)*int64(LoginWindow) - now.UnixNano())}
}

// record stores the attempt in window and counts, in one transaction.
func (t *throttle) record(ctx context.Context, window int64, now time.Time, username, addr string) (*clientv3.TxnResponse, *attempt, error) {
	lease, err := t.lease(ctx, window, now)
	if err != nil {
		return nil, nil, err
	}
	id := kv.NewID()
	prefixes := map[string]string{
		"user": "/user/" + hashHex(username) + "/",
		"addr": "/addr/" + hashHex(addr) + "/",
	}
	at := &attempt{}
	ops := []clientv3.Op{}
	for _, dim := range []string{"user", "addr"} {
		key := windowPrefix(window) + prefixes[dim] + id
		at.keys = append(at.keys, key)
		ops = append(ops, clientv3.OpPut(key, "", clientv3.WithLease(lease)))
	}
	// Counted after the puts, in the same transaction: each attempt sees
	// itself and every attempt committed before it.
	for _, dim := range []string{"user", "addr"} {
		for _, w := range []int64{window, window - 1} {
			ops = append(ops, clientv3.OpGet(windowPrefix(w)+prefixes[dim], clientv3.WithPrefix(), clientv3.WithCountOnly()))
		}
	}
	resp, err := t.commit(ctx, ops)
	return resp, at, err
}

// end removes the record of an attempt that did not fail (a success or a
// refusal); a failed one stays until its window is over.
func (t *throttle) end(ctx context.Context, at *attempt) error {
	ops := make([]clientv3.Op, 0, len(at.keys))
	for _, k := range at.keys {
		ops = append(ops, clientv3.OpDelete(k))
	}
	if _, err := t.commit(ctx, ops); err != nil {
		return fmt.Errorf("clear login attempt: %w", err)
	}
	return nil
}

func (t *throttle) commit(ctx context.Context, ops []clientv3.Op) (*clientv3.TxnResponse, error) {
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	return t.cli.Txn(ctx).Then(ops...).Commit()
}

// lease returns the lease of window's records: it lasts until the end of
// the window after it, when they stop being counted.
func (t *throttle) lease(ctx context.Context, window int64, now time.Time) (clientv3.LeaseID, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok := t.leases[window]; ok {
		return id, nil
	}
	ttl := time.Duration((window+2)*int64(LoginWindow) - now.UnixNano())
	ctx, cancel := kv.WithTimeout(ctx)
	defer cancel()
	resp, err := t.cli.Grant(ctx, int64(ttl/time.Second)+1)
	if err != nil {
		return 0, fmt.Errorf("grant login attempt lease: %w", err)
	}
	for w := range t.leases {
		if w < window {
			delete(t.leases, w) // only the current window gets new records
		}
	}
	t.leases[window] = resp.ID
	return resp.ID, nil
}

func (t *throttle) forget(window int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.leases, window)
}

func windowPrefix(window int64) string {
	return LoginAttemptsPrefix + strconv.FormatInt(window, 10)
}
