package logstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/ecpio/ecp/internal/secret"
)

// Receiver types.
const (
	TypeElasticsearch = "elasticsearch"
	TypeVictoriaLogs  = "victorialogs"
)

// DefaultIndexPrefix names the daily indices when the admin gives no prefix.
const DefaultIndexPrefix = "ecp-logs"

// ReceiverConfig is the log receiver the system admin configures
// (GET/PUT /system/log-receiver).
//
// Its JSON form is the API's: the password is accepted on input but never
// written out; "passwordSet" says whether one is held. Use MarshalStored and
// UnmarshalStored to persist it with the password.
type ReceiverConfig struct {
	// Type is TypeElasticsearch or TypeVictoriaLogs.
	Type string
	// URL is the store's base URL, e.g. https://es.example:9200 or
	// http://127.0.0.1:9428; a path prefix (behind a proxy) is kept.
	URL string
	// Username and Password are sent as HTTP basic auth when set.
	Username string
	Password secret.String
	// IndexPrefix names the Elasticsearch indices, "<prefix>-YYYY.MM.DD".
	// Empty means DefaultIndexPrefix. VictoriaLogs ignores it.
	IndexPrefix string
	// InsecureSkipVerify turns off TLS certificate checks, for stores with
	// self-signed certificates the admin chose to trust.
	InsecureSkipVerify bool
}

// receiverJSON is the API shape of ReceiverConfig.
type receiverJSON struct {
	Type               string        `json:"type"`
	URL                string        `json:"url"`
	Username           string        `json:"username,omitempty"`
	Password           secret.String `json:"password,omitempty"`
	PasswordSet        bool          `json:"passwordSet"`
	IndexPrefix        string        `json:"indexPrefix,omitempty"`
	InsecureSkipVerify bool          `json:"insecureSkipVerify"`
}

// MarshalJSON writes the API view: never the password, only whether one is
// set.
func (c ReceiverConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(receiverJSON{
		Type: c.Type, URL: c.URL, Username: c.Username, PasswordSet: !c.Password.IsZero(),
		IndexPrefix: c.IndexPrefix, InsecureSkipVerify: c.InsecureSkipVerify,
	})
}

// UnmarshalJSON reads the API input, password included. Unknown fields are
// the HTTP decoder's business (httpapi.Decode is strict).
func (c *ReceiverConfig) UnmarshalJSON(b []byte) error {
	var j receiverJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*c = ReceiverConfig{
		Type: j.Type, URL: j.URL, Username: j.Username, Password: j.Password,
		IndexPrefix: j.IndexPrefix, InsecureSkipVerify: j.InsecureSkipVerify,
	}
	return nil
}

// storedJSON is how ecp keeps the configuration (in etcd): with the password,
// which must survive a restart.
type storedJSON struct {
	Type               string `json:"type"`
	URL                string `json:"url"`
	Username           string `json:"username,omitempty"`
	Password           string `json:"password,omitempty"`
	IndexPrefix        string `json:"indexPrefix,omitempty"`
	InsecureSkipVerify bool   `json:"insecureSkipVerify,omitempty"`
}

// MarshalStored encodes the configuration for ecp's own storage, password
// included. Never send the result to a client or a log.
func (c ReceiverConfig) MarshalStored() ([]byte, error) {
	return json.Marshal(storedJSON{
		Type: c.Type, URL: c.URL, Username: c.Username, Password: c.Password.Reveal(),
		IndexPrefix: c.IndexPrefix, InsecureSkipVerify: c.InsecureSkipVerify,
	})
}

// UnmarshalStored decodes what MarshalStored wrote.
func UnmarshalStored(b []byte) (ReceiverConfig, error) {
	var s storedJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return ReceiverConfig{}, fmt.Errorf("decoding stored log receiver: %w", err)
	}
	return ReceiverConfig{
		Type: s.Type, URL: s.URL, Username: s.Username, Password: secret.String(s.Password),
		IndexPrefix: s.IndexPrefix, InsecureSkipVerify: s.InsecureSkipVerify,
	}, nil
}

// KeepPassword returns c with prev's password when c carries none and
// points at the same store as the same user: a PUT that echoes what GET
// returned (which has no password) must not wipe the stored one, but moving
// the credential to another URL or user needs it typed again.
func (c ReceiverConfig) KeepPassword(prev ReceiverConfig) ReceiverConfig {
	if c.Password.IsZero() && c.URL == prev.URL && c.Username == prev.Username && c.Username != "" {
		c.Password = prev.Password
	}
	return c
}

// FieldError is a configuration or query error naming the offending field, so
// the HTTP layer can answer 400 with it (httpapi.Invalid(e.Field, e.Message)).
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Validate checks the configuration and returns a *FieldError naming the
// first bad field and what would be accepted.
func (c ReceiverConfig) Validate() error {
	switch c.Type {
	case TypeElasticsearch, TypeVictoriaLogs:
	case "":
		return fieldErr("type", "is required: %q or %q", TypeElasticsearch, TypeVictoriaLogs)
	default:
		return fieldErr("type", "%q is not a receiver type; use %q or %q", c.Type, TypeElasticsearch, TypeVictoriaLogs)
	}
	if _, err := parseBaseURL(c.URL); err != nil {
		return err
	}
	if c.Username == "" && !c.Password.IsZero() {
		return fieldErr("username", "is required when a password is set")
	}
	if strings.ContainsRune(c.Username, ':') {
		return fieldErr("username", "must not contain ':' (HTTP basic auth cannot carry it)")
	}
	if c.Type == TypeElasticsearch && c.IndexPrefix != "" {
		if err := validateIndexPrefix(c.IndexPrefix); err != nil {
			return err
		}
	}
	return nil
}

func parseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fieldErr("url", "is required, e.g. https://elasticsearch.example:9200")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fieldErr("url", "is not a valid URL: %v", errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fieldErr("url", "must start with http:// or https://")
	}
	if u.Host == "" {
		return nil, fieldErr("url", "must name a host, e.g. https://elasticsearch.example:9200")
	}
	if u.User != nil {
		return nil, fieldErr("url", "must not carry credentials; use username and password")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fieldErr("url", "must not have a query or fragment")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// validateIndexPrefix applies Elasticsearch's index name rules to the prefix
// (the date suffix keeps the rest valid).
func validateIndexPrefix(p string) error {
	if len(p) > 200 {
		return fieldErr("indexPrefix", "must be at most 200 bytes")
	}
	if p != strings.ToLower(p) {
		return fieldErr("indexPrefix", "must be lowercase (Elasticsearch index names are)")
	}
	if strings.ContainsAny(p, `\/*?"<>| ,#:`) {
		return fieldErr("indexPrefix", `must not contain \ / * ? " < > | space , # or :`)
	}
	if strings.HasPrefix(p, "-") || strings.HasPrefix(p, "_") || strings.HasPrefix(p, "+") || strings.HasPrefix(p, ".") {
		return fieldErr("indexPrefix", "must not start with -, _, + or .")
	}
	return nil
}

func (c ReceiverConfig) indexPrefix() string {
	if c.IndexPrefix == "" {
		return DefaultIndexPrefix
	}
	return c.IndexPrefix
}
