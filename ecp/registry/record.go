package registry

// The record of a managed-cluster entry as the operator defines it: name,
// project, service URL and the max connections allocated from the licence.
// It is the seam between the user-facing cluster API (which writes it) and
// the agent gateway (which reads and watches it to derive each agent's
// desired state); what the agent reports lives beside it, owned by the
// gateway, never in this record.

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ecpio/ecp/agentproto"
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
	MaxConnections int `json:"maxConnections"`
	// LogCollection is the operator's switch for log shipping; nil keeps
	// what the agent chose when it registered. It survives a
	// re-registration: the operator's word outlasts the agent's flags.
	LogCollection *LogCollectionSpec `json:"logCollection,omitempty"`
	CreatedAt     time.Time          `json:"createdAt"`
	UpdatedAt     time.Time          `json:"updatedAt"`
}

// LogCollectionSpec switches log shipping on or off. The directory is not
// here: only the agent knows where EMQX writes its logs, so it stays the
// one the agent registered with.
type LogCollectionSpec struct {
	Enabled bool `json:"enabled"`
}

// EffectiveLogCollection is the log collection the agent must apply: the
// registered choice, with Enabled replaced by the operator's switch when
// one is set. Collection is never on without a directory to tail, so
// switching it on for an agent that registered none leaves it off.
func (s Spec) EffectiveLogCollection(registered agentproto.LogCollection) agentproto.LogCollection {
	lc := registered
	if s.LogCollection != nil {
		lc.Enabled = s.LogCollection.Enabled
	}
	lc.Enabled = lc.Enabled && lc.Dir != ""
	return lc
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
