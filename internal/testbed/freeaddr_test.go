package testbed

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddrLeasesPortsOutsideTheEphemeralRange: the ports FreeAddr hands
// out are ones no outgoing connection or port-0 listener can be given, and
// none is handed out twice while leased, even after its listener closed.
func TestFreeAddrLeasesPortsOutsideTheEphemeralRange(t *testing.T) {
	lo, hi := leasablePorts()
	seen := map[string]bool{}
	for range 200 {
		addr, err := FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < lo || port > hi {
			t.Fatalf("port %d outside %d-%d", port, lo, hi)
		}
		l, err := net.Listen("tcp", addr) //nolint:noctx // a test of the address alone
		if err != nil {
			t.Fatalf("%s is not free: %v", addr, err)
		}
		_ = l.Close()
	}
	// A port the kernel picks itself lies in the ephemeral range, which
	// FreeAddr stays out of.
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // as above
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if port := l.Addr().(*net.TCPAddr).Port; port >= lo && port <= hi {
		t.Fatalf("the kernel's own pick %d lies in FreeAddr's range %d-%d", port, lo, hi)
	}
}
