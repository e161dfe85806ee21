package fleet

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/internal/secret"
)

// Keys fleet owns in etcd. Everything sits under Prefix; the cluster specs
// it reads live under registry.Prefix and belong to the cluster API.
const (
	// Prefix holds every key fleet writes.
	Prefix = "/ecp/fleet/"
	// agentsPrefix + id: the bound agent (credential hash, registration
	// facts). Created by register, deleted by unregister, re-register and
	// Forget; its create revision identifies the binding.
	agentsPrefix = Prefix + "agents/"
	// statusPrefix + id: the persisted lifecycle state, written only when
	// it changes.
	statusPrefix = Prefix + "status/"
	// tokensPrefix + sha256(token): a pending registration token, on a
	// lease that outlives its expiry by tokenMemory.
	tokensPrefix = Prefix + "tokens/"
	// replicasPrefix + replica id: presence of a running replica, on its
	// session lease.
	replicasPrefix = Prefix + "replicas/"
	// digestsPrefix + replica id + "/" + chunk: the clusters a replica heard
	// from since its previous digest, on its session lease.
	digestsPrefix = Prefix + "digests/"
	// leaderPrefix is the concurrency.Election prefix of the sweeper.
	leaderPrefix = Prefix + "leader"
)

// tokenMemory is how long an expired token stays stored, so that its holder
// is told TokenExpired rather than TokenInvalid.
const tokenMemory = 7 * 24 * time.Hour

// Secret prefixes make a leaked value recognisable (secret scanners, logs).
const (
	tokenPrefix      = "ecpreg_"
	credentialPrefix = "ecpagent_"
)

// agentRecord is the value at agentsPrefix+id.
type agentRecord struct {
	// CredentialHash is hex SHA-256 of the credential. The credential has
	// 256 random bits, so a fast hash is enough: there is nothing to guess.
	CredentialHash string                   `json:"credentialHash"`
	AgentVersion   string                   `json:"agentVersion,omitempty"`
	Hostname       string                   `json:"hostname,omitempty"`
	DashboardURL   string                   `json:"dashboardUrl,omitempty"`
	APIURL         string                   `json:"apiUrl,omitempty"`
	LogCollection  agentproto.LogCollection `json:"logCollection"`
	RegisteredAt   time.Time                `json:"registeredAt"`
}

// statusRecord is the value at statusPrefix+id.
type statusRecord struct {
	State        string    `json:"state"`
	Reason       *Reason   `json:"reason,omitempty"`
	Version      string    `json:"version,omitempty"`
	Nodes        int       `json:"nodes,omitempty"`
	StartedAt    time.Time `json:"startedAt,omitzero"`
	ManagedSince time.Time `json:"managedSince,omitzero"`
	AgentVersion string    `json:"agentVersion,omitempty"`
	// AgentIntervalSeconds is the collection interval the agent reports
	// it runs (zero: ecp's). Stored, so every replica's sweeper allows
	// the same silence.
	AgentIntervalSeconds int `json:"agentIntervalSeconds,omitempty"`
	// HeldBy is the entry whose agent holds the EMQX cluster this entry's
	// agent reports (identity.go): this one is abnormal with
	// ClusterManagedElsewhere and its agent holds. Stored, so every
	// replica tells the agent the same.
	HeldBy string `json:"heldBy,omitempty"`
	// TokenHash and TokenExpiresAt describe the pending registration token,
	// so a re-issue can delete it and an unused one can show TokenExpired.
	TokenHash      string    `json:"tokenHash,omitempty"`
	TokenLease     int64     `json:"tokenLease,omitempty"`
	TokenExpiresAt time.Time `json:"tokenExpiresAt,omitzero"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// tokenRecord is the value at tokensPrefix+hash.
type tokenRecord struct {
	ClusterID string    `json:"clusterId"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func encode(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %T: %w", v, err)
	}
	return string(b), nil
}

func decode[T any](b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode %T: %w", v, err)
	}
	return v, nil
}

// secretHash is the stored form of a token or credential, the hex SHA-256
// of its bytes, as an array. Every agent call hashes its credential and
// compares it with the bound one: as an array, hashed in stack buffers (a
// credential is well under 256 bytes; append moves a longer one to the
// heap), that allocates nothing.
type secretHash [2 * sha256.Size]byte

func hashOf(s string) secretHash {
	var in [256]byte
	sum := sha256.Sum256(append(in[:0], s...))
	var h secretHash
	hex.Encode(h[:], sum[:])
	return h
}

// hashSecret is the stored form of a token or credential as a string.
func hashSecret(s string) string {
	h := hashOf(s)
	return string(h[:])
}

// matches compares h with a stored hash in constant time.
func (h *secretHash) matches(stored string) bool {
	return len(stored) == len(h) && subtle.ConstantTimeCompare([]byte(stored), h[:]) == 1
}

func randomPart() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// newToken returns a registration token with 256 random bits.
func newToken() (secret.String, error) {
	r, err := randomPart()
	if err != nil {
		return "", err
	}
	return secret.String(tokenPrefix + r), nil
}

// newCredential returns an agent credential. It carries the cluster id in
// clear so that authentication is one map lookup and one hash compare.
func newCredential(clusterID string) (secret.String, error) {
	r, err := randomPart()
	if err != nil {
		return "", err
	}
	return secret.String(credentialPrefix + clusterID + "." + r), nil
}

// credentialCluster returns the cluster id a credential names.
func credentialCluster(cred string) (string, bool) {
	rest, ok := strings.CutPrefix(cred, credentialPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", false
	}
	return rest[:i], true
}
