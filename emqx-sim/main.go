// Command emqx-sim serves a simulated EMQX v5 Enterprise cluster: the
// management API, Prometheus endpoints, log files and a fault API under
// /sim/, for developing and testing ecp and its agent without EMQX.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/oklog/run"

	"github.com/ecpio/ecp/emqx-sim/sim"
	"github.com/ecpio/ecp/internal/secret"
)

func main() { os.Exit(runMain(os.Args[1:])) }

// hostPrefixFor gives each listen port its own made-up subnet: ecp tells
// clusters apart by their cluster name and node names (one agent per
// cluster), so two sims started with the defaults must not look like one.
// A sim restarted on the same port is the same cluster again.
func hostPrefixFor(listen string) string {
	_, port, err := net.SplitHostPort(listen)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n <= 0 {
		return sim.DefaultNodeHostPrefix
	}
	return fmt.Sprintf("10.%d.%d.", n>>8, n&0xff)
}

func runMain(args []string) int {
	d := sim.DefaultOptions()
	fs := flag.NewFlagSet("emqx-sim", flag.ContinueOnError)
	listen := fs.String("listen", sim.DefaultListen, "address of the dashboard listener (API, /status, Prometheus, /sim/)")
	nodes := fs.Int("nodes", d.Nodes, "number of EMQX nodes")
	rules := fs.Int("rules", d.Rules, "number of rules")
	connectors := fs.Int("connectors", d.Connectors, "number of connectors (each with one action; mqtt ones also a source)")
	seed := fs.Int64("seed", d.Seed, "seed of every random choice")
	version := fs.String("version", d.Version, "EMQX release to serve, e.g. 5.7.2, 5.8.9, 5.9.3")
	cluster := fs.String("cluster.name", d.ClusterName, "cluster name")
	nodeHost := fs.String("node.host-prefix", "", "node names are emqx@<prefix><n>; empty: 10.<a>.<b>. from the listen port, so that sims on one machine are distinct clusters to ecp")
	ctype := fs.Int("license.customer-type", d.LicenseCustomerType, "licence customer type (3 = business critical, enables dynamic_max_connections)")
	ltype := fs.Int("license.type", d.LicenseType, "licence type (0 trial, 1 official, 2 community)")
	lmax := fs.Int("license.max-sessions", d.LicenseMaxSessions, "max sessions of the licence key")
	promText := fs.Bool("prometheus.text-only", false, "answer the Prometheus endpoints in text whatever Accept asks, as a node without their JSON variant")
	user := fs.String("dashboard.username", d.DashboardUsername, "dashboard administrator user name")
	pass := fs.String("dashboard.password", d.DashboardPassword.Reveal(), "dashboard administrator password")
	clients := fs.Int("clients-per-node", d.ClientsPerNode, "client demand per node (the licence caps it)")
	tick := fs.Duration("tick-interval", d.TickInterval, "how often the cluster model advances")
	logDir := fs.String("log.dir", "", "directory for EMQX log files emqx.log.1..N (empty: console only, as in Docker)")
	logFormat := fs.String("log.format", d.LogFormat, "EMQX log formatter: text or json")
	logLevel := fs.String("log.level", d.LogLevel, "EMQX log level: debug, info, notice, warning, error, critical, alert, emergency")
	rotSize := fs.Int64("log.rotation-size", d.LogRotationSize, "bytes per wrap log file")
	rotCount := fs.Int("log.rotation-count", d.LogRotationCount, "number of wrap log files")
	logRate := fs.Int("log.rate", d.LogRate, "background log lines written per tick")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "emqx-sim: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	opts := d
	opts.Nodes, opts.Rules, opts.Connectors, opts.Seed, opts.Version = *nodes, *rules, *connectors, *seed, *version
	opts.ClusterName = *cluster
	opts.NodeHostPrefix = *nodeHost
	if opts.NodeHostPrefix == "" {
		opts.NodeHostPrefix = hostPrefixFor(*listen)
	}
	opts.LicenseCustomerType, opts.LicenseType, opts.LicenseMaxSessions = *ctype, *ltype, *lmax
	opts.PrometheusTextOnly = *promText
	opts.DashboardUsername, opts.DashboardPassword = *user, secret.String(*pass)
	opts.ClientsPerNode, opts.TickInterval = *clients, *tick
	opts.LogDir, opts.LogFormat, opts.LogLevel = *logDir, *logFormat, *logLevel
	opts.LogRotationSize, opts.LogRotationCount, opts.LogRate = *rotSize, *rotCount, *logRate
	opts.Logger = logger
	s, err := sim.New(opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "emqx-sim: %v\n", err)
		return 2
	}
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", *listen)
	if err != nil {
		logger.Error("listen", "addr", *listen, "err", err)
		return 1
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}

	var g run.Group
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	g.Add(func() error { <-ctx.Done(); return nil }, func(error) { cancel() })
	g.Add(func() error {
		logger.Info("serving simulated emqx", "addr", ln.Addr().String(), "version", s.Version(), "nodes", *nodes,
			"rules", *rules, "connectors", *connectors)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	}, func(error) {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	})
	runCtx, runCancel := context.WithCancel(context.Background())
	g.Add(func() error { return s.Run(runCtx) }, func(error) { runCancel() })
	err = g.Run()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if serr := s.Stop(sctx); err == nil {
		err = serr
	}
	if err != nil {
		logger.Error("emqx-sim stopped", "err", err)
		return 1
	}
	return 0
}
