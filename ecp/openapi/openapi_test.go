package openapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ecpio/ecp/ecp/openapi"
)

// TestDocumentIsConsistent: operation ids are unique, every $ref resolves,
// and the document is valid JSON. That the router and the document agree
// is tested in ecp/app, which owns the router.
func TestDocumentIsConsistent(t *testing.T) {
	doc := openapi.Document()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, part := range strings.Split(string(b), `"$ref":"#/components/schemas/`)[1:] {
		name, _, _ := strings.Cut(part, `"`)
		if _, ok := schemas[name]; !ok {
			t.Errorf("$ref to missing schema %s", name)
		}
	}
	ids := map[string]bool{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			id := op.(map[string]any)["operationId"].(string)
			if ids[id] {
				t.Errorf("operationId %s of %s %s is not unique", id, method, path)
			}
			ids[id] = true
		}
	}
	if len(ids) != len(openapi.Operations()) {
		t.Fatalf("%d operations in the document, %d listed", len(ids), len(openapi.Operations()))
	}
}

// TestClusterListsDocumentPaging: both cluster lists name their paging
// and filter parameters and the page fields of the reply.
func TestClusterListsDocumentPaging(t *testing.T) {
	doc := openapi.Document()
	paths := doc["paths"].(map[string]any)
	for _, path := range []string{"/api/v1/clusters", "/api/v1/projects/{project}/clusters"} {
		get := paths[path].(map[string]any)["get"].(map[string]any)
		got := map[string]bool{}
		for _, p := range get["parameters"].([]any) {
			if p := p.(map[string]any); p["in"] == "query" {
				got[p["name"].(string)] = true
			}
		}
		for _, name := range []string{"limit", "pageToken", "q", "state"} {
			if !got[name] {
				t.Errorf("GET %s does not document ?%s", path, name)
			}
		}
	}
	list := doc["components"].(map[string]any)["schemas"].(map[string]any)["ClusterList"].(map[string]any)["properties"].(map[string]any)
	for _, field := range []string{"items", "nextPageToken", "prevPageToken", "total", "stateCounts"} {
		if list[field] == nil {
			t.Errorf("ClusterList lacks %s", field)
		}
	}
}
