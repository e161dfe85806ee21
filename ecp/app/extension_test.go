package app

import (
	"context"
	"net/http"
	"testing"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// TestExtensionsMountBehindAuthAndRun: an extension's /api/v1 route sees
// the caller and is audited, its own-auth route is not shadowed by the
// /api/v1 prefix, and its loop runs until the app stops.
func TestExtensionsMountBehindAuthAndRun(t *testing.T) {
	opts := testOptions(t)
	ran := make(chan struct{})
	stopped := make(chan struct{})
	opts.Extensions = []Extension{func(env Env) (func(context.Context) error, error) {
		env.API.Handle("/hello", env.Adapter.Handle(func(w http.ResponseWriter, r *http.Request) error {
			p, err := auth.Require(r)
			if err != nil {
				return err
			}
			return httpapi.JSON(w, http.StatusOK, map[string]string{"hello": p.Username})
		})).Methods(http.MethodPost)
		env.Root.Handle("/api/v1/agent/extra", env.Adapter.Handle(func(w http.ResponseWriter, _ *http.Request) error {
			return httpapi.JSON(w, http.StatusOK, map[string]string{"agent": "ok"})
		})).Methods(http.MethodGet)
		env.Fallback.PathPrefix("/").Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("console"))
		})).Methods(http.MethodGet)
		return func(ctx context.Context) error {
			close(ran)
			<-ctx.Done()
			close(stopped)
			return nil
		}, nil
	}}
	h := start(t, opts)
	admin := h.login("admin", testAdminPassword)
	h.must(401, "POST", "/api/v1/hello", "", nil)
	var out struct{ Hello string }
	h.must(200, "POST", "/api/v1/hello", admin, nil).decode(t, &out)
	if out.Hello != "admin" {
		t.Fatalf("extension saw caller %q", out.Hello)
	}
	h.must(200, "GET", "/api/v1/agent/extra", "", nil)
	// The console's catch-all shadows neither the API nor the probes.
	if r := h.must(200, "GET", "/projects/x/overview", "", nil); string(r.body) != "console" {
		t.Fatalf("fallback served %q", r.body)
	}
	h.must(200, "GET", "/-/healthy", "", nil)
	h.must(401, "GET", "/api/v1/orgs", "", nil)
	h.must(404, "GET", "/api/v1/nothing", admin, nil)
	var recs struct{ Items []struct{ Route string } }
	h.must(200, "GET", "/api/v1/audit", admin, nil).decode(t, &recs)
	if len(recs.Items) == 0 || recs.Items[0].Route != "/api/v1/hello" {
		t.Fatalf("extension call not audited: %+v", recs.Items)
	}
	<-ran
	h.stop()
	<-stopped
}
