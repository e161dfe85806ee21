// Package clusterspec is the stored record of a managed-cluster entry as the
// operator defines it: name, project, service URL and the max connections
// allocated from the licence. It is the seam between the user-facing cluster
// API (which writes it) and the agent gateway (which reads and watches it to
// derive each agent's desired state); what the agent reports lives beside it,
// owned by the gateway, never in this record.
package clusterspec

import (
	"encoding/json"
	"fmt"
	"time"
)

// Prefix is the etcd prefix under which every Spec is stored at Key(id).
const Prefix = "/ecp/clusters/"

// DefaultMaxConnections is the allocation a new entry gets.
const DefaultMaxConnections = 10

// Key is the etcd key of the entry with id.
func Key(id string) string { return Prefix + id }

// Spec is one managed-cluster entry as stored in etcd (JSON).
type Spec struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Project    string `json:"project"`
	ServiceURL string `json:"serviceUrl,omitempty"`
	// MaxConnections is what the licence allocated to this cluster; the
	// agent enforces it on EMQX.
	MaxConnections int       `json:"maxConnections"`
	CreatedAt      time.Time `json:"createdAt"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// Decode parses a stored Spec.
func Decode(b []byte) (Spec, error) {
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return Spec{}, fmt.Errorf("decode cluster spec: %w", err)
	}
	return s, nil
}

// Encode serialises s for storage.
func (s Spec) Encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode cluster spec %s: %w", s.ID, err)
	}
	return b, nil
}
