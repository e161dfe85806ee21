// Command emqx-sim serves a simulated EMQX v5 Enterprise cluster: the
// management API, Prometheus endpoints, log files and a fault API under
// /sim/, for developing and testing ecp and its agent without EMQX.
package main

import (
	"context"
	"errors"
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
	"github.com/ecpio/ecp/internal/cmdline"
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
	fs := cmdline.New("emqx-sim", "Serve a simulated EMQX v5 Enterprise cluster.", os.Stdout, os.Stderr)
	listen := fs.Flag("listen", "address of the dashboard listener (API, /status, Prometheus, /sim/)").Default(sim.DefaultListen).String()
	nodes := fs.Flag("nodes", "number of EMQX nodes").Default(fmt.Sprint(d.Nodes)).Int()
	rules := fs.Flag("rules", "number of rules").Default(fmt.Sprint(d.Rules)).Int()
	connectors := fs.Flag("connectors", "number of connectors (each with one action; mqtt ones also a source)").Default(fmt.Sprint(d.Connectors)).Int()
	seed := fs.Flag("seed", "seed of every random choice").Default(fmt.Sprint(d.Seed)).Int64()
	version := fs.Flag("version", "EMQX release to serve, e.g. 5.7.2, 5.8.9, 5.9.3").Default(d.Version).String()
	cluster := fs.Flag("cluster.name", "cluster name").Default(d.ClusterName).String()
	nodeHost := fs.Flag("node.host-prefix", "node names are emqx@<prefix><n>; empty: 10.<a>.<b>. from the listen port, so that sims on one machine are distinct clusters to ecp").String()
	ctype := fs.Flag("license.customer-type", "licence customer type (3 = business critical, enables dynamic_max_connections)").Default(fmt.Sprint(d.LicenseCustomerType)).Int()
	ltype := fs.Flag("license.type", "licence type (0 trial, 1 official, 2 community)").Default(fmt.Sprint(d.LicenseType)).Int()
	lmax := fs.Flag("license.max-sessions", "max sessions of the licence key").Default(fmt.Sprint(d.LicenseMaxSessions)).Int()
	promText := fs.Flag("prometheus.text-only", "answer the Prometheus endpoints in text whatever Accept asks, as a node without their JSON variant").Bool()
	user := fs.Flag("dashboard.username", "dashboard administrator user name").Default(d.DashboardUsername).String()
	pass := fs.Flag("dashboard.password", "dashboard administrator password").Default(d.DashboardPassword.Reveal()).String()
	clients := fs.Flag("clients-per-node", "client demand per node (the licence caps it)").Default(fmt.Sprint(d.ClientsPerNode)).Int()
	tick := fs.Flag("tick-interval", "how often the cluster model advances").Default(d.TickInterval.String()).Duration()
	logDir := fs.Flag("log.dir", "directory for EMQX log files emqx.log.1..N (empty: console only, as in Docker)").String()
	logFormat := fs.Flag("log.format", "EMQX log formatter: text or json").Default(d.LogFormat).String()
	logLevel := fs.Flag("log.level", "EMQX log level: debug, info, notice, warning, error, critical, alert, emergency").Default(d.LogLevel).String()
	rotSize := fs.Flag("log.rotation-size", "bytes per wrap log file").Default(fmt.Sprint(d.LogRotationSize)).Int64()
	rotCount := fs.Flag("log.rotation-count", "number of wrap log files").Default(fmt.Sprint(d.LogRotationCount)).Int()
	logRate := fs.Flag("log.rate", "background log lines written per tick").Default(fmt.Sprint(d.LogRate)).Int()
	if _, helped, err := fs.Parse(args); helped {
		return 0
	} else if err != nil {
		fs.Errorf("%v (try --help)", err)
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
