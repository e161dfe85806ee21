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
