package testbed

import (
	"net"
	"sync/atomic"
)

// CountingListener counts the connections it accepts into N: the tests of
// one connection per agent count there, where a connection is new, rather
// than in http.Server.ConnState, which also sees a hijacked connection
// handed back to the server.
type CountingListener struct {
	net.Listener
	N *atomic.Int64
}

// Accept accepts from the wrapped listener and counts what it accepted.
func (l *CountingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.N.Add(1)
	}
	return c, err
}
