package testbed

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BuildEtcd compiles etcd's own server (go.etcd.io/etcd/server/v3, whose
// main is etcdmain) into dir, at the version the module at moduleDir
// requires. It builds in a scratch copy of the module's go.mod and go.sum,
// so the etcd command's own dependencies (cobra, the gRPC proxy) are
// resolved there and never enter ecp's go.mod.
func BuildEtcd(ctx context.Context, moduleDir, dir string) (string, error) {
	scratch, err := os.MkdirTemp("", "ecp-etcd-build-")
	if err != nil {
		return "", fmt.Errorf("create etcd build dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(scratch) }()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(moduleDir, name))
		if err != nil {
			return "", fmt.Errorf("read %s: %w", name, err)
		}
		if name == "go.mod" {
			b = []byte(strings.Replace(string(b), "module github.com/ecpio/ecp", "module etcdbuild", 1))
		}
		if err := os.WriteFile(filepath.Join(scratch, name), b, 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
	}
	bin, err := filepath.Abs(filepath.Join(dir, "etcd"))
	if err != nil {
		return "", fmt.Errorf("etcd binary path: %w", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "go.etcd.io/etcd/server/v3")
	cmd.Dir = scratch
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build etcd: %w\n%s", err, out)
	}
	return bin, nil
}

// EtcdMember is one member of an EtcdCluster.
type EtcdMember struct {
	Name      string
	ClientURL string
	PeerURL   string
	proc      *Proc
}

// EtcdCluster is a cluster of real etcd processes on loopback ports, as
// docs/scaling.md tells operators to run for several ecp replicas.
type EtcdCluster struct {
	bin, dir string
	initial  string
	Members  []*EtcdMember
}

// StartEtcdCluster runs n etcd members from bin with their data and logs
// under dir and waits until the cluster has a leader.
func StartEtcdCluster(ctx context.Context, bin, dir string, n int) (*EtcdCluster, error) {
	c := &EtcdCluster{bin: bin, dir: dir}
	var peers []string
	for i := range n {
		client, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		peer, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		m := &EtcdMember{Name: fmt.Sprintf("etcd-%d", i+1), ClientURL: "http://" + client, PeerURL: "http://" + peer}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.PeerURL)
	}
	c.initial = strings.Join(peers, ",")
	for _, m := range c.Members {
		if err := c.Start(m); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitLeader(ctx, time.Minute); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Endpoints is the comma-separated client URLs, for --etcd.endpoints.
func (c *EtcdCluster) Endpoints() string {
	urls := make([]string, len(c.Members))
	for i, m := range c.Members {
		urls[i] = m.ClientURL
	}
	return strings.Join(urls, ",")
}

// Start (re)starts m on its data directory; it does not wait for it to
// rejoin (WaitLeader does).
func (c *EtcdCluster) Start(m *EtcdMember) error {
	data := filepath.Join(c.dir, m.Name)
	p, err := Start(m.Name, c.bin, []string{"--name", m.Name, "--data-dir", data,
		"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster", c.initial, "--initial-cluster-state", "new", "--initial-cluster-token", "ecp-faults",
		"--auto-compaction-mode", "periodic", "--auto-compaction-retention", "1h", "--log-level", "warn"},
		nil, filepath.Join(c.dir, m.Name+".log"))
	if err != nil {
		return err
	}
	m.proc = p
	return nil
}

// Kill ends m with SIGKILL, as a crashed host would.
func (c *EtcdCluster) Kill(m *EtcdMember) { m.proc.Kill() }

// Stop kills every running member.
func (c *EtcdCluster) Stop() {
	for _, m := range c.Members {
		if m.proc != nil {
			m.proc.Kill()
		}
	}
}

// PID is m's process id, 0 before it started (bench/fleet reads its cost
// from /proc).
func (m *EtcdMember) PID() int {
	if m.proc == nil {
		return 0
	}
	return m.proc.PID()
}

// Running reports whether m's process is up.
func (m *EtcdMember) Running() bool {
	if m.proc == nil {
		return false
	}
	exited, _ := m.proc.Exited()
	return !exited
}

// IsLeader reports whether m says it leads, from its etcd_server_is_leader
// metric.
func (m *EtcdMember) IsLeader(ctx context.Context) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/metrics", nil)
	if err != nil {
		return false, fmt.Errorf("ask %s for its metrics: %w", m.Name, err)
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return false, fmt.Errorf("ask %s for its metrics: %w", m.Name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "etcd_server_is_leader ") {
			return strings.TrimSpace(strings.TrimPrefix(sc.Text(), "etcd_server_is_leader ")) == "1", nil
		}
	}
	return false, fmt.Errorf("%s exports no etcd_server_is_leader: %w", m.Name, sc.Err())
}

// Leader returns the running member that leads, or nil.
func (c *EtcdCluster) Leader(ctx context.Context) *EtcdMember {
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		if lead, err := m.IsLeader(ctx); err == nil && lead {
			return m
		}
	}
	return nil
}

// Follower returns a running member that does not lead, or nil.
func (c *EtcdCluster) Follower(ctx context.Context) *EtcdMember {
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		if lead, err := m.IsLeader(ctx); err == nil && !lead {
			return m
		}
	}
	return nil
}

// WaitLeader waits until a running member leads and every running member
// answers its /health with true (so it has caught up with the leader).
func (c *EtcdCluster) WaitLeader(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c.Leader(ctx) != nil && c.healthy(ctx) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd cluster has no healthy leader within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *EtcdCluster) healthy(ctx context.Context) bool {
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
		if err != nil {
			return false
		}
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
	}
	return true
}
