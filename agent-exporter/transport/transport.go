// Package transport builds the HTTP clients the agent uses towards EMQX and
// ecp, and tells apart the failures an operator must act on differently
// (TLS verification versus an unreachable host), so both clients and the
// register command can name the real cause. Towards ecp a session uses one
// transport (ECP) for everything, on one connection, so that ecp holds one
// descriptor per agent.
package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"time"
)

// DefaultTimeout bounds one request that has no deadline of its own.
const DefaultTimeout = 10 * time.Second

// Options configure an HTTP client.
type Options struct {
	// InsecureSkipVerify turns off TLS certificate verification. The
	// operator chooses it with --insecure-skip-verify; it covers both EMQX
	// and ecp because both usually share the same private CA setup.
	InsecureSkipVerify bool
	// Timeout bounds a whole request; zero means DefaultTimeout. Long-polls
	// set a longer one per request through their context instead.
	Timeout time.Duration
	// HTTP2 makes NewECP speak HTTP/2 to ecp instead of HTTP/1.1 (see ECP).
	HTTP2 bool
}

// New returns a client with its own transport, so that closing idle
// connections on shutdown does not touch other users of the process.
func New(opts Options) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: opts.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice
	}
	t.MaxIdleConnsPerHost = 4
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{Transport: t, Timeout: timeout}
}

// IsTLSError reports whether err comes from verifying the peer's
// certificate or from the TLS handshake itself.
func IsTLSError(err error) bool {
	var (
		unknownAuth x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verify      *tls.CertificateVerificationError
		record      tls.RecordHeaderError
		alert       tls.AlertError
	)
	return errors.As(err, &unknownAuth) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &verify) ||
		errors.As(err, &record) || errors.As(err, &alert)
}

// IsUnreachable reports whether err means the host could not be reached at
// all: refused, unresolvable, timed out, reset.
func IsUnreachable(err error) bool {
	if err == nil || IsTLSError(err) {
		return false
	}
	var (
		netErr net.Error
		opErr  *net.OpError
		dnsErr *net.DNSError
	)
	return errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &netErr)
}
