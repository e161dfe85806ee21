// Package destpolicy decides where ecp lets a tenant send notifications: the
// webhook URLs a project admin saves are handed to Alertmanager, which runs
// beside ecp's own dependencies (Prometheus with /-/quit, etcd, the log
// store, the cloud's metadata service at 169.254.169.254). A webhook must
// never become a way to reach those.
//
// A destination is refused when any address its host resolves to
//
//  1. is one of ecp's own dependencies on the same port (Prometheus,
//     Alertmanager, etcd, the log store, the remote-write backend, ecp
//     itself...), whatever the lists below say; addresses of this machine
//     (loopback, unspecified, its interface addresses) count as one;
//  2. lies in a denyCidrs range of the system admin's policy;
//  3. lies in no allowCidrs range and is loopback, link-local, unspecified
//     ("this network", 0.0.0.0/8), broadcast or multicast, the classes
//     refused by default.
//
// Deny wins over allow. IPv4-mapped, IPv4-compatible and NAT64 IPv6
// addresses are judged by the IPv4 address they carry, and hosts spelled as
// numbers other than dotted decimal (2130706433, 0177.1, 0x7f.1) are refused
// outright: some resolvers read them as addresses, others as names.
//
// Names are resolved when the settings are saved and again every time the
// leader renders Alertmanager's configuration, so a name rebound to a
// refused address after saving loses its receiver. Alertmanager resolves the
// name once more when it sends; the window between the two is what a
// network egress policy must close. The system admin's lists live in etcd
// under Key and are changed with GET/PUT /api/v1/system/notification-policy
// (Store).
package destpolicy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ecpio/ecp/ecp/httpapi"
)

// MaxCIDRs bounds each list of the policy.
const MaxCIDRs = 64

// ResolveTimeout bounds one name lookup.
const ResolveTimeout = 5 * time.Second

// Rules are the system admin's lists, the body of
// PUT /api/v1/system/notification-policy.
type Rules struct {
	// AllowCIDRs admits addresses the defaults refuse (loopback in a test
	// deployment, say). Never ecp's own dependencies.
	AllowCIDRs []string `json:"allowCidrs"`
	// DenyCIDRs refuses more (the operator's private networks, say);
	// it wins over AllowCIDRs.
	DenyCIDRs []string `json:"denyCidrs"`
}

// Validate checks rules as a system admin sent them; the error is an
// *httpapi.Error (400) naming the entry.
func (r Rules) Validate() error {
	_, _, err := r.parse()
	return err
}

func (r Rules) parse() (allow, deny []netip.Prefix, err error) {
	if allow, err = parseList("allowCidrs", r.AllowCIDRs); err != nil {
		return nil, nil, err
	}
	if deny, err = parseList("denyCidrs", r.DenyCIDRs); err != nil {
		return nil, nil, err
	}
	return allow, deny, nil
}

func parseList(name string, list []string) ([]netip.Prefix, error) {
	if len(list) > MaxCIDRs {
		return nil, httpapi.Invalid(name, "%s holds at most %d ranges, got %d", name, MaxCIDRs, len(list))
	}
	out := make([]netip.Prefix, 0, len(list))
	seen := map[netip.Prefix]bool{}
	for i, s := range list {
		field := fmt.Sprintf("%s[%d]", name, i)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, httpapi.Invalid(field, "%s must be a CIDR range such as 10.0.0.0/8 or 2001:db8::/32, got %.80q", field, s)
		}
		if p.Masked() != p {
			return nil, httpapi.Invalid(field, "%s has bits set past its prefix length: did you mean %s?", field, p.Masked())
		}
		if seen[p] {
			return nil, httpapi.Invalid(field, "%s repeats %s", field, p)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// Dependency is one endpoint of ecp's own stack that no notification may
// reach: a URL (http://127.0.0.1:9090) or host:port (127.0.0.1:2379).
type Dependency struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
}

// Resolver looks names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options are what a Checker needs beside the rules.
type Options struct {
	// Resolver resolves webhook and dependency hosts; net.DefaultResolver
	// when nil.
	Resolver Resolver
	// LocalAddrs lists this machine's addresses (a dependency listening
	// on every interface answers on each); the interfaces' addresses when
	// nil.
	LocalAddrs func() ([]netip.Addr, error)
	// Dependencies lists ecp's own dependencies as they are now (the log
	// store can change at run time).
	Dependencies func() []Dependency
}

// RefusedError says why a destination is refused; its message is meant for
// the user, after the field's name.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return e.Reason }

func refused(format string, args ...any) error {
	return &RefusedError{Reason: fmt.Sprintf(format, args...)}
}

// Checker judges destinations against one version of the rules. Create one
// per decision (a save, a render): it caches the dependencies' addresses.
type Checker struct {
	allow, deny []netip.Prefix
	resolver    Resolver
	localAddrs  func() ([]netip.Addr, error)
	deps        []*dependency

	once  sync.Once
	local []netip.Addr
}

type dependency struct {
	name, host string
	port       uint16
	once       sync.Once
	addrs      []netip.Addr
}

// New builds a Checker from valid rules.
func New(r Rules, o Options) (*Checker, error) {
	allow, deny, err := r.parse()
	if err != nil {
		return nil, fmt.Errorf("notification policy: %w", err)
	}
	c := &Checker{allow: allow, deny: deny, resolver: o.Resolver, localAddrs: o.LocalAddrs}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.localAddrs == nil {
		c.localAddrs = interfaceAddrs
	}
	if o.Dependencies != nil {
		for _, d := range o.Dependencies() {
			host, port, ok := splitEndpoint(d.Endpoint)
			if ok {
				c.deps = append(c.deps, &dependency{name: d.Name, host: host, port: port})
			}
		}
	}
	return c, nil
}

// CheckURL returns nil when raw may receive notifications, or a
// *RefusedError saying why not (or ctx's error).
func (c *Checker) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return refused("%.200q is not an absolute URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return refused("scheme %q is not allowed; use http or https", u.Scheme)
	}
	port, ok := portOf(u.Scheme, u.Port())
	if !ok {
		return refused("port %q is not a number from 1 to 65535", u.Port())
	}
	_, err = c.Resolve(ctx, u.Hostname(), port)
	return err
}

// Resolve resolves host, judges every address it has for port, and
// returns them when the policy allows them all: ecp dials exactly these
// when it sends a notification itself, so a name rebound after the check
// cannot take the connection elsewhere.
func (c *Checker) Resolve(ctx context.Context, host string, port uint16) ([]netip.Addr, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, refused("host %s names an IPv6 zone, which is not allowed", host)
		}
		addrs = []netip.Addr{a}
	} else {
		if numericHost(host) {
			return nil, refused("host %.100q is a number but not a dotted-decimal IPv4 address; write addresses as a.b.c.d", host)
		}
		if !validName(host) {
			return nil, refused("host %.100q is not a valid DNS name", host)
		}
		rctx, cancel := context.WithTimeout(ctx, ResolveTimeout)
		addrs, err = c.resolver.LookupNetIP(rctx, "ip", host)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil || len(addrs) == 0 {
			return nil, refused("host %s does not resolve%s", host, lookupReason(err))
		}
	}
	for _, a := range addrs {
		if err := c.checkAddr(ctx, host, a.Unmap().WithZone(""), port); err != nil {
			return nil, err
		}
	}
	return addrs, nil
}

func lookupReason(err error) string {
	var dnsErr *net.DNSError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return " (no such host)"
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout:
		return " (lookup timed out)"
	}
	return " (lookup failed)"
}

func (c *Checker) checkAddr(ctx context.Context, host string, a netip.Addr, port uint16) error {
	what := a.String()
	if what != host {
		what = fmt.Sprintf("%s (%s)", host, a)
	}
	judged := []netip.Addr{a}
	if v4, ok := embeddedV4(a); ok {
		judged = append(judged, v4)
	}
	for _, x := range judged {
		for _, d := range c.deps {
			if d.port == port && (strings.EqualFold(d.host, host) || c.sameService(ctx, d, x)) {
				return refused("%s port %d is %s, one of ecp's own dependencies, which notifications may never reach", what, port, d.name)
			}
		}
	}
	for _, x := range judged {
		for _, p := range c.deny {
			if p.Contains(x) {
				return refused("%s is in %s, which the notification policy denies", what, p)
			}
		}
	}
	for _, x := range judged {
		if class := refusedClass(x); class != "" && !c.allowed(x) {
			return refused("%s is %s, which ecp refuses by default; a system admin may allow it with allowCidrs in PUT /api/v1/system/notification-policy", what, class)
		}
	}
	return nil
}

func (c *Checker) allowed(a netip.Addr) bool {
	for _, p := range c.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var (
	thisNetwork = netip.MustParsePrefix("0.0.0.0/8")
	broadcast   = netip.MustParseAddr("255.255.255.255")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
	v4compat    = netip.MustParsePrefix("::/96")
)

// refusedClass names the default-refused class of a, or "".
func refusedClass(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified(), thisNetwork.Contains(a):
		return "an unspecified (this-host) address"
	case a.IsLinkLocalUnicast():
		return "a link-local address (where cloud metadata services answer)"
	case a.IsMulticast(), a == broadcast:
		return "a multicast or broadcast address"
	}
	return ""
}

// embeddedV4 returns the IPv4 address a NAT64 (64:ff9b::/96) or
// IPv4-compatible (::a.b.c.d) IPv6 address carries.
func embeddedV4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() || a.IsLoopback() || a.IsUnspecified() || (!nat64.Contains(a) && !v4compat.Contains(a)) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// sameService reports whether a reaches dependency d: the same address, or
// both on this machine.
func (c *Checker) sameService(ctx context.Context, d *dependency, a netip.Addr) bool {
	d.once.Do(func() {
		if x, err := netip.ParseAddr(d.host); err == nil {
			d.addrs = []netip.Addr{x.Unmap().WithZone("")}
			return
		}
		rctx, cancel := context.WithTimeout(ctx, ResolveTimeout)
		defer cancel()
		addrs, _ := c.resolver.LookupNetIP(rctx, "ip", d.host)
		for _, x := range addrs {
			d.addrs = append(d.addrs, x.Unmap().WithZone(""))
		}
	})
	for _, x := range d.addrs {
		if x == a || (c.thisMachine(x) && c.thisMachine(a)) {
			return true
		}
	}
	return false
}

// thisMachine reports whether a is an address of the machine ecp runs on:
// a service listening on every interface answers on all of them.
func (c *Checker) thisMachine(a netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() || thisNetwork.Contains(a) {
		return true
	}
	c.once.Do(func() { c.local, _ = c.localAddrs() })
	for _, x := range c.local {
		if x == a {
			return true
		}
	}
	return false
}

func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing interface addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, x.Unmap())
			}
		}
	}
	return out, nil
}

// splitEndpoint reads a dependency's host and port from a URL or
// host:port; ok is false when it names neither (a unix socket, nothing).
func splitEndpoint(s string) (host string, port uint16, ok bool) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", 0, false
		}
		p, ok := portOf(u.Scheme, u.Port())
		return strings.TrimSuffix(u.Hostname(), "."), p, ok
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", 0, false
	}
	return strings.TrimSuffix(h, "."), uint16(n), true
}

func portOf(scheme, p string) (uint16, bool) {
	if p == "" {
		switch scheme {
		case "http":
			return 80, true
		case "https":
			return 443, true
		}
		return 0, false
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}

// numericHost reports whether host would be read as an IPv4 address by
// the WHATWG URL rules or inet_aton: its last label is a decimal, octal or
// hex number.
func numericHost(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	if l := strings.ToLower(last); strings.HasPrefix(l, "0x") {
		return strings.Trim(l[2:], "0123456789abcdef") == ""
	}
	return strings.Trim(last, "0123456789") == ""
}

const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// validName accepts DNS names: letters, digits, '-', '_' and dots, labels
// of 1 to 63 bytes, 253 in all.
func validName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for _, l := range strings.Split(host, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		if strings.Trim(l, nameChars) != "" {
			return false
		}
	}
	return true
}
