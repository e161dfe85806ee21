package testbed

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Balancer is a loopback TCP round-robin balancer in front of ecp replicas,
// as a Kubernetes Service with a readiness probe on /-/ready is: each new
// connection goes to the next replica whose /-/ready answered 200 at the
// last probe (to any replica when none did), and to the one after when the
// dial fails. Connections already open stay where they are, so a replica's
// death is seen by its agents as a broken connection.
type Balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	ready    map[string]bool
	next     atomic.Uint64
	wg       sync.WaitGroup
	cancel   context.CancelFunc
}

// ProbeInterval is how often the balancer reads each replica's /-/ready.
const ProbeInterval = 250 * time.Millisecond

// StartBalancer listens on a free loopback port and forwards to backends
// (host:port).
func StartBalancer(backends []string) (*Balancer, error) {
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("balancer listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Balancer{ln: ln, ready: map[string]bool{}, cancel: cancel}
	b.SetBackends(backends)
	b.wg.Add(2)
	go b.accept(ctx)
	go b.probe(ctx)
	return b, nil
}

// Addr is the balancer's host:port.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// SetBackends replaces the replicas new connections go to.
func (b *Balancer) SetBackends(backends []string) {
	b.mu.Lock()
	b.backends = append([]string(nil), backends...)
	b.mu.Unlock()
}

// Close stops accepting and probing; open connections are cut by their
// ends.
func (b *Balancer) Close() {
	b.cancel()
	_ = b.ln.Close()
	b.wg.Wait()
}

// candidates is the order in which a new connection tries the replicas:
// the ready ones round-robin, then the others.
func (b *Balancer) candidates() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.backends)
	start := int(b.next.Add(1) % uint64(max(n, 1)))
	var ready, rest []string
	for i := range n {
		be := b.backends[(start+i)%n]
		if b.ready[be] {
			ready = append(ready, be)
		} else {
			rest = append(rest, be)
		}
	}
	return append(ready, rest...)
}

func (b *Balancer) accept(ctx context.Context) {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.forward(ctx, c)
	}
}

func (b *Balancer) forward(ctx context.Context, c net.Conn) {
	var up net.Conn
	for _, be := range b.candidates() {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := new(net.Dialer).DialContext(dctx, "tcp", be)
		cancel()
		if err == nil {
			up = conn
			break
		}
	}
	if up == nil {
		_ = c.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close so the other side sees EOF; a crashed end shows as
		// a reset on the other.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	_ = up.Close()
	_ = c.Close()
}

func (b *Balancer) probe(ctx context.Context) {
	defer b.wg.Done()
	hc := &http.Client{Timeout: ProbeInterval}
	t := time.NewTicker(ProbeInterval)
	defer t.Stop()
	for {
		b.mu.Lock()
		backends := append([]string(nil), b.backends...)
		b.mu.Unlock()
		for _, be := range backends {
			ok := false
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+be+"/-/ready", nil)
			if err == nil {
				if resp, err := hc.Do(req); err == nil {
					_ = resp.Body.Close()
					ok = resp.StatusCode == http.StatusOK
				}
			}
			b.mu.Lock()
			b.ready[be] = ok
			b.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
