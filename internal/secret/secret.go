// Package secret holds the one type every password, token and credential in
// ecp and the agent travels in, so that none of them can reach a log line, an
// API reply or a configuration dump by accident.
package secret

import (
	"encoding/json"
	"log/slog"
)

// Redacted is what a String prints as, in every format.
const Redacted = "<secret>"

// String is a secret value. Printing, logging or marshalling it yields
// Redacted; only Reveal returns the value, so every use is visible in review.
type String string

// Reveal returns the secret value itself.
func (s String) Reveal() string { return string(s) }

// IsZero reports whether no secret is set.
func (s String) IsZero() bool { return s == "" }

// String implements fmt.Stringer.
func (s String) String() string { return Redacted }

// GoString implements fmt.GoStringer, so %#v redacts too.
func (s String) GoString() string { return Redacted }

// LogValue implements slog.LogValuer.
func (s String) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON implements json.Marshaler.
func (s String) MarshalJSON() ([]byte, error) { return json.Marshal(Redacted) }

// MarshalText implements encoding.TextMarshaler (YAML, flags, map keys).
func (s String) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so a secret can be read
// from a request body or a configuration file.
func (s *String) UnmarshalText(b []byte) error {
	*s = String(b)
	return nil
}
