package logstore

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCountElasticsearch checks the _count request and reply against
// Elasticsearch's documented shapes ({"count": N, "_shards": …}).
func TestCountElasticsearch(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/ecp-logs-*/_count" || r.URL.Query().Get("allow_no_indices") != "true" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
			return
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(`{"count":42,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0}}`))
	}))
	defer srv.Close()
	q, err := NewQuerier(ReceiverConfig{Type: TypeElasticsearch, URL: srv.URL}, QuerierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n, err := q.Count(t.Context(), Query{Projects: []string{"p1"}, Cluster: "c1", PageToken: "ignored"})
	if err != nil || n != 42 {
		t.Fatalf("Count = %d, %v; want 42", n, err)
	}
	b, _ := json.Marshal(got)
	want := `{"query":{"bool":{"filter":[{"terms":{"project":["p1"]}},{"term":{"cluster":"c1"}}]}}}`
	if string(b) != want {
		t.Fatalf("count body %s, want %s", b, want)
	}
	if _, err := q.Count(t.Context(), Query{}); !errors.Is(err, ErrNoScope) {
		t.Fatalf("Count without scope: %v, want ErrNoScope", err)
	}
}
