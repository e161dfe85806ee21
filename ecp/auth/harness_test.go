package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/tenancy"
	"github.com/ecpio/ecp/internal/secret"
)

// replica is one ecp replica's auth and tenancy routes on a shared etcd,
// served in-process.
type replica struct {
	t        *testing.T
	store    *auth.Store
	bindings *tenancy.Store
	router   *mux.Router
}

const rootPassword = "root-password"

// newReplica serves /api/v1 as ecp does (authentication middleware, the
// auth and tenancy APIs) on cli.
func newReplica(t *testing.T, cli *clientv3.Client, now func() time.Time) *replica {
	t.Helper()
	store, err := auth.NewStore(cli, auth.StoreOptions{BcryptCost: bcrypt.MinCost, SessionTTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// Every replica follows the users' generations, as ecp's do.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); store.RunMirror(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	reg := prometheus.NewRegistry()
	adapter := httpapi.NewAdapter(slog.New(slog.NewTextHandler(testWriter{t}, nil)), reg)
	bindings := tenancy.NewStore(cli)
	authz := tenancy.NewAuthorizer(bindings)
	router := mux.NewRouter()
	v1 := router.PathPrefix("/api/v1").Subrouter()
	v1.Use(store.Middleware(adapter))
	auth.NewAPI(store, authz, reg).Register(v1, adapter)
	tenancy.NewAPI(authz, store).Register(v1, adapter)
	return &replica{t: t, store: store, bindings: bindings, router: router}
}

// bootstrap creates the system admin "root".
func (r *replica) bootstrap() {
	r.t.Helper()
	u, err := r.store.CreateUser(r.t.Context(), "root", rootPassword)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.bindings.CreateBinding(r.t.Context(), tenancy.Binding{Username: u.Username, Role: tenancy.RoleSystemAdmin, UserGeneration: u.Generation}); err != nil {
		r.t.Fatal(err)
	}
}

// login returns a session token of username, failing the test otherwise.
func (r *replica) login(username, password string) string {
	r.t.Helper()
	rp := r.do(http.MethodPost, "/api/v1/login", "", "192.0.2.1:1234", map[string]string{"username": username, "password": password})
	if rp.status != http.StatusOK {
		r.t.Fatalf("login %s: %d %s", username, rp.status, rp.body)
	}
	var out struct{ Token string }
	rp.decode(r.t, &out)
	return out.Token
}

// must sends the request and fails the test unless it is answered status.
func (r *replica) must(status int, method, path, token string, body any) reply {
	r.t.Helper()
	rp := r.do(method, path, token, "192.0.2.1:1234", body)
	if rp.status != status {
		r.t.Fatalf("%s %s: %d %s, want %d", method, path, rp.status, rp.body, status)
	}
	return rp
}

// id is the "id" of a created object.
func (rp reply) id(t *testing.T) string {
	t.Helper()
	var out struct{ ID string }
	rp.decode(t, &out)
	return out.ID
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (rp reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(rp.body, v); err != nil {
		t.Fatalf("decode %s: %v", rp.body, err)
	}
}

// do sends one request from remote (host:port) with token ("" for none).
func (r *replica) do(method, path, token, remote string, body any) reply {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			panic(err)
		}
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(b))
	req.RemoteAddr = remote
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	r.router.ServeHTTP(w, req)
	return reply{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// testWriter sends the replica's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// secretOf is the password of a test user.
func secretOf(username string) secret.String {
	return secret.String("password-of-" + username)
}
