package app

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/seal"
)

// TestSec08SecretsAreSealedInEtcd: issue #11 finding 8: a local etcd
// client read the Alertmanager webhook bearer token and the log receiver's
// password in clear (and a project's webhook URLs, which may carry one). Whoever reads etcd's values (a backup, a snapshot, a
// process past etcd's TLS) must see neither; ecp itself, restarted on the
// same data directory, still uses both.
func TestSec08SecretsAreSealedInEtcd(t *testing.T) {
	const password = "vl-password-s3cr3t-0815"
	var (
		mu   sync.Mutex
		seen []string
	)
	vl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); ok {
			mu.Lock()
			seen = append(seen, pw)
			mu.Unlock()
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		_, _ = w.Write([]byte(`{"version":{"number":"8.9.0"}}`))
	}))
	t.Cleanup(vl.Close)

	opts := testOptions(t)
	h := start(t, opts)
	admin := h.login("admin", testAdminPassword)
	h.must(200, "PUT", "/api/v1/system/log-receiver", admin, map[string]any{
		"type": "victorialogs", "url": vl.URL, "username": "ecp", "password": password})
	// A webhook URL may carry its credential (as Slack's do).
	const hookSecret = "B0000000/XXXXhooksecret"
	_, project := setupProject(t, h)
	h.must(200, "PUT", "/api/v1/projects/"+project+"/alert-settings", admin, map[string]any{
		"enabled": true, "triggerCount": 1, "recoveryCount": 1, "severity": "warning",
		"webhooks": []map[string]string{{"url": "https://203.0.113.7/services/T0000000/" + hookSecret}}})
	if body := string(h.must(200, "GET", "/api/v1/projects/"+project+"/alert-settings", admin, nil).body); !strings.Contains(body, hookSecret) {
		t.Fatalf("the project's admin no longer sees the webhook URL: %s", body)
	}

	resp, err := h.app.EtcdClient().Get(t.Context(), "/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var sawToken, sawReceiver bool
	for _, kv := range resp.Kvs {
		k, v := string(kv.Key), string(kv.Value)
		if strings.Contains(v, password) {
			t.Errorf("etcd key %s holds the log receiver's password in clear: %s", k, v)
		}
		if strings.Contains(v, hookSecret) {
			t.Errorf("etcd key %s holds a webhook URL's credential in clear: %s", k, v)
		}
		// Every webhook token starts so (alerts.WebhookToken).
		if strings.Contains(v, "ecpam_") {
			t.Errorf("etcd key %s holds the Alertmanager webhook token in clear: %s", k, v)
		}
		sawToken = sawToken || k == "/ecp/alerts/webhook-token"
		sawReceiver = sawReceiver || k == "/ecp/logs/receiver"
	}
	if !sawToken || !sawReceiver {
		t.Fatalf("etcd lacks the webhook token (%v) or the log receiver (%v): the test looks at the wrong keys", sawToken, sawReceiver)
	}

	// Restarted on the same data directory, ecp opens what it sealed.
	h.stop()
	h = start(t, opts)
	mu.Lock()
	seen = nil
	mu.Unlock()
	admin = h.login("admin", testAdminPassword)
	h.must(200, "POST", "/api/v1/system/log-receiver/test", admin, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != password {
		t.Fatalf("after a restart the log store got passwords %q, want %q", seen, password)
	}
}

// TestSec08ReplicaWithAnotherKeyRefusesToStart: a replica whose
// --secrets.key-file differs from the one etcd's secrets were sealed with
// says so at start, instead of failing on each secret later.
func TestSec08ReplicaWithAnotherKeyRefusesToStart(t *testing.T) {
	first := start(t, testOptions(t))
	opts := testOptions(t) // another data dir: another generated key
	opts.EtcdEndpoints = []string{first.app.EtcdEndpoint()}
	opts.EtcdTLS = first.app.EtcdTLS()
	_, err := New(opts, discardLogger(), newRegistry())
	if err == nil || !strings.Contains(err.Error(), "same --secrets.key-file") {
		t.Fatalf("New with another secrets key: %v, want a refusal naming --secrets.key-file", err)
	}
	// With the first replica's key it starts.
	opts.SecretsKeyFile = filepath.Join(first.app.opts.DataDir, seal.DefaultKeyFile)
	second := start(t, opts)
	second.must(200, "GET", "/api/v1/licence", second.login("admin", testAdminPassword), nil)
}

// TestSecretsStoredInClearBeforeSealingAreSealedAtStart: an etcd written
// by an ecp that did not seal yet keeps working, and its secrets are
// sealed by the first start of this one.
func TestSecretsStoredInClearBeforeSealingAreSealedAtStart(t *testing.T) {
	const (
		token    = "ecpam_written-in-clear-by-an-older-ecp"
		password = "older-password-in-clear"
	)
	var (
		mu   sync.Mutex
		seen []string
	)
	vl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); ok {
			mu.Lock()
			seen = append(seen, pw)
			mu.Unlock()
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		_, _ = w.Write([]byte(`{"version":{"number":"8.9.0"}}`))
	}))
	t.Cleanup(vl.Close)
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	legacy := map[string]string{
		"/ecp/alerts/webhook-token": token,
		"/ecp/logs/receiver":        `{"type":"victorialogs","url":"` + vl.URL + `","username":"ecp","password":"` + password + `"}`,
	}
	for k, v := range legacy {
		if _, err := cli.Put(t.Context(), k, v); err != nil {
			t.Fatal(err)
		}
	}
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	h := start(t, opts)
	for k, clear := range legacy {
		resp, err := cli.Get(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		if v := string(resp.Kvs[0].Value); v == clear || strings.Contains(v, password) || strings.Contains(v, token) {
			t.Errorf("%s is still in clear after a start: %s", k, v)
		}
	}
	got, err := alerts.WebhookToken(t.Context(), h.app.EtcdClient(), h.app.SecretsKey())
	if err != nil || got.Reveal() != token {
		t.Fatalf("webhook token after sealing: %v; want the one stored in clear", err)
	}
	h.must(200, "POST", "/api/v1/system/log-receiver/test", h.login("admin", testAdminPassword), nil)
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 || seen[len(seen)-1] != password {
		t.Fatalf("the log store got passwords %q, want the one stored in clear", seen)
	}
}
