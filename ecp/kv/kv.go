// Package kv holds the few helpers every ecp package uses to keep JSON
// records in etcd: bounded calls, typed reads and lists, and random ids.
// It owns no keys itself; each package documents the prefix it owns.
package kv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// CallTimeout bounds every single etcd call made through this package, so a
// partitioned etcd turns into an error instead of a hung request.
const CallTimeout = 5 * time.Second

// ErrNotFound says the key holds no record.
var ErrNotFound = errors.New("kv: not found")

// WithTimeout bounds ctx by CallTimeout.
func WithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, CallTimeout)
}

// Get decodes the JSON record at key into v and returns its mod revision.
func Get(ctx context.Context, cli *clientv3.Client, key string, v any) (int64, error) {
	ctx, cancel := WithTimeout(ctx)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, ErrNotFound
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return resp.Kvs[0].ModRevision, nil
}

// List decodes every record under prefix, in key order.
func List[T any](ctx context.Context, cli *clientv3.Client, prefix string) ([]T, error) {
	ctx, cancel := WithTimeout(ctx)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]T, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Encode marshals v for storage; it is only a wrapper that names the key in
// the error.
func Encode(key string, v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", key, err)
	}
	return string(b), nil
}

// Create stores v at key only if the key does not exist yet (plus any
// extra operations in the same transaction); it reports whether it did.
func Create(ctx context.Context, cli *clientv3.Client, key string, v any, extra ...clientv3.Op) (bool, error) {
	val, err := Encode(key, v)
	if err != nil {
		return false, err
	}
	ctx, cancel := WithTimeout(ctx)
	defer cancel()
	ops := append([]clientv3.Op{clientv3.OpPut(key, val)}, extra...)
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("create %s: %w", key, err)
	}
	return resp.Succeeded, nil
}

// NewID returns a random 16-hex-digit id: short enough to type, random
// enough that guessing another tenant's id is hopeless.
func NewID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms.
	return hex.EncodeToString(b)
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)

// ValidID reports whether s can be an id made by NewID (or a legacy id of
// the same alphabet); anything else cannot exist and is answered as absent.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Campaign is concurrency.Election.Campaign that returns as soon as ctx
// ends. etcd's Campaign, when its ctx ends while it waits, resigns with
// the client's own context: with etcd unreachable that call never returns
// until the client is closed, and the client is closed only after every
// loop using it has returned, so waiting for it would hang shutdown. The
// resignation still runs in the background and ends when the client closes;
// the caller's session revoking its lease removes the candidacy anyway.
func Campaign(ctx context.Context, el *concurrency.Election, value string) error {
	done := make(chan error, 1)
	go func() { done <- el.Campaign(ctx, value) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
