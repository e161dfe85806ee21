// Package cli is agent-exporter's command line: it parses the
// subcommands (run, register, unregister, status, version), builds the
// logger and registry for run, and talks to the running daemon through the
// control API for the others. main only calls Main.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ecpio/ecp/agent-exporter/control"
	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/cmdline"
	"github.com/ecpio/ecp/internal/ops"
	"github.com/ecpio/ecp/internal/secret"
	"github.com/ecpio/ecp/internal/version"
	"github.com/ecpio/ecp/internal/webconfig"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// DefaultLogFile is where the daemon logs, beside EMQX's own logs.
const DefaultLogFile = "/opt/emqx/log/agent.log"

// DefaultGCPercent is the Go GC target `run` sets unless GOGC is set.
const DefaultGCPercent = 50

// controlTimeout bounds a subcommand's call to the daemon; register waits
// for EMQX and ecp behind it.
const controlTimeout = 60 * time.Second

var errNotTerminal = errors.New("standard input is not a terminal")

// Env is the process environment a command runs in; tests fill it.
type Env struct {
	Stdin          *os.File
	Stdout, Stderr io.Writer
	// Context, when set, is the parent of run's signal context: cancelling
	// it stops the daemon as SIGTERM would (tests).
	Context context.Context
	// Ready, when set, receives the daemon once it is built (tests).
	Ready func(*daemon.App)
	// DefaultLogFile, when set, replaces DefaultLogFile as --log.file's
	// default (tests).
	DefaultLogFile string
}

const usage = `usage: agent-exporter <command> [flags]

commands:
  run          run the agent daemon
  register     register this agent with ecp (the daemon must run)
  unregister   unregister from ecp and forget the credential
  status       show registration, EMQX and report status
  version      print the version

"agent-exporter <command> -h" lists a command's flags.
`

// Main runs the command line and returns the exit code.
func Main(args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Stdin == nil {
		env.Stdin = os.Stdin
	}
	if env.Context == nil {
		env.Context = context.Background()
	}
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, usage)
		return ExitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(rest, env)
	case "register":
		return registerCmd(rest, env)
	case "unregister":
		return unregisterCmd(rest, env)
	case "status":
		return statusCmd(rest, env)
	case "version", "--version":
		fmt.Fprintf(env.Stdout, "agent-exporter %s (revision %s, %s, %s/%s)\n", version.Version, orNone(version.Revision), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return ExitOK
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return ExitOK
	default:
		fmt.Fprintf(env.Stderr, "unknown command %q\n\n%s", cmd, usage)
		return ExitUsage
	}
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// newCommand returns the flag parser of one subcommand; "agent-exporter
// <name> --help" lists its flags.
func newCommand(name, help string, env Env) *cmdline.App {
	return cmdline.New("agent-exporter "+name, help, env.Stdout, env.Stderr)
}

// parse returns an exit code when parsing ended the command: 0 after
// --help, ExitUsage for a flag kingpin refuses (its message names it).
func parse(fs *cmdline.App, args []string) (int, bool) {
	_, helped, err := fs.Parse(args)
	switch {
	case helped:
		return ExitOK, true
	case err != nil:
		fs.Errorf("%v (try %s --help)", err, fs.Name)
		return ExitUsage, true
	}
	return 0, false
}

func runCmd(args []string, env Env) int {
	fs := newCommand("run", "Run the agent daemon.", env)
	opts := daemon.DefaultOptions()
	var intervalSet, logFileSet bool
	fs.Flag("config.file", "Optional YAML configuration file (collectInterval, logLevel); reloaded by SIGHUP and POST /-/reload.").StringVar(&opts.ConfigFile)
	fs.Flag("collect.interval", "How often EMQX is polled; /metrics serves the latest collection. Unset, the agent follows the report interval ecp sends.").Default(daemon.DefaultCollectInterval.String()).IsSetByUser(&intervalSet).DurationVar(&opts.CollectInterval)
	fs.Flag("web.listen-address", "Address for /metrics, probes and the local control API; keep it on loopback.").Default(daemon.DefaultListenAddress).StringVar(&opts.ListenAddress)
	fs.Flag("web.config.file", webconfig.FlagHelp+" The control API keeps its token; register, status and unregister pin the certificate.").StringVar(&opts.WebConfigFile)
	fs.Flag("web.enable-pprof", ops.PprofFlagHelp).BoolVar(&opts.EnablePprof)
	fs.Flag("state.dir", "Directory for the credential and EMQX login (mode 0700).").Default(daemon.DefaultStateDir).StringVar(&opts.StateDir)
	fs.Flag("ecp.http2", "Reach ecp over one HTTP/2 connection, calls beside the held long-poll, instead of one HTTP/1.1 connection on which each long-poll ends before the next report (the default: it costs ecp about a quarter of the memory per agent).").BoolVar(&opts.ECPHTTP2)
	fs.Flag("remote-write.max-series", "Most series pushed to ecp per collection (0: no cap); cluster-level series and abnormal objects are pushed whatever the cap, /metrics serves everything.").Default(fmt.Sprint(daemon.DefaultRemoteWriteMaxSeries)).IntVar(&opts.RemoteWriteMaxSeries)
	defaultLog := cmp.Or(env.DefaultLogFile, DefaultLogFile)
	logFile := fs.Flag("log.file", "Log file; its directory must exist (where the default's does not, the agent logs to standard error and says so). \"-\" logs to standard error.").Default(defaultLog).IsSetByUser(&logFileSet).String()
	logLevel := fs.Flag("log.level", "Log level: debug, info, warn, error.").Default("info").String()
	if code, done := parse(fs, args); done {
		return code
	}
	// An interval the operator did not give is only a starting value:
	// the agent follows the one ecp sends, which ecp's alert rules and
	// liveness are built for.
	opts.FollowECPInterval = !intervalSet
	if opts.CollectInterval < agentproto.MinAgentInterval || opts.CollectInterval > agentproto.MaxAgentInterval {
		fmt.Fprintf(env.Stderr, "--collect.interval %s: want %s to %s (ecp refuses reports outside it)\n", opts.CollectInterval, agentproto.MinAgentInterval, agentproto.MaxAgentInterval)
		return ExitUsage
	}
	if opts.RemoteWriteMaxSeries < 0 {
		fmt.Fprintf(env.Stderr, "--remote-write.max-series %d: want 0 (no cap) or more\n", opts.RemoteWriteMaxSeries)
		return ExitUsage
	}
	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(env.Stderr, "--log.level %q: want debug, info, warn or error\n", *logLevel)
		return ExitUsage
	}
	out := env.Stderr
	if *logFile != "-" {
		f, err := openLogFile(*logFile)
		switch {
		case errors.As(err, new(*noLogDirError)) && !logFileSet:
			// The default is EMQX's log directory of the tar.gz and
			// Docker installs; a deb/rpm host has /var/log/emqx instead.
			// Starting beats failing over where the agent's own log goes.
			fmt.Fprintf(env.Stderr, "warning: %s does not exist, so the agent logs to standard error; create it or choose a file with --log.file (the log directory of deb/rpm installs is /var/log/emqx)\n", filepath.Dir(*logFile))
		case err != nil:
			fmt.Fprintln(env.Stderr, err)
			return ExitError
		default:
			defer f.Close()
			out = f
		}
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Logger, opts.LogLevel, opts.Registerer, opts.Gatherer, opts.Stdout = logger, level, reg, reg, env.Stdout

	// The agent's heap is small and mostly rebuilt in place every tick
	// (package gather, the selection's scratch, kept reply buffers), so a
	// GC target of half the live heap instead of Go's whole one costs
	// little CPU and keeps the process under 40 MiB at 1,000 rules and
	// 1,000 connectors (37 MiB measured, against 43). GOGC, when set,
	// decides.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
	app, err := daemon.New(opts)
	if err != nil {
		logger.Error("cannot start the agent", "err", err)
		fmt.Fprintf(env.Stderr, "cannot start the agent: %v\n", err)
		return ExitError
	}
	ctx, stop := signal.NotifyContext(env.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = app.Reload()
			}
		}
	}()
	if env.Ready != nil {
		env.Ready(app)
	}
	if err := app.Run(ctx); err != nil {
		logger.Error("agent failed", "err", err)
		fmt.Fprintf(env.Stderr, "agent failed: %v\n", err)
		return ExitError
	}
	return ExitOK
}

// noLogDirError: the directory of --log.file does not exist.
type noLogDirError struct{ path, dir string }

func (e *noLogDirError) Error() string {
	return fmt.Sprintf("--log.file %s: directory %s does not exist; create it or choose another --log.file (\"-\" for standard error)", e.path, e.dir)
}

func openLogFile(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, &noLogDirError{path: path, dir: dir}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("--log.file %s: %w", path, err)
	}
	return f, nil
}

// target is where a subcommand finds the daemon.
type target struct {
	agentURL string
	stateDir string
}

func (t *target) flags(fs *cmdline.App) {
	fs.Flag("agent.url", "URL of the running agent's control API (default: read from --state.dir).").StringVar(&t.agentURL)
	fs.Flag("state.dir", "The running agent's state directory; holds the control token.").Default(daemon.DefaultStateDir).StringVar(&t.stateDir)
}

func (t *target) client() (*control.Client, error) {
	c, err := state.At(t.stateDir).LoadControl()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("the agent daemon is not running (no %s in %s); start it with `agent-exporter run`", state.ControlFile, t.stateDir)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("cannot read %s: permission denied; run this command as the agent's user (usually root)", filepath.Join(t.stateDir, state.ControlFile))
	case err != nil:
		return nil, err
	}
	if t.agentURL != "" {
		c.URL = t.agentURL
	}
	cl := &control.Client{URL: c.URL, Token: c.Token}
	if c.WebConfigFile != "" {
		// The daemon serves https: trust the certificate its web
		// configuration names, and only that one.
		tc, err := webconfig.ClientTLS(c.WebConfigFile)
		if err != nil {
			return nil, fmt.Errorf("the agent serves https under %s, which this command cannot use: %w", c.WebConfigFile, err)
		}
		cl.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	return cl, nil
}

func describe(err error) string {
	var ce *control.Error
	switch {
	case errors.As(err, &ce):
		return ce.Message
	case errors.Is(err, control.ErrDaemonUnreachable):
		return err.Error() + "; start it with `agent-exporter run`"
	default:
		return err.Error()
	}
}

func registerCmd(args []string, env Env) int {
	fs := newCommand("register", "Register this agent with ecp (the daemon must run).", env)
	var (
		req          control.RegisterRequest
		token, pass  string
		passwordFile string
		t            target
	)
	fs.Flag("ecp-url", "ecp's URL (required).").StringVar(&req.ECPURL)
	fs.Flag("token", "Single-use registration token from ecp (required).").StringVar(&token)
	fs.Flag("username", "EMQX dashboard username (required).").StringVar(&req.Username)
	fs.Flag("password", "EMQX dashboard password; prefer --password-file or the prompt (keeps it out of shell history).").StringVar(&pass)
	fs.Flag("password-file", "File holding the EMQX dashboard password.").StringVar(&passwordFile)
	fs.Flag("dashboard-url", "EMQX dashboard URL as operators open it (required).").StringVar(&req.DashboardURL)
	fs.Flag("api-url", "EMQX API URL the agent calls, e.g. http://127.0.0.1:18083 (required).").StringVar(&req.APIURL)
	fs.Flag("insecure-skip-verify", "Do not verify TLS certificates of ecp and EMQX.").BoolVar(&req.InsecureSkipVerify)
	fs.Flag("emqx-log-collection-enabled", "Ship EMQX's log files to ecp.").BoolVar(&req.LogCollection.Enabled)
	fs.Flag("emqx-log-collection-dir", "EMQX's log directory (with --emqx-log-collection-enabled).").StringVar(&req.LogCollection.Dir)
	t.flags(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	for _, f := range []struct{ name, v string }{
		{"ecp-url", req.ECPURL}, {"token", token}, {"username", req.Username},
		{"dashboard-url", req.DashboardURL}, {"api-url", req.APIURL},
	} {
		if f.v == "" {
			fmt.Fprintf(env.Stderr, "register: --%s is required\n", f.name)
			return ExitUsage
		}
	}
	if req.LogCollection.Enabled && req.LogCollection.Dir == "" {
		fmt.Fprintln(env.Stderr, "register: --emqx-log-collection-dir is required with --emqx-log-collection-enabled")
		return ExitUsage
	}
	if pass != "" && passwordFile != "" {
		fmt.Fprintln(env.Stderr, "register: give either --password or --password-file, not both")
		return ExitUsage
	}
	switch {
	case pass != "":
	case passwordFile != "":
		b, err := os.ReadFile(passwordFile)
		if err != nil {
			fmt.Fprintf(env.Stderr, "register: --password-file: %v\n", err)
			return ExitError
		}
		pass = strings.TrimRight(string(b), "\r\n")
	default:
		p, err := readPassword(env.Stdin, env.Stderr, "EMQX password for "+req.Username+": ")
		if errors.Is(err, errNotTerminal) {
			fmt.Fprintln(env.Stderr, "register: no password: pass --password-file, or run in a terminal to be asked")
			return ExitUsage
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "register: %v\n", err)
			return ExitError
		}
		pass = p
	}
	req.Token, req.Password = secret.String(token), secret.String(pass)

	c, err := t.client()
	if err != nil {
		fmt.Fprintf(env.Stderr, "register failed: %v\n", err)
		return ExitError
	}
	ctx, cancel := context.WithTimeout(env.Context, controlTimeout)
	defer cancel()
	resp, err := c.Register(ctx, req)
	if err != nil {
		fmt.Fprintf(env.Stderr, "register failed: %s\n", describe(err))
		return ExitError
	}
	fmt.Fprintf(env.Stdout, "Registered with %s as cluster %s (project %s).\n", req.ECPURL, resp.ClusterID, resp.Project)
	return ExitOK
}

func unregisterCmd(args []string, env Env) int {
	fs := newCommand("unregister", "Unregister from ecp and forget the credential.", env)
	var t target
	force := fs.Flag("force", "Forget the credential even if ecp cannot be told.").Bool()
	t.flags(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	c, err := t.client()
	if err != nil {
		fmt.Fprintf(env.Stderr, "unregister failed: %v\n", err)
		return ExitError
	}
	ctx, cancel := context.WithTimeout(env.Context, controlTimeout)
	defer cancel()
	if err := c.Unregister(ctx, control.UnregisterRequest{Force: *force}); err != nil {
		fmt.Fprintf(env.Stderr, "unregister failed: %s\n", describe(err))
		return ExitError
	}
	fmt.Fprintln(env.Stdout, "Unregistered; the agent forgot its credential.")
	return ExitOK
}

func statusCmd(args []string, env Env) int {
	fs := newCommand("status", "Show registration, EMQX and report status.", env)
	var t target
	t.flags(fs)
	if code, done := parse(fs, args); done {
		return code
	}
	c, err := t.client()
	if err != nil {
		fmt.Fprintf(env.Stderr, "status: %v\n", err)
		return ExitError
	}
	ctx, cancel := context.WithTimeout(env.Context, 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		fmt.Fprintf(env.Stderr, "status: %s\n", describe(err))
		return ExitError
	}
	printStatus(env.Stdout, st)
	return ExitOK
}

func printStatus(w io.Writer, st control.Status) {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	problem := func(p *agentproto.Problem) string {
		if p == nil {
			return ""
		}
		return fmt.Sprintf(" (%s: %s)", p.Code, p.Message)
	}
	fmt.Fprintf(w, "agent version:        %s\n", st.Version)
	if !st.Registered {
		fmt.Fprintln(w, "registered:           no")
		if st.EndedReason != "" {
			fmt.Fprintf(w, "registration ended:   %s at %s\n", st.EndedReason, ts(st.EndedAt))
		}
		return
	}
	fmt.Fprintln(w, "registered:           yes")
	fmt.Fprintf(w, "cluster id:           %s\n", st.ClusterID)
	fmt.Fprintf(w, "project:              %s\n", st.Project)
	fmt.Fprintf(w, "ecp url:              %s\n", st.ECPURL)
	fmt.Fprintf(w, "emqx api url:         %s\n", st.EMQXAPIURL)
	reach := "no"
	if st.EMQXReachable {
		reach = "yes"
	}
	fmt.Fprintf(w, "emqx reachable:       %s%s\n", reach, problem(st.EMQXProblem))
	fmt.Fprintf(w, "last collection:      %s\n", ts(st.LastCollectAt))
	fmt.Fprintf(w, "last report:          %s\n", ts(st.LastReportAt))
	if st.LastReportError != "" {
		fmt.Fprintf(w, "last report error:    %s (%d buffered)\n", st.LastReportError, st.ReportsBuffered)
	}
	applied := "not applied"
	if st.AppliedMaxConnections != nil {
		applied = fmt.Sprint(*st.AppliedMaxConnections)
	}
	fmt.Fprintf(w, "max connections:      desired %d (revision %d), applied %s%s\n",
		st.DesiredMaxConnections, st.DesiredRevision, applied, problem(st.QuotaProblem))
}
