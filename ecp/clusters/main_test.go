package clusters

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind: every
// mirror a test runs must stop with its context.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
