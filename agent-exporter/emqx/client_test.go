package emqx_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fake is a minimal EMQX: login, nodes, paged rules, licence. Tokens are
// counted so token renewal can be asserted.
type fake struct {
	mu       sync.Mutex
	logins   int
	valid    map[string]bool
	rules    int
	expireOn string // code to answer once to the next authenticated call
	license  string
}

func newFake(t *testing.T) (*fake, *httptest.Server) {
	t.Helper()
	f := &fake{valid: map[string]bool{}, license: `{"customer_type":3,"max_connections":30,"type":"official"}`}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v5/login", func(w http.ResponseWriter, r *http.Request) {
		var b struct{ Username, Password string }
		_ = json.NewDecoder(r.Body).Decode(&b)
		if b.Username != "admin" || b.Password != "public" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code":"BAD_USERNAME_OR_PWD","message":"Auth failed"}`)
			return
		}
		f.mu.Lock()
		f.logins++
		tok := "tok" + strconv.Itoa(f.logins)
		f.valid[tok] = true
		f.mu.Unlock()
		fmt.Fprintf(w, `{"token":%q,"version":"5.8.9","license":{"edition":"ee"},"role":"administrator"}`, tok)
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			tok := r.Header.Get("Authorization")[len("Bearer "):]
			ok := f.valid[tok]
			code := f.expireOn
			if ok && code != "" {
				delete(f.valid, tok)
				f.expireOn = ""
				ok = false
			}
			f.mu.Unlock()
			if !ok {
				if code == "" {
					code = "BAD_TOKEN"
				}
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprintf(w, `{"code":%q,"message":"expired"}`, code)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /api/v5/nodes", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `[{"node":"emqx@a","node_status":"running","version":"5.8.9","uptime":5000,"connections":3,"live_connections":2},{"node":"emqx@b","node_status":"stopped","role":"core"}]`)
	}))
	mux.HandleFunc("GET /api/v5/rules", auth(func(w http.ResponseWriter, r *http.Request) {
		page, _ := strconv.Atoi(r.URL.Query().Get("page"))
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		lo, hi := (page-1)*limit, min(page*limit, f.rules)
		var data []map[string]any
		for i := lo; i < hi; i++ {
			data = append(data, map[string]any{"id": fmt.Sprintf("rule_%d", i), "enable": true})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"data": data, "meta": map[string]any{"page": page, "limit": limit, "hasnext": hi < f.rules}})
	}))
	mux.HandleFunc("GET /api/v5/license", auth(func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprint(w, f.license)
	}))
	mux.HandleFunc("PUT /api/v5/license/setting", auth(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"code":"BAD_REQUEST","message":{"reason":"Bad license setting"}}`)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

func newClient(t *testing.T, url, password string) *emqx.Client {
	t.Helper()
	hc := transport.New(transport.Options{})
	t.Cleanup(hc.CloseIdleConnections)
	c, err := emqx.New(emqx.Config{APIURL: url, Username: "admin", Password: secretOf(password), HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLogin(t *testing.T) {
	_, srv := newFake(t)
	tests := []struct {
		name     string
		password string
		wantAuth bool
	}{
		{"right password", "public", false},
		{"wrong password", "nope", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := newClient(t, srv.URL, tc.password).Login(t.Context())
			if got := errors.Is(err, emqx.ErrAuthFailed); got != tc.wantAuth {
				t.Fatalf("ErrAuthFailed = %v, want %v (err %v)", got, tc.wantAuth, err)
			}
			if !tc.wantAuth && info.Version != "5.8.9" {
				t.Fatalf("version = %q", info.Version)
			}
		})
	}
}

func TestTokenRenewal(t *testing.T) {
	for _, code := range []string{emqx.CodeTokenTimeOut, emqx.CodeBadToken} {
		t.Run(code, func(t *testing.T) {
			f, srv := newFake(t)
			c := newClient(t, srv.URL, "public")
			if _, err := c.Nodes(t.Context()); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			f.expireOn = code
			f.mu.Unlock()
			nodes, err := c.Nodes(t.Context())
			if err != nil {
				t.Fatalf("nodes after %s: %v", code, err)
			}
			if len(nodes) != 2 || nodes[0].Uptime != 5000 || nodes[1].NodeStatus != "stopped" {
				t.Fatalf("nodes = %+v", nodes)
			}
			if f.logins != 2 {
				t.Fatalf("logins = %d, want 2 (first call, then renewal)", f.logins)
			}
		})
	}
}

func TestRulesPaging(t *testing.T) {
	const l = emqx.RulesPageLimit
	tests := []struct{ rules int }{{0}, {1}, {l}, {l + 1}, {2*l + 50}}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.rules), func(t *testing.T) {
			f, srv := newFake(t)
			f.rules = tc.rules
			rules, err := newClient(t, srv.URL, "public").Rules(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(rules) != tc.rules {
				t.Fatalf("got %d rules, want %d", len(rules), tc.rules)
			}
			if tc.rules > 0 && rules[tc.rules-1].ID != fmt.Sprintf("rule_%d", tc.rules-1) {
				t.Fatalf("last rule = %q", rules[tc.rules-1].ID)
			}
		})
	}
}

func TestLicenseLimitByVersion(t *testing.T) {
	tests := []struct {
		name, body string
		want       int
	}{
		{"5.7 max_connections only", `{"customer_type":3,"max_connections":30}`, 30},
		{"5.8.5+ max_sessions", `{"customer_type":3,"max_connections":30,"max_sessions":40}`, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			f.license = tc.body
			l, err := newClient(t, srv.URL, "public").License(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if l.Limit() != tc.want {
				t.Fatalf("limit = %d, want %d", l.Limit(), tc.want)
			}
		})
	}
}

func TestAPIErrorWithObjectMessage(t *testing.T) {
	_, srv := newFake(t)
	_, err := newClient(t, srv.URL, "public").SetDynamicMaxConnections(t.Context(), 5)
	var apiErr *emqx.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Code != "BAD_REQUEST" {
		t.Fatalf("err = %v", err)
	}
	if apiErr.Message != `{"reason":"Bad license setting"}` {
		t.Fatalf("message = %q", apiErr.Message)
	}
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"token":"x","version":"5.8.9"}`)
	}))
	defer srv.Close()
	for _, insecure := range []bool{false, true} {
		t.Run("insecure="+strconv.FormatBool(insecure), func(t *testing.T) {
			hc := transport.New(transport.Options{InsecureSkipVerify: insecure})
			defer hc.CloseIdleConnections()
			c, err := emqx.New(emqx.Config{APIURL: srv.URL, Username: "admin", Password: "p", HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Login(t.Context())
			if insecure && err != nil {
				t.Fatalf("insecure login: %v", err)
			}
			if !insecure && !transport.IsTLSError(err) {
				t.Fatalf("want a TLS error, got %v", err)
			}
		})
	}
}

func TestContextCancel(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	c := newClient(t, srv.URL, "public")
	ctx, cancel := contextWithCancel(t)
	cancel()
	if _, err := c.Login(ctx); err == nil {
		t.Fatal("login with a cancelled context succeeded")
	}
}
