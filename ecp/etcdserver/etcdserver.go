// Package etcdserver runs the single-member etcd that ecp embeds when no
// external etcd endpoints are given, and gives tests the same real etcd.
//
// The member serves only ecp: it listens on 127.0.0.1 with mutual TLS
// (certificates made in its data directory on first start, see TLSDir),
// so a local process that can reach the port but not read the data
// directory can neither read ecp's records nor write them.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
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

// snapshotCatchUpEntries is how many applied raft entries the member keeps
// in memory behind its latest snapshot (etcd's --snapshot-catchup-entries).
// etcd keeps 5,000 for a follower that fell behind to catch up from, so a
// burst of writes (registering thousands of agents writes several records
// each) leaves 5,000 marshalled requests on the heap for good: the steady
// state writes too little to push them out. The embedded member has no
// followers (one member, peer port on loopback behind mutual TLS), so
// those entries serve nobody; a few are kept in case etcd reads one back.
const snapshotCatchUpEntries = 100

// snapshotCount is how many applied entries the member takes a snapshot
// after (etcd's --snapshot-count), which is when it lets go of the entries
// before it. etcd's 10,000 left a burst's last thousands of marshalled
// requests on the heap for good (6.5 MB at 10,000 agents): the steady state
// writes a few a minute and takes hours to reach the next snapshot. A
// snapshot costs a backend commit and a small file (the embedded member's
// membership), so a burst that registers thousands of agents takes a few.
const snapshotCount = 1000

// Options configure the embedded member.
type Options struct {
	// Dir holds the member's data and, in Dir/TLSDir, its certificates;
	// both survive restarts.
	Dir string
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
	certs     memberCerts
	closeOnce sync.Once
}

// loopback is where the member listens, client and peer port alike; port 0
// picks a free one (Server.Endpoint says which).
const loopback = "https://127.0.0.1:0"

// Start starts the member and waits until it serves.
func Start(ctx context.Context, opts Options, logger *slog.Logger) (*Server, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.QuotaBackendBytes == 0 {
		opts.QuotaBackendBytes = DefaultQuotaBackendBytes
	}
	if opts.Dir == "" {
		return nil, errors.New("embedded etcd: Options.Dir is required")
	}
	certs, err := ensureCerts(filepath.Join(opts.Dir, TLSDir), time.Now())
	if err != nil {
		return nil, fmt.Errorf("embedded etcd certificates in %s: %w", filepath.Join(opts.Dir, TLSDir), err)
	}
	listen, _ := url.Parse(loopback)

	cfg := embed.NewConfig()
	cfg.Name = "ecp"
	cfg.Dir = opts.Dir
	cfg.ListenClientUrls = []url.URL{*listen}
	cfg.AdvertiseClientUrls = []url.URL{*listen}
	// A single member has no peers, but etcd needs a peer listener; it gets
	// the same mutual TLS, so it answers nobody either.
	cfg.ListenPeerUrls = []url.URL{*listen}
	cfg.AdvertisePeerUrls = []url.URL{*listen}
	tlsInfo := transport.TLSInfo{
		CertFile:       certs.path(serverCertFile),
		KeyFile:        certs.path(serverKeyFile),
		TrustedCAFile:  certs.path(caCertFile),
		ClientCertAuth: true,
	}
	cfg.ClientTLSInfo, cfg.PeerTLSInfo = tlsInfo, tlsInfo
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// etcd's logs go to ecp's (info at debug, see ZapLogger): a fatal error
	// of etcd ends the process, and its reason must not be lost.
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(ZapLogger(logger))
	// Left zero, etcd warns of every request as slow; its own default.
	cfg.WarningUnaryRequestDuration = embed.DefaultWarningUnaryRequestDuration
	// Keep history bounded: ecp's watches need minutes of it, not days.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.QuotaBackendBytes = opts.QuotaBackendBytes
	cfg.SnapshotCatchUpEntries = snapshotCatchUpEntries
	cfg.SnapshotCount = snapshotCount

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
	s := &Server{etcd: e, endpoint: "https://" + e.Clients[0].Addr().String(), certs: certs}
	logger.Info("embedded etcd ready", "dir", opts.Dir, "endpoint", s.endpoint)
	return s, nil
}

// Endpoint is the client URL the member serves on.
func (s *Server) Endpoint() string { return s.endpoint }

// ClientTLS names the CA and the client certificate and key a client of
// this member needs (files in Dir/TLSDir): another replica sharing the
// member, a test, or etcdctl with --cacert, --cert and --key.
func (s *Server) ClientTLS() TLSFiles { return s.certs.client() }

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member; safe to call more than once (embed.Etcd.Close
// itself panics on a second call).
func (s *Server) Close() { s.closeOnce.Do(s.etcd.Close) }

// NewClient connects to endpoints with ecp's settings. With TLS files, or
// with an https:// endpoint (then the system's roots verify etcd), the
// connection uses TLS; TLS files with an http:// endpoint are refused
// rather than silently sent in clear.
func NewClient(endpoints []string, files TLSFiles) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoints given")
	}
	secure := 0
	for _, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			secure++
		}
	}
	if secure != 0 && secure != len(endpoints) {
		return nil, fmt.Errorf("etcd endpoints %v mix http:// and https://; use https:// for all", endpoints)
	}
	if !files.IsZero() && secure == 0 {
		return nil, fmt.Errorf("etcd TLS files are given but endpoints %v are not https://", endpoints)
	}
	cfg := clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	}
	if secure > 0 {
		tc, err := files.Config()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", endpoints, err)
	}
	return cli, nil
}
