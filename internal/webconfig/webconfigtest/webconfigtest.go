// Package webconfigtest writes web configuration files (and the
// certificates they name) for tests of both binaries.
package webconfigtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// File is a written web configuration.
type File struct {
	// Path of the web configuration file.
	Path string
	// Roots trusts the listener's certificate (nil without TLS).
	Roots *x509.CertPool
}

// Write writes a web configuration into a temporary directory of t:
// basic_auth_users from users (user → password, hashed here), and with
// withTLS a self-signed certificate for 127.0.0.1 and localhost, named by
// relative paths as operators usually do.
func Write(t testing.TB, users map[string]string, withTLS bool) File {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	f := File{Path: filepath.Join(dir, "web-config.yml")}
	if withTLS {
		cert, key := selfSigned(t)
		for name, data := range map[string][]byte{"tls.crt": cert, "tls.key": key} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b.WriteString("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n")
		f.Roots = x509.NewCertPool()
		f.Roots.AppendCertsFromPEM(cert)
	}
	if len(users) > 0 {
		b.WriteString("basic_auth_users:\n")
		for u, p := range users {
			h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "  %s: %s\n", u, h)
		}
	}
	if err := os.WriteFile(f.Path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func selfSigned(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "webconfigtest"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
