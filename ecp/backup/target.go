package backup

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/etcdserver"
)

// Target is the etcd a backup reads or a restore writes: an external
// cluster (Endpoints, TLS as `ecp serve` takes them) or, without
// endpoints, the embedded member in DataDir, which is started for the
// purpose and so only while no ecp runs on that directory.
type Target struct {
	DataDir   string
	Endpoints []string
	TLS       etcdserver.TLSFiles
	// Existing refuses a DataDir that holds no member yet: a backup of a
	// mistyped --data.dir would otherwise start a fresh member there and
	// save nothing, which looks like success.
	Existing bool
}

// Connect returns a client to t and the function that closes it (and
// stops the embedded member it started).
func (t Target) Connect(ctx context.Context, logger *slog.Logger) (*clientv3.Client, func(), error) {
	endpoints, files := t.Endpoints, t.TLS
	var srv *etcdserver.Server
	if len(endpoints) == 0 {
		if _, err := os.Stat(filepath.Join(t.DataDir, "member")); t.Existing && err != nil {
			return nil, nil, fmt.Errorf("no embedded etcd data in %s (is --data.dir the directory ecp serve uses?): %w", t.DataDir, err)
		}
		var err error
		srv, err = etcdserver.Start(ctx, etcdserver.Options{Dir: t.DataDir}, logger)
		if err != nil {
			return nil, nil, fmt.Errorf("start the embedded etcd in %s (stop the ecp that uses it first): %w", t.DataDir, err)
		}
		endpoints, files = []string{srv.Endpoint()}, srv.ClientTLS()
	}
	cli, err := etcdserver.NewClient(endpoints, files)
	if err != nil {
		if srv != nil {
			srv.Close()
		}
		return nil, nil, err
	}
	return cli, func() {
		_ = cli.Close()
		if srv != nil {
			srv.Close()
		}
	}, nil
}
