package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestHashSecretStoredForm: the stored form of a secret is the hex SHA-256
// of its bytes, whatever its length, so that hashes stored by any version
// of ecp keep matching, and a credential's hash matches only its own.
func TestHashSecretStoredForm(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("c", 255), strings.Repeat("c", 256), strings.Repeat("d", 257), strings.Repeat("e", 4096)} {
		sum := sha256.Sum256([]byte(s))
		if got, want := hashSecret(s), hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("hashSecret of %d bytes = %s, want %s", len(s), got, want)
		}
	}
	if got := hashSecret("abc"); got != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatalf("hashSecret(abc) = %s", got)
	}
	h := hashOf("abc")
	for stored, want := range map[string]bool{hashSecret("abc"): true, hashSecret("abd"): false, "": false,
		hashSecret("abc")[:63]: false, hashSecret("abc") + "0": false, strings.ToUpper(hashSecret("abc")): false} {
		if got := h.matches(stored); got != want {
			t.Errorf("hash of abc matches %q: %v, want %v", stored, got, want)
		}
	}
}
