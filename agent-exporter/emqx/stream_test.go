package emqx_test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/emqx-sim/sim"
)

// TestRepliesReadToTheEnd: the client decodes each reply as it arrives
// (a reply of 1,050 rules, and its rule counters in the Prometheus text
// format, are many times its read buffer) and still reads every reply to
// its end, so a collection's calls share one connection to EMQX.
func TestRepliesReadToTheEnd(t *testing.T) {
	opts := sim.DefaultOptions()
	opts.Rules, opts.Connectors = emqx.RulesPageLimit+50, 300
	s, err := sim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	cl := newClient(t, srv.URL, sim.DefaultPassword)
	ctx := t.Context()
	for range 2 {
		rules, err := cl.Rules(ctx)
		if err != nil || len(rules) != opts.Rules {
			t.Fatalf("rules: %d, %v", len(rules), err)
		}
		all, err := cl.AllRuleMetrics(ctx)
		if err != nil || len(all) != opts.Rules {
			t.Fatalf("all rule metrics: %d, %v", len(all), err)
		}
		conn, err := cl.Connectors(ctx)
		if err != nil || len(conn) != opts.Connectors {
			t.Fatalf("connectors: %d, %v", len(conn), err)
		}
		if _, err := cl.Actions(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.NodeCPU(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.License(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("the calls opened %d connections to EMQX, want 1 (a reply left unread)", n)
	}
}

// TestActionsFromSummary: actions and sources are read from
// /actions_summary and /sources_summary where EMQX has them (5.8.5+),
// without each item's configuration, and the items are those of
// /actions and /sources; an older EMQX, which answers them 404, is read
// from /actions and /sources, asked for the summary once only.
func TestActionsFromSummary(t *testing.T) {
	for _, version := range []string{"5.8.9", "5.8.1"} {
		t.Run(version, func(t *testing.T) {
			opts := sim.DefaultOptions()
			opts.Version, opts.Connectors = version, 20
			s, err := sim.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			calls := map[string]int{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				calls[strings.TrimPrefix(r.URL.Path, emqx.BasePath)]++
				mu.Unlock()
				s.Handler().ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			cl := newClient(t, srv.URL, sim.DefaultPassword)
			var first []emqx.Resource
			for range 2 {
				actions, err := cl.Actions(t.Context())
				if err != nil || len(actions) != opts.Connectors {
					t.Fatalf("actions: %d, %v", len(actions), err)
				}
				if _, err := cl.Sources(t.Context()); err != nil {
					t.Fatal(err)
				}
				first = actions
			}
			summary := version == "5.8.9"
			want := map[string]int{"/actions_summary": 2, "/sources_summary": 2}
			if !summary {
				want = map[string]int{"/actions_summary": 1, "/actions": 2, "/sources_summary": 1, "/sources": 2}
			}
			for path, n := range want {
				if calls[path] != n {
					t.Errorf("%s called %d times, want %d (all calls: %v)", path, calls[path], n, calls)
				}
			}
			if summary {
				// The same items as the full list.
				if all := fullList(t, srv.URL, "/actions"); !slices.Equal(first, all) {
					t.Fatalf("summary %+v\nfull list %+v", first, all)
				}
			}
		})
	}
}

// fullList reads path of the simulator at url with encoding/json.
func fullList(t *testing.T, url, path string) []emqx.Resource {
	t.Helper()
	login, err := json.Marshal(map[string]string{"username": sim.DefaultUsername, "password": sim.DefaultPassword})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+emqx.BasePath+"/login", "application/json", bytes.NewReader(login))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	err = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+emqx.BasePath+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []emqx.Resource
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}
