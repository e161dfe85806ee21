package auth

import (
	"crypto/subtle"

	"github.com/ecpio/ecp/internal/secret"
)

// NewSecret returns a random 256-bit secret and the SHA-256 hash to store
// for it: credentials other packages own (a project's custom-alarm token)
// are kept the way API tokens are, shown once and stored only hashed.
func NewSecret() (secret.String, string) {
	s := randomSecret()
	return secret.String(s), hashHex(s)
}

// SecretMatches reports, in constant time, whether sec is the secret hash
// was stored for.
func SecretMatches(sec, hash string) bool {
	return hash != "" && subtle.ConstantTimeCompare([]byte(hashHex(sec)), []byte(hash)) == 1
}
