package app

import (
	"fmt"
	"math"

	"github.com/ecpio/ecp/ecp/connlimit"
)

// limitConnections wraps a.ln so that ecp refuses connections before it
// runs out of file descriptors (package connlimit): at
// Options.MaxConnections, or else at the open-file limit less the headroom
// etcd, files and outgoing connections need.
func (a *App) limitConnections() error {
	limit, source := a.opts.MaxConnections, "--web.max-connections"
	if limit == 0 {
		if nofile := connlimit.OpenFileLimit(); nofile > 0 {
			room := connlimit.Headroom(nofile)
			limit = int(min(nofile-room, math.MaxInt32))
			source = fmt.Sprintf("open-file limit %d less %d kept for etcd, files and outgoing connections", nofile, room)
		}
	}
	l, err := connlimit.Wrap(a.ln, connlimit.Options{Max: limit, Plain: !a.web.TLS(), Source: source}, a.logger.With("component", "http"), a.reg)
	if err != nil {
		return err
	}
	a.ln, a.conns = l, l
	return nil
}
