// Package testbed runs the built binaries (ecp, emqx-sim, agent-exporter) as
// real processes and talks to them over HTTP, for the end-to-end tests and the
// local demo. It imports none of the binaries' packages: what it exercises is
// exactly what an operator runs.
package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// StopGrace is how long Stop waits after SIGTERM before it kills.
const StopGrace = 10 * time.Second

// Proc is one running binary whose output goes to a log file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
}

// Start runs bin with args, its output appended to logPath. The process is
// put in its own process group so Stop (and Ctrl-C on the demo) reaches it
// and everything it started.
func Start(name, bin string, args []string, env []string, logPath string) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return nil, fmt.Errorf("create log dir for %s: %w", name, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log of %s: %w", name, err)
	}
	command := func() *exec.Cmd {
		// Not CommandContext: its cancel would SIGKILL the leader alone,
		// while Stop terminates the whole process group gracefully.
		cmd := exec.Command(bin, args...) //nolint:noctx // see above
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.Env = append(os.Environ(), env...)
		// Own process group, so Stop reaches everything the process
		// started; and a SIGTERM should the starter die without stopping
		// it (a test binary killed at its timeout), so nothing outlives a
		// run.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		return cmd
	}
	cmd := command()
	err = cmd.Start()
	// A binary this process has just written (an agent downloaded from
	// ecp) is busy for a moment when a test running in parallel forked
	// while it was open for writing: the child holds the descriptor until
	// it execs (golang.org/issue/22315).
	for i := 0; errors.Is(err, syscall.ETXTBSY) && i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		cmd = command()
		err = cmd.Start()
	}
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and its error if so.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Stop sends SIGTERM to the process group, waits up to StopGrace, then
// kills it. Safe to call more than once.
func (p *Proc) Stop() error {
	if exited, _ := p.Exited(); exited {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(StopGrace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed", p.Name, StopGrace)
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the exit.
func (p *Proc) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n bytes of the process log, for failure messages.
func (p *Proc) Tail(n int64) string {
	f, err := os.Open(p.LogPath)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// WaitReady polls url until it answers 200, the process exits or timeout
// passes; the error carries the end of the process log.
func (p *Proc) WaitReady(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%w); its log ends with:\n%s", p.Name, p.err, p.Tail(4096))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s within %s; its log ends with:\n%s", p.Name, url, timeout, p.Tail(4096))
		case <-tick.C:
		}
	}
}

// ErrAddrInUse is returned by CheckFree for a taken address.
var ErrAddrInUse = errors.New("address already in use")

// CheckFree fails with ErrAddrInUse when addr cannot be listened on.
func CheckFree(addr string) error {
	l, err := new(net.ListenConfig).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, ErrAddrInUse)
	}
	return l.Close()
}
