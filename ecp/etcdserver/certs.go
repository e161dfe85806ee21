package etcdserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The embedded member's credentials live in <data dir>/TLSDir: a CA that
// signs a server certificate (client and peer port) and one client
// certificate, ecp's own. Only a holder of the client key (the ecp
// process, or whoever can read the data dir) may talk to the member; a
// local process that merely reaches 127.0.0.1 gets a TLS handshake error.
const (
	TLSDir = "tls"

	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
	clientCertFile = "client.crt"
	clientKeyFile  = "client.key"

	// certValidity is long on purpose: the certificates never leave the
	// host, and an expiry in a running replica would cut it off from etcd.
	// Start renews what expires within certRenewBefore.
	certValidity    = 10 * 365 * 24 * time.Hour
	certRenewBefore = 30 * 24 * time.Hour
	// clientCommonName names ecp's client certificate.
	clientCommonName = "ecp"
)

// TLSFiles name PEM files of an etcd client's TLS settings: the embedded
// member's own (Server.ClientTLS) or those of --etcd.tls.*.
type TLSFiles struct {
	// CAFile verifies etcd's server certificate; the system's roots when
	// empty.
	CAFile string
	// CertFile and KeyFile are the client certificate presented to etcd;
	// both or neither.
	CertFile string
	KeyFile  string
}

// IsZero reports whether no file is named.
func (f TLSFiles) IsZero() bool { return f == TLSFiles{} }

// Config loads the files into a client TLS configuration.
func (f TLSFiles) Config() (*tls.Config, error) {
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, errors.New("etcd client certificate and key go together: give both or neither")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CAFile != "" {
		pemBytes, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read etcd CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("etcd CA file %s holds no PEM certificate", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load etcd client certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// memberCerts are the paths of the member's credentials in dir.
type memberCerts struct{ dir string }

func (m memberCerts) path(name string) string { return filepath.Join(m.dir, name) }

func (m memberCerts) client() TLSFiles {
	return TLSFiles{CAFile: m.path(caCertFile), CertFile: m.path(clientCertFile), KeyFile: m.path(clientKeyFile)}
}

// ensureCerts makes dir's CA, server and client certificates, keeping every
// one that is there, valid for more than certRenewBefore and (for the
// leaves) signed by the CA in use. Keys are ECDSA P-256 in files of mode
// 0600.
func ensureCerts(dir string, now time.Time) (memberCerts, error) {
	m := memberCerts{dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return m, fmt.Errorf("create etcd TLS directory: %w", err)
	}
	ca, caKey, err := loadPair(m.path(caCertFile), m.path(caKeyFile), nil, now)
	if err != nil {
		return m, err
	}
	if ca == nil {
		tmpl := &x509.Certificate{
			Subject:               pkix.Name{CommonName: "ecp embedded etcd CA"},
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLenZero:        true,
		}
		if ca, caKey, err = issue(m.path(caCertFile), m.path(caKeyFile), tmpl, nil, nil, now); err != nil {
			return m, fmt.Errorf("create etcd CA: %w", err)
		}
	}
	leaves := []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		{serverCertFile, serverKeyFile, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "ecp embedded etcd"},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			DNSNames:    []string{"localhost"},
		}},
		{clientCertFile, clientKeyFile, &x509.Certificate{
			Subject:     pkix.Name{CommonName: clientCommonName},
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	for _, l := range leaves {
		cert, _, err := loadPair(m.path(l.cert), m.path(l.key), ca, now)
		if err != nil {
			return m, err
		}
		if cert != nil {
			continue
		}
		if _, _, err := issue(m.path(l.cert), m.path(l.key), l.tmpl, ca, caKey, now); err != nil {
			return m, fmt.Errorf("create etcd certificate %s: %w", l.cert, err)
		}
	}
	return m, nil
}

// loadPair reads a certificate and its key. It returns nil (and no error)
// when either file is missing, the pair does not match, the certificate
// expires within certRenewBefore or, with ca set, ca did not sign it: the
// caller issues a new one. Other read errors are errors.
func loadPair(certPath, keyPath string, ca *x509.Certificate, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if errors.Is(err, fs.ErrPermission) {
		return nil, nil, fmt.Errorf("read etcd certificate %s: %w", certPath, err)
	}
	if key, ok := pair.PrivateKey.(*ecdsa.PrivateKey); err == nil && ok && usable(pair.Leaf, ca, now) {
		return pair.Leaf, key, nil
	}
	// Missing, corrupt, mismatched, expiring or signed by another CA.
	return nil, nil, nil
}

// usable reports whether cert is valid from now until certRenewBefore
// later and, with ca set, signed by ca.
func usable(cert, ca *x509.Certificate, now time.Time) bool {
	if cert == nil || now.Before(cert.NotBefore) || now.Add(certRenewBefore).After(cert.NotAfter) {
		return false
	}
	return ca == nil || cert.CheckSignatureFrom(ca) == nil
}

// issue makes a key pair and a certificate from tmpl signed by parent
// (self-signed when parent is nil), writes both with mode 0600 and returns
// them.
func issue(certPath, keyPath string, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour) // tolerate a little clock skew
	tmpl.NotAfter = now.Add(certValidity)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	// The key first: a certificate without its key is replaced next start.
	if err := writePEM(keyPath, "PRIVATE KEY", keyDER); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// writePEM replaces path atomically with one PEM block, mode 0600.
func writePEM(path, blockType string, der []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, &pem.Block{Type: blockType, Bytes: der}); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
