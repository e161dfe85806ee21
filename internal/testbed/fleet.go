package testbed

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Binaries says where the three built binaries and the agent downloads are.
type Binaries struct {
	// Dir holds ecp, emqx-sim and agent-exporter.
	Dir string
	// DistDir holds agent-exporter-linux-<arch>, served by ecp for download.
	DistDir string
}

// Path is the path of the named binary.
func (b Binaries) Path(name string) string { return filepath.Join(b.Dir, name) }

// Build compiles the three binaries into dir and the agent for this machine's
// arch into distDir, from the module at moduleDir.
func Build(ctx context.Context, moduleDir, dir, distDir string) (Binaries, error) {
	build := func(env []string, args ...string) error {
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-trimpath"}, args...)...)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), append([]string{"CGO_ENABLED=0"}, env...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %v: %w\n%s", args, err, out)
		}
		return nil
	}
	if err := build(nil, "-o", dir+string(filepath.Separator), "./ecp", "./emqx-sim", "./agent-exporter"); err != nil {
		return Binaries{}, err
	}
	if err := os.MkdirAll(distDir, 0o750); err != nil {
		return Binaries{}, fmt.Errorf("create dist dir: %w", err)
	}
	agent := filepath.Join(distDir, "agent-exporter-linux-"+runtime.GOARCH)
	if runtime.GOOS == "linux" {
		// The agent built above is that binary: a link saves a second
		// link step (seconds on a loaded machine) in every package that
		// builds.
		if err := os.Link(filepath.Join(dir, "agent-exporter"), agent); err != nil {
			return Binaries{}, fmt.Errorf("link the agent into the dist dir: %w", err)
		}
	} else if err := build([]string{"GOOS=linux"}, "-o", agent, "./agent-exporter"); err != nil {
		return Binaries{}, err
	}
	return Binaries{Dir: dir, DistDir: distDir}, nil
}

// AgentSetup is where one agent lives on the "broker host".
type AgentSetup struct {
	// Dir is the agent's working directory: the binary is downloaded
	// there, as the registration guide does it.
	Dir string
	// ListenAddress is the agent's /metrics and control API address.
	ListenAddress string
	// EMQXUsername and EMQXPassword log the agent in to EMQX.
	EMQXUsername, EMQXPassword string
	// EMQXURL is what the operator types where the guide has the dashboard
	// and API URL placeholders (the entry has no service URL to fill them).
	EMQXURL string
	// CollectInterval overrides the agent's collection interval when set.
	CollectInterval time.Duration
	// ExtraRegisterArgs are appended to the register command.
	ExtraRegisterArgs []string
}

// StateDir is the agent's state directory.
func (s AgentSetup) StateDir() string { return filepath.Join(s.Dir, "state") }

// RunAgent follows the registration guide ecp rendered for this machine's
// arch: it downloads the agent from ecp, makes it executable, runs it, and
// runs the register command with the EMQX user filled in. The password is
// handed over in a 0600 file, as an operator who does not want it in the
// shell history would. It returns the running agent.
func RunAgent(ctx context.Context, reg Registration, s AgentSetup) (*Proc, error) {
	var download, register string
	for _, c := range reg.Commands {
		if c.Arch == runtime.GOARCH {
			download, register = c.Download, c.Register
		}
	}
	if register == "" {
		return nil, fmt.Errorf("ecp rendered no registration commands for %s", runtime.GOARCH)
	}
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("agent dir: %w", err)
	}
	s.Dir = dir
	if err := os.MkdirAll(s.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create agent dir: %w", err)
	}
	bin := filepath.Join(s.Dir, "agent-exporter")
	if err := fetch(ctx, downloadURL(download), bin); err != nil {
		return nil, err
	}
	args := []string{"run", "--state.dir", s.StateDir(), "--web.listen-address", s.ListenAddress,
		"--log.file", filepath.Join(s.Dir, "agent.log")}
	if s.CollectInterval > 0 {
		args = append(args, "--collect.interval", s.CollectInterval.String())
	}
	p, err := Start("agent-exporter", bin, args, nil, filepath.Join(s.Dir, "agent.out"))
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx, "http://"+s.ListenAddress+"/-/healthy", 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, err
	}
	if err := Registered(ctx, register, s); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// Registered runs the register command ecp rendered, in the agent's
// directory, with the EMQX username filled in and the password in a file.
func Registered(ctx context.Context, register string, s AgentSetup) error {
	pwFile := filepath.Join(s.Dir, "emqx-password")
	if err := os.WriteFile(pwFile, []byte(s.EMQXPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("write password file: %w", err)
	}
	register = strings.ReplaceAll(register, "<EMQX_USERNAME>", s.EMQXUsername)
	if s.EMQXURL != "" {
		register = strings.ReplaceAll(register, "<EMQX_DASHBOARD_URL>", s.EMQXURL)
		register = strings.ReplaceAll(register, "<EMQX_API_URL>", s.EMQXURL)
	}
	cmdline := register +
		" --password-file " + pwFile + " --state.dir " + s.StateDir() + " " + strings.Join(s.ExtraRegisterArgs, " ")
	cmd := exec.CommandContext(ctx, "sh", "-c", cmdline)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("register command failed: %w\n%s", err, out)
	}
	return nil
}

// downloadURL takes the URL out of the rendered `curl … -o file URL`.
func downloadURL(download string) string {
	fields := strings.Fields(download)
	if len(fields) == 0 {
		return ""
	}
	return strings.Trim(fields[len(fields)-1], "'")
}

// fetch downloads url to path, mode 0755: the guide's download and chmod
// steps, done without depending on curl being installed.
func fetch(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("download agent from %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download agent: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("download agent from %s: %s: %s", url, resp.Status, msg)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("save agent: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("save agent: %w", err)
	}
	return f.Close()
}
