package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/bench/internal/agentsim"
	"github.com/ecpio/ecp/ecp/etcdserver"
	"github.com/ecpio/ecp/internal/testbed"
)

// deployment is the ecp under test: one `ecp serve` with its embedded etcd,
// or --ecp.replicas replicas on an external etcd cluster of --etcd.members
// real etcd processes, as docs/scaling.md tells operators to run several.
type deployment struct {
	// bases are the replicas' URLs; agent i reports to bases[i%len].
	bases []string
	// ecps are the replicas, members the external etcd's (none when
	// embedded); their cost is read from /proc.
	ecps, members []process
	etcd          *clientv3.Client
	cluster       *testbed.EtcdCluster
	// hc is the benchmark's own client for /metrics, its connections held
	// open (ping) so that a replica at its connection limit (see
	// --ecp.nofile) still answers the benchmark.
	hc        *http.Client
	stopAlive context.CancelFunc
	alive     sync.WaitGroup
}

// String names the replicas and their process ids, for the log.
func (d *deployment) String() string {
	parts := make([]string, 0, len(d.ecps)+len(d.members))
	for _, p := range append(append([]process(nil), d.ecps...), d.members...) {
		parts = append(parts, fmt.Sprintf("%s (pid %d)", p.name, p.pid))
	}
	return strings.Join(parts, ", ")
}

// process is one process whose cost the benchmark reads.
type process struct {
	name string
	pid  int
	proc *testbed.Proc
}

// deploy starts ecp as cfg asks, the first replica on firstAddr, forwarding
// remote write to rwURL, and waits until every replica is ready.
func deploy(ctx context.Context, cfg config, bin, rwURL, firstAddr string) (*deployment, error) {
	d := &deployment{}
	var etcdArgs []string
	if cfg.members > 0 {
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		binDir := filepath.Join(cfg.dir, "bin")
		if err := os.MkdirAll(binDir, 0o750); err != nil {
			return nil, fmt.Errorf("create etcd build dir: %w", err)
		}
		etcdBin, err := testbed.BuildEtcd(ctx, root, binDir)
		if err != nil {
			return nil, err
		}
		if d.cluster, err = testbed.StartEtcdCluster(ctx, etcdBin, filepath.Join(cfg.dir, "etcd"), cfg.members); err != nil {
			return nil, fmt.Errorf("start etcd: %w", err)
		}
		for _, m := range d.cluster.Members {
			d.members = append(d.members, process{name: m.Name, pid: m.PID()})
		}
		// Replicas share the key that seals secrets in etcd.
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		keyFile := filepath.Join(cfg.dir, "secrets.key")
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
			d.stop()
			return nil, fmt.Errorf("write secrets key: %w", err)
		}
		etcdArgs = []string{"--etcd.endpoints", d.cluster.Endpoints(), "--secrets.key-file", keyFile}
	}
	for i := range cfg.replicas {
		addr := firstAddr
		if i > 0 {
			var err error
			if addr, err = testbed.FreeAddr(); err != nil {
				d.stop()
				return nil, err
			}
		}
		name, base := fmt.Sprintf("ecp-%d", i+1), "http://"+addr
		args := append([]string{"serve",
			"--web.listen-address", addr, "--web.external-url", base, "--data.dir", filepath.Join(cfg.dir, name),
			"--agent.report-interval", cfg.interval.String(),
			// Room for every cluster's default quota of 10 connections.
			"--licence.total-connections", strconv.Itoa(max(10000, 10*cfg.agents)),
			"--remote-write.url", rwURL}, etcdArgs...)
		if cfg.profileDir != "" {
			args = append(args, "--web.enable-pprof")
		}
		path := bin
		if cfg.nofile > 0 {
			// Go raises its soft open-file limit to the hard one at start,
			// so the shell lowers both before it becomes ecp.
			args = append([]string{"-c", `ulimit -n ` + strconv.Itoa(cfg.nofile) + ` && exec "$0" "$@"`, bin}, args...)
			path = "/bin/sh"
		}
		p, err := testbed.Start(name, path, args, []string{"ECP_ADMIN_USERNAME=admin", "ECP_ADMIN_PASSWORD=" + adminPassword},
			filepath.Join(cfg.dir, name+".log"))
		if err != nil {
			d.stop()
			return nil, err
		}
		d.ecps = append(d.ecps, process{name: name, pid: p.PID(), proc: p})
		d.bases = append(d.bases, base)
		if err := p.WaitReady(ctx, base+"/-/ready", 2*time.Minute); err != nil {
			d.stop()
			return nil, fmt.Errorf("%w\n%s", err, p.Tail(4096))
		}
	}
	// HTTP/2 without TLS, as the agents speak: whatever the benchmark asks
	// at once shares one connection per replica, opened here before any
	// agent's, instead of dialing another that the limit may refuse.
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	d.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &protos}}
	if err := d.ping(ctx); err != nil {
		d.stop()
		return nil, err
	}
	actx, stopAlive := context.WithCancel(context.WithoutCancel(ctx))
	d.stopAlive = stopAlive
	d.alive.Go(func() {
		for agentsim.Sleep(actx, 30*time.Second) {
			_ = d.ping(actx)
		}
	})
	var err error
	if d.cluster != nil {
		d.etcd, err = etcdserver.NewClient(strings.Split(d.cluster.Endpoints(), ","), etcdserver.TLSFiles{})
	} else {
		d.etcd, err = etcdClient(d.ecps[0].proc.LogPath, filepath.Join(cfg.dir, d.ecps[0].name))
	}
	if err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

// ping asks every replica for /-/healthy; the benchmark does so when it
// starts and then well within ecp's idle timeout (two minutes), so that
// its connections stay open while agents fill the rest.
func (d *deployment) ping(ctx context.Context) error {
	for _, b := range d.bases {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b+"/-/healthy", nil)
		if err != nil {
			return fmt.Errorf("build health check: %w", err)
		}
		resp, err := d.hc.Do(req)
		if err != nil {
			return fmt.Errorf("health check of %s: %w", b, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	return nil
}

// scrape reads every replica's /metrics (see agentsim.Scrape), retrying
// for a while when one refuses.
func (d *deployment) scrape(ctx context.Context, sample func(line string, value float64)) error {
	for _, b := range d.bases {
		var err error
		for try := 0; try < 20; try++ {
			if err = agentsim.Scrape(ctx, d.hc, b, sample); err == nil || !agentsim.Sleep(ctx, 500*time.Millisecond) {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// stop ends the replicas, then etcd.
func (d *deployment) stop() {
	if d.stopAlive != nil {
		d.stopAlive()
		d.alive.Wait()
	}
	if d.etcd != nil {
		_ = d.etcd.Close()
	}
	for _, e := range d.ecps {
		_ = e.proc.Stop()
	}
	if d.cluster != nil {
		d.cluster.Stop()
	}
}

// down names the replicas that exited, with the end of their logs.
func (d *deployment) down() []string {
	var out []string
	for _, e := range d.ecps {
		if exited, err := e.proc.Exited(); exited {
			out = append(out, fmt.Sprintf("%s exited: %v\n%s", e.name, err, e.proc.Tail(4096)))
		}
	}
	return out
}

// procReading is one process's cost at one moment.
type procReading struct {
	agentsim.Proc
	// fds is the descriptors it holds open.
	fds int
}

// readProcs reads every replica's and member's cost.
func (d *deployment) readProcs() (map[string]procReading, error) {
	out := map[string]procReading{}
	for _, p := range append(append([]process(nil), d.ecps...), d.members...) {
		r, err := agentsim.ReadProc(p.pid)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid))
		if err != nil {
			return nil, fmt.Errorf("%s: read its descriptors: %w", p.name, err)
		}
		out[p.name] = procReading{Proc: r, fds: len(fds)}
	}
	return out, nil
}
