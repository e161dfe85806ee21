package etcdserver_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	put := func(ctx context.Context, key, value string) {
		srv, err := etcdserver.Start(ctx, etcdserver.Options{Dir: dir}, logger)
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cli := etcdtest.ClientOf(t, srv)
		if value != "" {
			if _, err := cli.Put(ctx, key, value); err != nil {
				t.Fatal(err)
			}
			return
		}
		resp, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v1" {
			t.Fatalf("after restart got %v, want v1", resp.Kvs)
		}
	}
	put(t.Context(), "/k", "v1")
	put(t.Context(), "/k", "")
}

// TestSec08EmbeddedEtcdServesOnlyEcp: issue #11 finding 8: any local
// process could open the embedded etcd's client port, read every secret
// and write a role binding making a viewer system admin. Now a client
// without ecp's client certificate, plaintext or TLS, gets nothing, while
// ecp's own client works.
func TestSec08EmbeddedEtcdServesOnlyEcp(t *testing.T) {
	srv := etcdtest.Start(t)
	hostPort := srv.Endpoint()[strings.Index(srv.Endpoint(), "://")+3:]
	if host, _, err := net.SplitHostPort(hostPort); err != nil || host != "127.0.0.1" {
		t.Fatalf("embedded etcd serves on %s, want 127.0.0.1 only", srv.Endpoint())
	}
	if _, err := etcdtest.ClientOf(t, srv).Put(t.Context(), "/ecp/probe", "ecp"); err != nil {
		t.Fatalf("ecp's own client: %v", err)
	}
	attackers := map[string]clientv3.Config{
		"plaintext": {Endpoints: []string{"http://" + hostPort}},
		"TLS without a client certificate": {Endpoints: []string{"https://" + hostPort},
			TLS: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // the attacker trusts anything
	}
	for name, cfg := range attackers {
		t.Run(name, func(t *testing.T) {
			cfg.DialTimeout, cfg.Logger = 2*time.Second, zap.NewNop()
			cli, err := clientv3.New(cfg)
			if err != nil {
				return // refused while dialling
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if resp, err := cli.Get(ctx, "/ecp/", clientv3.WithPrefix()); err == nil {
				t.Fatalf("a local client without ecp's certificate read %d keys", len(resp.Kvs))
			}
			if _, err := cli.Put(ctx, "/ecp/tenancy/bindings/forged", "system-admin"); err == nil {
				t.Fatal("a local client without ecp's certificate wrote a key")
			}
		})
	}
}
