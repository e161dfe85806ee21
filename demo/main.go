// Command demo runs the whole product on one machine: ecp with embedded
// etcd, two simulated EMQX clusters in two projects, and for each an agent
// registered through the commands ecp renders, exactly as an operator would
// paste them. `make demo` builds the binaries and runs it; Ctrl-C stops
// everything it started.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// Defaults of the demo's addresses; DEMO_ECP_ADDR overrides ecp's.
const (
	defaultECPAddr = "127.0.0.1:8080"
	adminUsername  = "admin"
	// reportInterval is shorter than the product's 15 s default so an
	// alert arrives within seconds of a fault; rules evaluate at it too.
	reportInterval = 5 * time.Second
	// demoMaxConnections is each cluster's allocation from the licence.
	demoMaxConnections = 1000
)

// Addresses of the real components the demo runs when they are installed.
const (
	prometheusAddr   = "127.0.0.1:9090"
	alertmanagerAddr = "127.0.0.1:9093"
	smtpAddr         = "127.0.0.1:1025"
	mailpitAddr      = "127.0.0.1:8025"
	// inboxAddr serves the demo's own mail inbox page (see inbox.go).
	inboxAddr        = "127.0.0.1:8026"
	victoriaLogsAddr = "127.0.0.1:9428"
)

type cluster struct {
	project, name string
	simAddr       string
	agentAddr     string
	simArgs       []string
}

var clusters = []cluster{
	{project: "factory-north", name: "north-line-1", simAddr: "127.0.0.1:18083", agentAddr: "127.0.0.1:9733",
		simArgs: []string{"--nodes", "3", "--rules", "12", "--connectors", "6", "--seed", "1", "--version", "5.8.9", "--cluster.name", "north-line-1"}},
	{project: "factory-south", name: "south-line-1", simAddr: "127.0.0.1:28083", agentAddr: "127.0.0.1:9734",
		simArgs: []string{"--nodes", "2", "--rules", "8", "--connectors", "4", "--seed", "2", "--version", "5.9.3", "--cluster.name", "south-line-1"}},
}

func main() { os.Exit(run(os.Args[1:], os.Stdout)) }

func run(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	binDir := fs.String("bin", "bin", "directory holding ecp, emqx-sim and agent-exporter (make build)")
	distDir := fs.String("dist", "dist", "directory holding agent-exporter-linux-<arch> (make dist)")
	workDir := fs.String("dir", ".demo", "working directory; emptied at start")
	untilReady := fs.Bool("exit-when-ready", false, "stop everything and exit 0 once every cluster is running (for tests)")
	fault := fs.Bool("fault", false, "break the first connector of the running demo's first cluster, to watch the alert arrive, and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *fault {
		if err := breakConnector(ctx, stdout, "http://"+clusters[0].simAddr); err != nil {
			_, _ = fmt.Fprintf(os.Stderr, "demo: %v\n", err)
			return 1
		}
		return 0
	}

	d := &demo{out: stdout, bins: testbed.Binaries{Dir: *binDir, DistDir: *distDir}, dir: *workDir}
	err := d.up(ctx)
	if err == nil && !*untilReady {
		_, _ = fmt.Fprintln(stdout, "\nPress Ctrl-C to stop the demo.")
		<-ctx.Done()
	}
	d.down()
	if err != nil {
		_, _ = fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}

type demo struct {
	out   io.Writer
	bins  testbed.Binaries
	dir   string
	procs []*testbed.Proc
	// inbox serves the mail inbox page while alerting runs.
	inbox *http.Server
	// alerting and logs say whether Prometheus, Alertmanager and Mailpit,
	// and VictoriaLogs, are installed and running.
	alerting, logs bool
}

func (d *demo) say(format string, args ...any) { _, _ = fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) up(ctx context.Context) error {
	ecpAddr := os.Getenv("DEMO_ECP_ADDR")
	if ecpAddr == "" {
		ecpAddr = defaultECPAddr
	}
	if err := d.checkPorts(ecpAddr); err != nil {
		return err
	}
	for _, name := range []string{"ecp", "emqx-sim", "agent-exporter"} {
		if _, err := os.Stat(d.bins.Path(name)); err != nil {
			return fmt.Errorf("%s is not built (run make build): %w", d.bins.Path(name), err)
		}
	}
	if err := os.RemoveAll(d.dir); err != nil {
		return fmt.Errorf("clean %s: %w", d.dir, err)
	}
	password := os.Getenv("ECP_ADMIN_PASSWORD")
	generated := password == ""
	if generated {
		password = randomPassword()
	}
	dist, err := filepath.Abs(d.bins.DistDir)
	if err != nil {
		return err
	}
	base := "http://" + ecpAddr
	ecpArgs, err := d.startStack(ctx, ecpAddr)
	if err != nil {
		return err
	}
	d.say("Starting ecp on %s (embedded etcd in %s)…", base, filepath.Join(d.dir, "ecp"))
	ecp, err := d.start("ecp", d.bins.Path("ecp"), append([]string{"serve",
		"--web.listen-address", ecpAddr, "--web.external-url", base,
		"--data.dir", filepath.Join(d.dir, "ecp", "data"), "--downloads.dir", dist,
		"--agent.report-interval", reportInterval.String()}, ecpArgs...),
		[]string{"ECP_ADMIN_USERNAME=" + adminUsername, "ECP_ADMIN_PASSWORD=" + password})
	if err != nil {
		return err
	}
	if err := ecp.WaitReady(ctx, base+"/-/ready", 60*time.Second); err != nil {
		return err
	}
	api, err := testbed.Login(ctx, base, adminUsername, password)
	if err != nil {
		return err
	}
	org, err := api.CreateOrg(ctx, "demo")
	if err != nil {
		return err
	}
	if d.logs {
		if err := api.Do(ctx, http.MethodPut, "/api/v1/system/log-receiver",
			map[string]any{"type": "victorialogs", "url": "http://" + victoriaLogsAddr}, nil); err != nil {
			return fmt.Errorf("configure the log receiver: %w", err)
		}
	}

	ids := make([]string, 0, len(clusters))
	for _, c := range clusters {
		id, err := d.manage(ctx, api, org.ID, c)
		if err != nil {
			return fmt.Errorf("take %s under management: %w", c.name, err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		cl, err := api.WaitState(ctx, id, "running", 60*time.Second)
		if err != nil {
			return err
		}
		d.say("  %-14s %-8s EMQX %s, %d nodes, %d connections (max %d)", clusters[i].name, cl.State, cl.Version, cl.Nodes, cl.Connections, cl.MaxConnections)
	}

	d.say("\necp is managing %d clusters.", len(ids))
	d.say("  Console:   %s/", base)
	d.say("  API:       %s/api/v1  (OpenAPI at %s/api/v1/openapi.json)", base, base)
	d.say("  Metrics:   %s/metrics", base)
	if generated {
		d.say("  Login:     %s / %s   (generated; set ECP_ADMIN_PASSWORD to choose one)", adminUsername, password)
	} else {
		d.say("  Login:     %s / the password in ECP_ADMIN_PASSWORD", adminUsername)
	}
	d.say("  Try:       curl -s -X POST %s/api/v1/login -d '{\"username\":\"%s\",\"password\":\"…\"}'", base, adminUsername)
	for _, c := range clusters {
		d.say("  EMQX %-14s dashboard http://%s (admin/public), agent metrics http://%s/metrics", c.name, c.simAddr, c.agentAddr)
	}
	if d.alerting {
		d.say("  Mail inbox: http://%s  (every alert e-mail; Mailpit's API at http://%s/api/v1)", inboxAddr, mailpitAddr)
		d.say("  Prometheus http://%s, Alertmanager http://%s", prometheusAddr, alertmanagerAddr)
		d.say("  Alerts go to ops@<project>.example; break a connector with `make demo-fault` and watch")
		d.say("  the project's alerts page and the mail inbox (about %s).", 3*reportInterval)
	}
	if d.logs {
		d.say("  EMQX logs are collected into VictoriaLogs (http://%s); search them on each project's logs page.", victoriaLogsAddr)
	}
	d.say("  Logs of every process are in %s.", d.dir)
	return nil
}

// manage runs one simulated cluster and takes it under management: entry,
// registration guide, agent download, run and register.
func (d *demo) manage(ctx context.Context, api *testbed.Client, org string, c cluster) (string, error) {
	dir := filepath.Join(d.dir, c.name)
	simArgs := append([]string{"--listen", c.simAddr, "--log.dir", filepath.Join(dir, "emqx-log")}, c.simArgs...)
	if err := os.MkdirAll(filepath.Join(dir, "emqx-log"), 0o750); err != nil {
		return "", err
	}
	sim, err := d.start("emqx-sim "+c.name, d.bins.Path("emqx-sim"), simArgs, nil)
	if err != nil {
		return "", err
	}
	if err := sim.WaitReady(ctx, "http://"+c.simAddr+"/status", 30*time.Second); err != nil {
		return "", err
	}
	project, err := api.CreateProject(ctx, org, c.project)
	if err != nil {
		return "", err
	}
	entry, err := api.CreateCluster(ctx, project.ID, c.name, "http://"+c.simAddr)
	if err != nil {
		return "", err
	}
	reg, err := api.Register(ctx, entry.ID)
	if err != nil {
		return "", err
	}
	d.say("Registering %s (project %s) with the commands ecp rendered…", c.name, c.project)
	setup := testbed.AgentSetup{
		Dir: filepath.Join(dir, "agent"), ListenAddress: c.agentAddr,
		EMQXUsername: "admin", EMQXPassword: "public", CollectInterval: reportInterval,
	}
	if d.logs {
		logDir, err := filepath.Abs(filepath.Join(dir, "emqx-log"))
		if err != nil {
			return "", err
		}
		setup.ExtraRegisterArgs = []string{"--emqx-log-collection-enabled", "--emqx-log-collection-dir", logDir}
	}
	agent, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		return "", err
	}
	// The simulated clients want more than the 10 connections a new entry
	// gets; a real allocation keeps "connections near max" quiet, so the
	// first alert the user sees is the one they cause.
	if err := api.Do(ctx, http.MethodPut, "/api/v1/clusters/"+entry.ID+"/max-connections", map[string]int{"maxConnections": demoMaxConnections}, nil); err != nil {
		return "", fmt.Errorf("max connections: %w", err)
	}
	if d.alerting {
		settings := map[string]any{"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "critical",
			"emqxAlertPush": false, "emails": []string{"ops@" + c.project + ".example"}, "webhooks": []any{}}
		if err := api.Do(ctx, http.MethodPut, "/api/v1/projects/"+project.ID+"/alert-settings", settings, nil); err != nil {
			return "", fmt.Errorf("alert settings: %w", err)
		}
	}
	d.procs = append(d.procs, agent)
	return entry.ID, nil
}

func (d *demo) start(name, bin string, args, env []string) (*testbed.Proc, error) {
	logPath := filepath.Join(d.dir, "logs", filepath.Base(bin)+"-"+fmt.Sprint(len(d.procs))+".log")
	p, err := testbed.Start(name, bin, args, env, logPath)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	return p, nil
}

// down stops the inbox page, then every process in the reverse order of
// starting: agents before the clusters they watch, ecp last.
func (d *demo) down() {
	if len(d.procs) == 0 {
		return
	}
	d.say("Stopping…")
	if d.inbox != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.inbox.Shutdown(ctx); err != nil {
			d.say("  mail inbox: %v", err)
		}
		cancel()
	}
	for _, p := range slices.Backward(d.procs) {
		if err := p.Stop(); err != nil {
			d.say("  %v", err)
		}
	}
	d.say("Stopped; nothing of the demo is running.")
}

func (d *demo) checkPorts(ecpAddr string) error {
	addrs := []string{ecpAddr}
	for _, c := range clusters {
		addrs = append(addrs, c.simAddr, c.agentAddr)
	}
	return d.checkFree(addrs...)
}

func (d *demo) checkFree(addrs ...string) error {
	var errs []error
	for _, a := range addrs {
		if err := testbed.CheckFree(a); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("the demo needs these loopback ports free: %w (stop what uses them; set DEMO_ECP_ADDR to move ecp)", errors.Join(errs...))
	}
	return nil
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
