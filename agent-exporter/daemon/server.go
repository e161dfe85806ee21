package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ecpio/ecp/agent-exporter/state"
	"github.com/ecpio/ecp/internal/secret"
	"github.com/ecpio/ecp/internal/webconfig"
)

// server is the agent's one listener: /metrics, the probes and the local
// control API, with the token the control API demands and whether the
// agent is ready.
type server struct {
	web   *webconfig.Web
	token secret.String // of the control API
	ln    net.Listener
	http  *http.Server
	ready atomic.Bool
}

// newServer loads the web configuration (TLS, basic auth) and makes the
// control token; listen binds it.
func newServer(webConfigFile string, log *slog.Logger) (*server, error) {
	web, err := webconfig.Load(webConfigFile, log)
	if err != nil {
		return nil, err
	}
	var tok [32]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("making the control token: %w", err)
	}
	return &server{web: web, token: secret.String(hex.EncodeToString(tok[:]))}, nil
}

// listen binds addr (--web.listen-address), so the address is known
// before serving.
func (s *server) listen(addr string, h http.Handler) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s (--web.listen-address) is taken. If an agent-exporter runs there already, `agent-exporter status` shows it and no second one is needed; "+
			"otherwise start the agent on a free address, e.g. --web.listen-address 127.0.0.1:9734 (register finds it through its state directory)", addr)
	}
	if err != nil {
		return fmt.Errorf("listening on %s (--web.listen-address): %w", addr, err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

func (s *server) addr() string { return s.ln.Addr().String() }

// control is what the control file tells the CLI: where the agent serves,
// its token and, with TLS, the web configuration to pin the certificate.
func (s *server) control() state.Control {
	ctl := state.Control{URL: s.web.Scheme() + "://" + s.addr(), Token: s.token}
	if s.web.TLS() {
		ctl.WebConfigFile = s.web.Path()
	}
	return ctl
}

// serve serves until shutdown.
func (s *server) serve() error {
	if err := s.web.Serve(s.ln, s.http); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving http: %w", err)
	}
	return nil
}

// shutdown ends serve, waiting for requests in flight up to shutdownTimeout.
func (s *server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	_ = s.http.Shutdown(ctx)
}
