package destpolicy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/httpapi"
)

// fakeResolver answers from a map; a missing name is NXDOMAIN.
type fakeResolver map[string][]string

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range f[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

func testChecker(t *testing.T, r Rules) *Checker {
	t.Helper()
	c, err := New(r, Options{
		Resolver: fakeResolver{
			"hooks.example.test":    {"203.0.113.7"},
			"rebound.example.test":  {"203.0.113.8", "169.254.169.254"},
			"prometheus.svc":        {"10.1.2.3"},
			"localhost":             {"127.0.0.1", "::1"},
			"private.example.test":  {"10.9.9.9"},
			"v6only.example.test":   {"2001:db8::5"},
			"mapped.example.test":   {"::ffff:127.0.0.1"},
			"metadata.example.test": {"fd00:ec2::254"},
		},
		LocalAddrs: func() ([]netip.Addr, error) { return []netip.Addr{netip.MustParseAddr("192.0.2.10")}, nil },
		Dependencies: func() []Dependency {
			return []Dependency{
				{Name: "Prometheus", Endpoint: "http://localhost:9090"},
				{Name: "etcd", Endpoint: "127.0.0.1:2379"},
				{Name: "the log store", Endpoint: "http://prometheus.svc:9428/insert"},
				{Name: "ecp", Endpoint: "0.0.0.0:8080"},
				{Name: "unix", Endpoint: "unix:///run/x.sock"},
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules Rules
		url   string
		want  string // "" accepted; else a part of the reason
	}{
		{"public name", Rules{}, "https://hooks.example.test/x", ""},
		{"public address", Rules{}, "http://203.0.113.9:8000/x", ""},
		{"private range is not refused by default", Rules{}, "http://private.example.test/x", ""},
		{"v6", Rules{}, "http://v6only.example.test/x", ""},
		{"loopback", Rules{}, "http://127.0.0.1:9999/x", "loopback"},
		{"loopback elsewhere in 127/8", Rules{}, "http://127.3.4.5/x", "loopback"},
		{"localhost", Rules{}, "http://localhost:9999/x", "loopback"},
		{"localhost with a trailing dot", Rules{}, "http://localhost.:9999/x", "loopback"},
		{"v6 loopback", Rules{}, "http://[::1]:9999/x", "loopback"},
		{"IPv4-mapped v6 loopback", Rules{}, "http://[::ffff:127.0.0.1]:9999/x", "loopback"},
		{"IPv4-mapped through DNS", Rules{}, "http://mapped.example.test:9999/x", "loopback"},
		{"NAT64 metadata", Rules{}, "http://[64:ff9b::a9fe:a9fe]/x", "link-local"},
		{"IPv4-compatible loopback", Rules{}, "http://[::127.0.0.1]:9999/x", "loopback"},
		{"metadata", Rules{}, "http://169.254.169.254/latest/meta-data/", "link-local"},
		{"v6 link-local", Rules{}, "http://[fe80::1]/x", "link-local"},
		{"v6 zone", Rules{}, "http://[fe80::1%25eth0]/x", "zone"},
		{"unspecified", Rules{}, "http://0.0.0.0:9999/x", "unspecified"},
		{"this network", Rules{}, "http://0.1.2.3/x", "unspecified"},
		{"v6 unspecified", Rules{}, "http://[::]:9999/x", "unspecified"},
		{"multicast", Rules{}, "http://224.0.0.1/x", "multicast"},
		{"broadcast", Rules{}, "http://255.255.255.255/x", "broadcast"},
		{"decimal host", Rules{}, "http://2130706433/x", "dotted-decimal"},
		{"octal host", Rules{}, "http://0177.0.0.1/x", "dotted-decimal"},
		{"hex host", Rules{}, "http://0x7f.1/x", "dotted-decimal"},
		{"short host", Rules{}, "http://127.1/x", "dotted-decimal"},
		{"one bad address of many", Rules{}, "http://rebound.example.test/x", "rebound.example.test (169.254.169.254) is a link-local"},
		{"unresolvable", Rules{}, "http://nowhere.example.test/x", "does not resolve (no such host)"},
		{"not a name", Rules{}, "http://a%20b/x", "not"},
		{"scheme", Rules{}, "gopher://hooks.example.test/x", "scheme"},
		{"file", Rules{}, "file:///etc/passwd", "absolute URL"},
		{"bad port", Rules{}, "http://hooks.example.test:0/x", "port"},
		{"allowed loopback", Rules{AllowCIDRs: []string{"127.0.0.0/8"}}, "http://127.0.0.1:9999/x", ""},
		{"allowed loopback, mapped", Rules{AllowCIDRs: []string{"127.0.0.0/8"}}, "http://[::ffff:127.0.0.1]:9999/x", ""},
		{"allowed loopback still refuses Prometheus", Rules{AllowCIDRs: []string{"127.0.0.0/8"}}, "http://127.0.0.1:9090/-/quit", "Prometheus"},
		{"Prometheus by another loopback address", Rules{AllowCIDRs: []string{"127.0.0.0/8"}}, "http://127.0.0.2:9090/-/quit", "Prometheus"},
		{"Prometheus by v6 loopback", Rules{AllowCIDRs: []string{"::1/128"}}, "http://[::1]:9090/-/quit", "Prometheus"},
		{"etcd", Rules{AllowCIDRs: []string{"127.0.0.0/8"}}, "http://127.0.0.1:2379/v3/kv/range", "etcd"},
		{"ecp listening everywhere, by a local address", Rules{AllowCIDRs: []string{"0.0.0.0/0"}}, "http://192.0.2.10:8080/api/v1/x", "ecp"},
		{"log store by its address", Rules{}, "http://10.1.2.3:9428/x", "the log store"},
		{"log store by its name", Rules{}, "http://PROMETHEUS.svc:9428/x", "the log store"},
		{"other port of the log store's host", Rules{}, "http://10.1.2.3:9000/x", ""},
		{"deny wins over allow", Rules{AllowCIDRs: []string{"10.0.0.0/8"}, DenyCIDRs: []string{"10.9.0.0/16"}}, "http://private.example.test/x", "denies"},
		{"deny a public range", Rules{DenyCIDRs: []string{"203.0.113.0/24"}}, "https://hooks.example.test/x", "203.0.113.0/24"},
		{"allowing a NAT64 range keeps the embedded address judged", Rules{AllowCIDRs: []string{"64:ff9b::/96"}}, "http://[64:ff9b::a9fe:a9fe]/x", "link-local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := testChecker(t, tc.rules).CheckURL(t.Context(), tc.url)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("%s refused: %v", tc.url, err)
				}
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(re.Reason, tc.want) {
				t.Fatalf("%s: got %v, want a refusal saying %q", tc.url, err, tc.want)
			}
		})
	}
}

func TestRulesValidate(t *testing.T) {
	many := make([]string, MaxCIDRs+1)
	for i := range many {
		many[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16).String()
	}
	for _, tc := range []struct {
		name  string
		rules Rules
		field string
	}{
		{"ok", Rules{AllowCIDRs: []string{"127.0.0.0/8", "::1/128"}, DenyCIDRs: []string{"10.0.0.0/8"}}, ""},
		{"not a range", Rules{AllowCIDRs: []string{"127.0.0.1"}}, "allowCidrs[0]"},
		{"host bits", Rules{DenyCIDRs: []string{"10.0.0.0/8", "10.1.2.3/8"}}, "denyCidrs[1]"},
		{"repeat", Rules{DenyCIDRs: []string{"10.0.0.0/8", "10.0.0.0/8"}}, "denyCidrs[1]"},
		{"zone", Rules{AllowCIDRs: []string{"fe80::%eth0/64"}}, "allowCidrs[0]"},
		{"too many", Rules{AllowCIDRs: many}, "allowCidrs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rules.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var he *httpapi.Error
			if !errors.As(err, &he) || he.Status != 400 || he.Field != tc.field {
				t.Fatalf("got %v, want 400 naming %s", err, tc.field)
			}
		})
	}
}
