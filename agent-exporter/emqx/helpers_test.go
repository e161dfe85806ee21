package emqx_test

import (
	"context"
	"testing"

	"github.com/ecpio/ecp/internal/secret"
)

func secretOf(s string) secret.String { return secret.String(s) }

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(t.Context())
}
