package testbed

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// portLease is how long a port FreeAddr handed out stays reserved for its
// caller: time enough to start the process that binds it.
const portLease = 10 * time.Minute

// FreeAddr returns a loopback address whose port is free now and that no
// other FreeAddr on this machine hands out for portLease.
//
// Letting the kernel pick (listen on port 0, close, pass the port on) made
// parallel test runs collide: that port comes from the ephemeral range,
// from which every outgoing connection and every in-process test server
// also take theirs, and another test process could be handed it between
// the pick and the bind of the binary it was meant for (a process then
// answered for ecp that was not ecp). So FreeAddr picks outside the
// ephemeral range and leases the port with a file in the temp directory,
// which every test process of this user honours.
func FreeAddr() (string, error) {
	lo, hi := leasablePorts()
	dir := filepath.Join(os.TempDir(), "ecp-testbed-ports-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	for range 1000 {
		port := lo + rand.IntN(hi-lo+1) //nolint:gosec // spreading test ports, not a secret
		if !lease(filepath.Join(dir, strconv.Itoa(port))) {
			continue
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if CheckFree(addr) == nil {
			return addr, nil
		}
	}
	return "", fmt.Errorf("find a free port: none free and unleased in %d-%d", lo, hi)
}

// lease takes the port file at path, or one whose lease has run out.
func lease(path string) bool {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		st, statErr := os.Stat(path)
		if statErr != nil || time.Since(st.ModTime()) < portLease {
			return false
		}
		_ = os.Remove(path)
		f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	}
	if err != nil {
		return false
	}
	return f.Close() == nil
}

// leasablePorts is the port range FreeAddr picks from: below the kernel's
// ephemeral range (Linux's default is 32768-60999), or above it when it
// leaves too little room below.
func leasablePorts() (lo, hi int) {
	ephLo, ephHi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			l, errL := strconv.Atoi(f[0])
			h, errH := strconv.Atoi(f[1])
			if errL == nil && errH == nil && l <= h {
				ephLo, ephHi = l, h
			}
		}
	}
	const floor, room = 10000, 4096
	if ephLo-floor >= room {
		return floor, ephLo - 1
	}
	if 65535-ephHi >= room {
		return ephHi + 1, 65535
	}
	return floor, 65535 // the ephemeral range covers nearly everything: the lease alone must do
}
