// Package etcdserver runs the single-member etcd that ecp embeds when no
// external etcd endpoints are given, and gives tests the same real etcd.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// DefaultStartTimeout bounds how long Start waits for the member to serve.
const DefaultStartTimeout = 60 * time.Second

// DefaultQuotaBackendBytes is the member's backend quota, set explicitly
// rather than left to etcd: past it etcd raises the NOSPACE alarm and
// refuses every write until space is freed and the alarm disarmed.
const DefaultQuotaBackendBytes = 2 << 30

// Options configure the embedded member.
type Options struct {
	// Dir holds the member's data; it survives restarts.
	Dir string
	// ClientURL is where the member serves clients. The default,
	// http://127.0.0.1:0, picks a free loopback port; Server.Endpoint says
	// which, so another ecp replica can share this member.
	ClientURL string
	// StartTimeout bounds Start; DefaultStartTimeout when zero.
	StartTimeout time.Duration
	// QuotaBackendBytes is the backend quota; DefaultQuotaBackendBytes
	// when zero.
	QuotaBackendBytes int64
}

// Server is a running embedded etcd member.
type Server struct {
	etcd      *embed.Etcd
	endpoint  string
	closeOnce sync.Once
}

// Start starts the member and waits until it serves.
func Start(ctx context.Context, opts Options, logger *slog.Logger) (*Server, error) {
	if opts.ClientURL == "" {
		opts.ClientURL = "http://127.0.0.1:0"
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.QuotaBackendBytes == 0 {
		opts.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	clientURL, err := url.Parse(opts.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("parse etcd client URL %q: %w", opts.ClientURL, err)
	}
	peerURL, _ := url.Parse("http://127.0.0.1:0")

	cfg := embed.NewConfig()
	cfg.Name = "ecp"
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd's own zap logs would drown ecp's; its failures surface as errors.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Keep history bounded: ecp's watches need minutes of it, not days.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.QuotaBackendBytes = opts.QuotaBackendBytes

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", opts.Dir, err)
	}
	timer := time.NewTimer(opts.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd failed while starting: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd did not become ready within %s", opts.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	s := &Server{etcd: e, endpoint: "http://" + e.Clients[0].Addr().String()}
	logger.Info("embedded etcd ready", "dir", opts.Dir, "endpoint", s.endpoint)
	return s, nil
}

// Endpoint is the client URL the member serves on.
func (s *Server) Endpoint() string { return s.endpoint }

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member; safe to call more than once (embed.Etcd.Close
// itself panics on a second call).
func (s *Server) Close() { s.closeOnce.Do(s.etcd.Close) }

// NewClient connects to endpoints with ecp's settings.
func NewClient(endpoints []string) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints given")
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	return cli, nil
}
