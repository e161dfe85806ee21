// Package webconfig serves a binary's HTTP listener under the Prometheus
// ecosystem's web configuration file (--web.config.file, the format of
// github.com/prometheus/exporter-toolkit: tls_server_config,
// http_server_config, basic_auth_users, rate_limit), so operators secure
// ecp and the agent as they secure Prometheus and every exporter.
//
// One difference from the toolkit's own web.Serve, and the reason this
// package exists: the toolkit puts basic auth in front of every path of the
// listener. ecp's listener also serves the REST API, the console and the
// agent API, whose callers authenticate with bearer tokens or session
// cookies, and the agent's listener serves the local control API that its
// own CLI calls with the control token. So TLS and the configured headers
// cover the whole listener, while basic auth and the rate limit guard only
// the operational endpoints each binary wraps with Protect (/metrics and
// POST /-/reload). The file is re-read when it changes, as the toolkit
// does: new certificates and passwords apply without a restart.
package webconfig

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// FlagHelp is the help text of --web.config.file on both binaries.
const FlagHelp = "Web configuration file (exporter-toolkit format): TLS for the whole listener; basic_auth_users guard /metrics and POST /-/reload only."

// unknownUserHash is compared against when the user is unknown, so that a
// guess takes as long for a missing user as for a wrong password.
const unknownUserHash = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"

// Web is a loaded web configuration; the zero path means none (plain HTTP,
// nothing guarded).
type Web struct {
	path   string
	logger *slog.Logger

	mu      sync.Mutex
	cfg     *web.Config
	stamp   fileStamp
	limiter *rate.Limiter
	// passed holds digests of user, hash and password that bcrypt accepted,
	// so a scraper's every request does not pay bcrypt again.
	passed map[[sha256.Size]byte]struct{}
	// bcryptMu runs one bcrypt comparison at a time: a flood of guesses
	// slows the guarded endpoints, not the whole process.
	bcryptMu sync.Mutex
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// Load validates the file at path with the toolkit (certificates, bcrypt
// hashes, header names) and returns it; path "" gives a Web that serves
// plain HTTP and guards nothing.
func Load(path string, logger *slog.Logger) (*Web, error) {
	w := &Web{path: path, logger: logger}
	if path == "" {
		return w, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("--web.config.file %s: %w", path, err)
	}
	w.path = abs
	if _, err := w.load(); err != nil {
		return nil, err
	}
	return w, nil
}

// Path is the absolute path of the file ("" without one).
func (w *Web) Path() string { return w.path }

// TLS reports whether the listener serves https.
func (w *Web) TLS() bool {
	if w.path == "" {
		return false
	}
	c, err := w.load()
	return err == nil && c.TLSConfig.IsEnabled()
}

// Scheme is "https" with TLS, else "http".
func (w *Web) Scheme() string {
	if w.TLS() {
		return "https"
	}
	return "http"
}

// load returns the configuration, re-reading and re-validating the file
// when it changed.
func (w *Web) load() (*web.Config, error) {
	st, err := os.Stat(w.path)
	if err != nil {
		return nil, fmt.Errorf("--web.config.file: %w", err)
	}
	stamp := fileStamp{mod: st.ModTime(), size: st.Size()}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg != nil && stamp == w.stamp {
		return w.cfg, nil
	}
	if err := web.Validate(w.path); err != nil {
		return nil, fmt.Errorf("--web.config.file %s: %w", w.path, err)
	}
	b, err := os.ReadFile(w.path)
	if err != nil {
		return nil, fmt.Errorf("--web.config.file: %w", err)
	}
	// The toolkit's own defaults.
	c := &web.Config{
		TLSConfig:  web.TLSConfig{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS13},
		HTTPConfig: web.HTTPConfig{HTTP2: true},
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("--web.config.file %s: %w", w.path, err)
	}
	c.TLSConfig.SetDirectory(filepath.Dir(w.path))
	w.cfg, w.stamp, w.passed, w.limiter = c, stamp, map[[sha256.Size]byte]struct{}{}, nil
	if c.RateLimiterConfig.Interval > 0 {
		w.limiter = rate.NewLimiter(rate.Every(c.RateLimiterConfig.Interval), c.RateLimiterConfig.Burst)
	}
	return c, nil
}

// Serve serves srv on ln: https when the file configures TLS (certificates
// re-read on each new connection), else plain http; with the file's
// http_server_config.headers on every reply.
func (w *Web) Serve(ln net.Listener, srv *http.Server) error {
	if w.path == "" {
		return srv.Serve(ln)
	}
	c, err := w.load()
	if err != nil {
		return err
	}
	next := srv.Handler
	srv.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if c, err := w.load(); err == nil {
			for k, v := range c.HTTPConfig.Header {
				rw.Header().Set(k, v)
			}
		}
		next.ServeHTTP(rw, r)
	})
	if !c.HTTPConfig.HTTP2 && srv.Protocols != nil {
		// http_server_config.http2: false turns HTTP/2 off, h2c included.
		srv.Protocols.SetHTTP2(false)
		srv.Protocols.SetUnencryptedHTTP2(false)
	}
	if !c.TLSConfig.IsEnabled() {
		w.logger.Info("tls is disabled", "address", ln.Addr().String())
		return srv.Serve(ln)
	}
	base, err := web.ConfigToTLSConfig(&c.TLSConfig)
	if err != nil {
		return fmt.Errorf("--web.config.file %s: %w", w.path, err)
	}
	protos := []string{"h2", "http/1.1"}
	if !c.HTTPConfig.HTTP2 {
		protos = []string{"http/1.1"}
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	base.NextProtos = protos
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := w.load()
		if err != nil {
			return nil, err
		}
		t, err := web.ConfigToTLSConfig(&c.TLSConfig)
		if err != nil {
			return nil, err
		}
		t.NextProtos = protos
		return t, nil
	}
	srv.TLSConfig = base
	w.logger.Info("tls is enabled", "address", ln.Addr().String(), "http2", c.HTTPConfig.HTTP2)
	return srv.ServeTLS(ln, "", "")
}

// Protect guards an operational endpoint with the file's basic_auth_users
// and rate_limit; without users (or without a file) h is served as is.
func (w *Web) Protect(h http.Handler) http.Handler {
	if w.path == "" {
		return h
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c, err := w.load()
		if err != nil {
			w.logger.Error("cannot read the web configuration", "err", err)
			http.Error(rw, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
			return
		}
		if l := w.rateLimiter(); l != nil && !l.Allow() {
			http.Error(rw, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
			return
		}
		if len(c.Users) == 0 || w.authorized(c, r) {
			h.ServeHTTP(rw, r)
			return
		}
		rw.Header().Set("WWW-Authenticate", `Basic realm="metrics"`)
		http.Error(rw, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
	})
}

func (w *Web) rateLimiter() *rate.Limiter {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limiter
}

func (w *Web) authorized(c *web.Config, r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := c.Users[user]
	if !known {
		hash = unknownUserHash
	}
	key := sha256.Sum256([]byte(user + "\x00" + string(hash) + "\x00" + pass))
	w.mu.Lock()
	_, seen := w.passed[key]
	w.mu.Unlock()
	if seen {
		return true
	}
	w.bcryptMu.Lock()
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pass))
	w.bcryptMu.Unlock()
	if err != nil || !known {
		return false
	}
	w.mu.Lock()
	if len(w.passed) >= 64 {
		clear(w.passed)
	}
	w.passed[key] = struct{}{}
	w.mu.Unlock()
	return true
}

// ClientTLS is the TLS configuration with which a local client (the agent's
// own CLI) reaches a listener served under the file at path: it accepts
// exactly the certificate the file names (cert_file or cert), read afresh
// on each call so a renewed certificate is followed, and no other. The
// listener's certificate is usually issued for a host name, not for the
// loopback address the CLI dials, so it is pinned rather than verified by
// name.
func ClientTLS(path string) (*tls.Config, error) {
	w, err := Load(path, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	c, err := w.load()
	if err != nil {
		return nil, err
	}
	certPEM := []byte(c.TLSConfig.TLSCert)
	if c.TLSConfig.TLSCertPath != "" {
		if certPEM, err = os.ReadFile(c.TLSConfig.TLSCertPath); err != nil {
			return nil, fmt.Errorf("--web.config.file %s: cert_file: %w", path, err)
		}
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("--web.config.file %s: no PEM certificate in cert_file or cert", path)
	}
	want := block.Bytes
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is the pin below: the served leaf must be the
		// configured certificate, byte for byte.
		InsecureSkipVerify: true, //nolint:gosec // pinned by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, want) {
				return errors.New("the agent's listener serves another certificate than its --web.config.file names")
			}
			return nil
		},
	}, nil
}
