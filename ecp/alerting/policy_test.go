package alerting

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/ecpio/ecp/ecp/destpolicy"
)

// testPolicy is the tests' notification policy: fixed rules, a resolver the
// test can repoint (DNS rebinding) and dependencies it can name.
type testPolicy struct {
	rules destpolicy.Rules
	mu    sync.Mutex
	names map[string]string
	deps  []destpolicy.Dependency
}

func newTestPolicy(r destpolicy.Rules) *testPolicy {
	return &testPolicy{rules: r, names: map[string]string{"hooks.example.test": "203.0.113.7"}}
}

// point makes name resolve to addr from now on.
func (p *testPolicy) point(name, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names[name] = addr
}

func (p *testPolicy) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.names[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (p *testPolicy) Load(context.Context) (*destpolicy.Checker, error) {
	p.mu.Lock()
	deps := p.deps
	p.mu.Unlock()
	return destpolicy.New(p.rules, destpolicy.Options{Resolver: p, Dependencies: func() []destpolicy.Dependency { return deps }})
}

// TestSec02RenderDropsRefusedWebhooks replays issue #11 finding 2 at render
// time: settings saved while their hosts looked harmless (or before the
// policy existed) name Prometheus' /-/quit and a name rebound to the cloud
// metadata address. The leader's next Apply leaves both webhooks out of
// Alertmanager's configuration, says which and why, and keeps the
// project's other channel; no webhook may follow redirects.
func TestSec02RenderDropsRefusedWebhooks(t *testing.T) {
	e := newApplyEnv(t)
	policy := newTestPolicy(destpolicy.Rules{AllowCIDRs: []string{"127.0.0.0/8"}})
	policy.deps = []destpolicy.Dependency{{Name: "Prometheus", Endpoint: e.prom.URL}}
	e.opts.Destinations = policy
	e.opts.Registerer = nil
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	quit := e.prom.URL + "/-/quit"
	projects := map[string]Settings{"alpha": {Enabled: true, TriggerCount: 1, RecoveryCount: 1, Severity: SeverityCritical,
		Webhooks: []Webhook{{URL: "https://hooks.example.test/alpha"}, {URL: quit}, {URL: "http://rebind.example.test/hook"}}}}
	policy.point("rebind.example.test", "203.0.113.9")
	err = a.Apply(t.Context(), projects)
	var dropped *DroppedError
	if !errors.As(err, &dropped) || dropped.Field != "webhooks[1].url" || !strings.Contains(dropped.Error(), "Prometheus") {
		t.Fatalf("apply: got %v, want webhooks[1].url dropped as Prometheus", err)
	}

	policy.point("rebind.example.test", "169.254.169.254")
	err = a.Apply(t.Context(), projects)
	var fields []string
	for _, e := range flattenErrs(err) {
		if !errors.As(e, &dropped) {
			t.Fatalf("apply: unexpected error %v", e)
		}
		fields = append(fields, dropped.Field+": "+dropped.Err.Error())
	}
	if len(fields) != 2 || !strings.Contains(fields[1], "webhooks[2].url: rebind.example.test (169.254.169.254) is a link-local address") {
		t.Fatalf("dropped %q, want webhooks[1] and webhooks[2] (link-local)", fields)
	}
	cfg, err := os.ReadFile(e.amFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{quit, "rebind.example.test"} {
		if strings.Contains(string(cfg), gone) {
			t.Fatalf("alertmanager config still sends to %s:\n%s", gone, cfg)
		}
	}
	if !strings.Contains(string(cfg), "url: https://hooks.example.test/alpha\n        send_resolved: true\n        http_config:\n          follow_redirects: false") {
		t.Fatalf("the allowed webhook is missing or follows redirects:\n%s", cfg)
	}
}

func flattenErrs(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flattenErrs(e)...)
		}
		return out
	}
	if err == nil {
		return nil
	}
	return []error{err}
}
