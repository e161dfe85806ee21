// Package seal encrypts the secrets ecp keeps in etcd (the Alertmanager
// webhook token, the log receiver's password, ...) under a key kept outside
// etcd, in a file beside ecp (--secrets.key-file). Whoever reads etcd (a
// backup, a snapshot, an etcd operator, a process that got past etcd's
// TLS) sees only sealed values.
//
// A sealed value is "ecp-sealed:v1:<key id>:<base64url(nonce|ciphertext)>",
// AES-256-GCM with the etcd key name as additional data, so a sealed value
// opens only under the name it was sealed for. The key id (the first bytes
// of the key's SHA-256) lets a replica with the wrong key file say so
// rather than fail obscurely; Verify checks it once at start.
package seal

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultKeyFile is the key file's name in ecp's data directory.
const DefaultKeyFile = "secrets.key"

// KeySize is the key's length in bytes (AES-256).
const KeySize = 32

// prefix starts every sealed value; a value without it was written by an
// ecp before sealing and is read as it is (see Open).
const prefix = "ecp-sealed:v1:"

// CheckKey holds a value sealed by the first replica that started; Verify
// opens it to prove this replica's key is the one etcd's secrets use.
const CheckKey = "/ecp/seal/check"

// ErrWrongKey means a value was sealed with another key than this one.
var ErrWrongKey = errors.New("sealed with another key")

// Key seals and opens values. Its methods are safe for concurrent use.
type Key struct {
	aead cipher.AEAD
	id   string
	path string
}

// LoadOrCreate reads the key file at path, or creates it (mode 0600, in a
// directory created 0700) with a fresh random key when it does not exist.
// The file holds the key in base64 (as `openssl rand -base64 32` writes it).
func LoadOrCreate(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := create(path); err != nil {
			return nil, err
		}
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read secrets key file: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(b)))
	if err != nil || len(raw) != KeySize {
		return nil, fmt.Errorf("secrets key file %s must hold %d random bytes in base64 (openssl rand -base64 %d)", path, KeySize, KeySize)
	}
	return newKey(raw, path)
}

// create writes a fresh key to path; a concurrent creator wins silently.
func create(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create directory of secrets key file: %w", err)
	}
	raw := make([]byte, KeySize)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails on supported platforms.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create secrets key file: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write secrets key file: %w", err)
	}
	return nil
}

func newKey(raw []byte, path string) (*Key, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	sum := sha256.Sum256(raw)
	return &Key{aead: aead, id: hex.EncodeToString(sum[:4]), path: path}, nil
}

// ID names the key without revealing it: the first 4 bytes of its SHA-256
// in hex.
func (k *Key) ID() string { return k.id }

// Seal encrypts plaintext for storage under the etcd key name.
func (k *Key) Seal(name string, plaintext []byte) string {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plaintext)+k.aead.Overhead())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails on supported platforms.
	out := k.aead.Seal(nonce, nonce, plaintext, []byte(name))
	return prefix + k.id + ":" + base64.RawURLEncoding.EncodeToString(out)
}

// Open decrypts a value stored under name. A value without the sealed
// prefix was written by an ecp that did not seal yet: it is returned as it
// is with sealed false, and the caller seals it on its next write. A value
// sealed with another key fails with ErrWrongKey.
func (k *Key) Open(name string, stored []byte) (plaintext []byte, sealed bool, err error) {
	rest, ok := bytes.CutPrefix(stored, []byte(prefix))
	if !ok {
		return stored, false, nil
	}
	id, body, ok := strings.Cut(string(rest), ":")
	if !ok {
		return nil, true, fmt.Errorf("open sealed %s: malformed value", name)
	}
	if id != k.id {
		return nil, true, fmt.Errorf("open sealed %s: %w (key id %s; this replica's --secrets.key-file %s has key id %s)", name, ErrWrongKey, id, k.path, k.id)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(raw) < k.aead.NonceSize() {
		return nil, true, fmt.Errorf("open sealed %s: malformed value", name)
	}
	n := k.aead.NonceSize()
	plaintext, err = k.aead.Open(nil, raw[:n], raw[n:], []byte(name))
	if err != nil {
		return nil, true, fmt.Errorf("open sealed %s: it does not authenticate under key id %s (altered in etcd, or moved from another key)", name, k.id)
	}
	return plaintext, true, nil
}

// Verify makes sure this key is the one etcd's sealed values use: the
// first replica to start stores a check value sealed with its key; every
// later start (of any replica) must open it. Replicas sharing an etcd must
// share the key file, and one with another key refuses to start with an
// error saying so, rather than failing on each secret later.
func (k *Key) Verify(ctx context.Context, cli *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	check := k.Seal(CheckKey, []byte("ecp"))
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(CheckKey), "=", 0)).
		Then(clientv3.OpPut(CheckKey, check)).Else(clientv3.OpGet(CheckKey)).Commit()
	if err != nil {
		return fmt.Errorf("check secrets key against etcd: %w", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return fmt.Errorf("check secrets key against etcd: %s vanished; start again", CheckKey)
	}
	if _, sealed, err := k.Open(CheckKey, kvs[0].Value); err != nil || !sealed {
		if err == nil {
			err = errors.New("the check value is not sealed")
		}
		return fmt.Errorf("etcd holds secrets this replica cannot open: %w; every ecp replica sharing an etcd needs the same --secrets.key-file (copy the first replica's)", err)
	}
	return nil
}
