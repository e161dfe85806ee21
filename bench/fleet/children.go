package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// childEnv marks a process as one of --agents.processes load generators;
// its value is the child's number.
const childEnv = "ECP_BENCH_FLEET_CHILD"

// Between parent and child: the child reads a job, then one request per
// line on stdin and writes one answer per line on stdout; it stops when
// stdin closes. Its stderr is the parent's.

// job is a child's share of the fleet.
type job struct {
	Config loadConfig `json:"config"`
	// Bases are the replicas' URLs (agent i reports to Bases[i%len]).
	Bases  []string    `json:"bases"`
	Agents []agentSpec `json:"agents"`
}

// agentSpec is an agent as provisioned: its global index, its cluster and
// its registration token.
type agentSpec struct {
	Index   int    `json:"i"`
	Cluster string `json:"cluster"`
	Token   string `json:"token"`
}

// loadConfig is what of the parent's config drives agents.
type loadConfig struct {
	Agents   int           `json:"agents"`
	Interval time.Duration `json:"interval"`
	PollWait time.Duration `json:"poll_wait"`
	Workers  int           `json:"workers"`
	Abnormal float64       `json:"abnormal"`
	Upgrades float64       `json:"upgrades"`
	Series   int           `json:"series"`
	LogLines int           `json:"log_lines"`
	Conns    string        `json:"conns"`
}

func (c config) load() loadConfig {
	return loadConfig{Agents: c.agents, Interval: c.interval, PollWait: c.pollWait, Workers: c.workers,
		Abnormal: c.abnormal, Upgrades: c.upgrades, Series: c.series, LogLines: c.logLines, Conns: c.conns}
}

func (l loadConfig) config() config {
	return config{agents: l.Agents, interval: l.Interval, pollWait: l.PollWait, workers: l.Workers,
		abnormal: l.Abnormal, upgrades: l.Upgrades, series: l.Series, logLines: l.LogLines, conns: l.Conns}
}

// childMain is main in a child: the parent's test binary re-executes
// itself as well as the benchmark's.
func childMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runChild(ctx, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench load process "+os.Getenv(childEnv)+":", err)
		return 1
	}
	return 0
}

// runChild is a load generator's whole life.
func runChild(ctx context.Context, in io.Reader, out io.Writer) error {
	dec, enc := json.NewDecoder(bufio.NewReader(in)), json.NewEncoder(out)
	var j job
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	cfg := j.Config.config()
	agents := make([]*agent, len(j.Agents))
	for k, s := range j.Agents {
		agents[k] = newAgent(cfg, s.Index, s.Cluster, s.Token, j.Bases)
	}
	g, err := startGen(ctx, cfg, agents)
	if err != nil {
		_ = enc.Encode(answer{Error: err.Error()})
		return err
	}
	defer g.close()
	if err := enc.Encode(answer{RegisterRetries: g.retries.Load()}); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read request: %w", err)
		}
		a, err := g.do(ctx, req)
		if err != nil {
			a.Error = err.Error()
		}
		if err := enc.Encode(a); err != nil {
			return fmt.Errorf("answer: %w", err)
		}
	}
}

// children is the load spread over child processes, each this binary
// re-executed with the same flags.
type children struct {
	procs []*child
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	dec   *json.Decoder
}

// startChildren runs n children, hands each every n-th agent and waits
// until all registered theirs; it returns the registrations retried after
// a 429.
func startChildren(ctx context.Context, cfg config, bases []string, agents []*agent, log io.Writer) (*children, int64, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, fmt.Errorf("find the benchmark binary: %w", err)
	}
	cs := &children{}
	n := cfg.processes
	for k := range n {
		cmd := exec.CommandContext(ctx, self) //nolint:gosec // this binary, re-executed
		cmd.Env = append(os.Environ(), childEnv+"="+strconv.Itoa(k))
		cmd.Stderr = log
		stdin, err := cmd.StdinPipe()
		if err != nil {
			cs.close()
			return nil, 0, fmt.Errorf("load process %d: %w", k, err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			cs.close()
			return nil, 0, fmt.Errorf("load process %d: %w", k, err)
		}
		if err := cmd.Start(); err != nil {
			cs.close()
			return nil, 0, fmt.Errorf("start load process %d: %w", k, err)
		}
		c := &child{cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin), dec: json.NewDecoder(bufio.NewReader(stdout))}
		cs.procs = append(cs.procs, c)
		j := job{Config: cfg.load(), Bases: bases}
		for i := k; i < len(agents); i += n {
			j.Agents = append(j.Agents, agentSpec{Index: agents[i].index, Cluster: agents[i].cluster, Token: agents[i].cred})
		}
		if err := c.enc.Encode(j); err != nil {
			cs.close()
			return nil, 0, fmt.Errorf("hand load process %d its agents: %w", k, err)
		}
	}
	// Every child registers its share at once.
	a, err := cs.collect()
	if err != nil {
		cs.close()
		return nil, 0, err
	}
	return cs, a.RegisterRetries, nil
}

// collect reads one answer from every child and merges them.
func (cs *children) collect() (answer, error) {
	var merged answer
	for k, c := range cs.procs {
		var a answer
		if err := c.dec.Decode(&a); err != nil {
			return merged, fmt.Errorf("load process %d: %w", k, err)
		}
		if a.Error != "" {
			return merged, fmt.Errorf("load process %d: %s", k, a.Error)
		}
		merged.merge(a)
	}
	return merged, nil
}

func (cs *children) do(_ context.Context, req request) (answer, error) {
	for k, c := range cs.procs {
		if err := c.enc.Encode(req); err != nil {
			return answer{}, fmt.Errorf("load process %d: %w", k, err)
		}
	}
	return cs.collect()
}

// close ends every child (closing stdin stops it) and waits for it.
func (cs *children) close() {
	var wg sync.WaitGroup
	for _, c := range cs.procs {
		_ = c.stdin.Close()
		wg.Go(func() { _ = c.cmd.Wait() })
	}
	wg.Wait()
}

// syncWriter serializes writes to w: the children's stderr is copied into
// the benchmark's log while the benchmark writes to it too.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
