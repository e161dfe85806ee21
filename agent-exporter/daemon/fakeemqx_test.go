package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeEMQX is the few EMQX v5 calls the agent makes, with a licence whose
// dynamic_max_connections can be changed behind the agent's back (as an
// operator would on EMQX's dashboard).
type fakeEMQX struct {
	URL string

	mu           sync.Mutex
	customerType int
	dynamic      int
	refusePut    bool
	tokens       map[string]bool
}

func startEMQX(t *testing.T) *fakeEMQX {
	t.Helper()
	f := &fakeEMQX{customerType: 3, dynamic: 25, tokens: map[string]bool{}}
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
		tok := fmt.Sprintf("jwt-%d", len(f.tokens))
		f.tokens[tok] = true
		f.mu.Unlock()
		fmt.Fprintf(w, `{"token":%q,"version":"5.8.9","license":{"edition":"ee"},"role":"administrator"}`, tok)
	})
	auth := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			f.mu.Lock()
			ok := f.tokens[tok]
			f.mu.Unlock()
			if !ok {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"code":"BAD_TOKEN","message":"Get token failed"}`)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /api/v5/nodes", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `[{"node":"emqx@10.0.0.1","node_status":"running","version":"5.8.9","edition":"Enterprise","role":"core","uptime":5120000,"connections":120,"live_connections":118},`+
			`{"node":"emqx@10.0.0.2","node_status":"running","version":"5.8.9","edition":"Enterprise","role":"core","uptime":4000000,"connections":30,"live_connections":29}]`)
	}))
	mux.HandleFunc("GET /api/v5/license", auth(func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		fmt.Fprintf(w, `{"customer":"x","type":"official","customer_type":%d,"expiry_at":"2029-04-17","expiry":false,"max_connections":%d,"max_sessions":%d}`,
			f.customerType, f.dynamic, f.dynamic)
	}))
	setting := func(w http.ResponseWriter) {
		if f.customerType == 3 {
			fmt.Fprintf(w, `{"connection_low_watermark":"75%%","connection_high_watermark":"80%%","dynamic_max_connections":%d}`, f.dynamic)
			return
		}
		fmt.Fprint(w, `{"connection_low_watermark":"75%","connection_high_watermark":"80%"}`)
	}
	mux.HandleFunc("GET /api/v5/license/setting", auth(func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		setting(w)
	}))
	mux.HandleFunc("PUT /api/v5/license/setting", auth(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			Dynamic *int `json:"dynamic_max_connections"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.refusePut {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"code":"BAD_REQUEST","message":"Bad license setting"}`)
			return
		}
		if b.Dynamic != nil && f.customerType == 3 {
			f.dynamic = *b.Dynamic
		}
		setting(w)
	}))
	mux.HandleFunc("GET /api/v5/rules", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"data":[{"id":"rule_0ab1","name":"to_http","enable":true},{"id":"rule_0ab2","name":"off","enable":false}],"meta":{"page":1,"limit":100,"hasnext":false,"count":2}}`)
	}))
	mux.HandleFunc("GET /api/v5/rules/{id}/metrics", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"id":"rule_0ab1","metrics":{"matched":10,"passed":10,"failed":0,"actions.total":10,"actions.success":10,"actions.failed":0}}`)
	}))
	mux.HandleFunc("GET /api/v5/connectors", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `[{"type":"http","name":"my_http","enable":true,"status":"connected"},{"type":"kafka_producer","name":"k1","enable":true,"status":"disconnected","status_reason":"econnrefused"}]`)
	}))
	mux.HandleFunc("GET /api/v5/actions", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `[{"type":"http","name":"my_action","enable":true,"status":"connected"}]`)
	}))
	mux.HandleFunc("GET /api/v5/sources", auth(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `[]`)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// SetDynamic changes dynamic_max_connections as EMQX's dashboard would.
func (f *fakeEMQX) SetDynamic(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dynamic = n
}

// Dynamic returns dynamic_max_connections.
func (f *fakeEMQX) Dynamic() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dynamic
}

func (f *fakeEMQX) set(fn func(f *fakeEMQX)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}
