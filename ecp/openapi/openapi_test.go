package openapi_test

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/alerts"
	ecpauth "github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/fleet"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/logs"
	"github.com/ecpio/ecp/ecp/openapi"
	"github.com/ecpio/ecp/ecp/remotewrite"
	"github.com/ecpio/ecp/rules"
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

// TestOpenAPINullableHasType: Redocly's recommended rules refuse `nullable`
// without `type` (OpenAPI 3.0 ignores it there); Cluster.stateReason had it.
func TestOpenAPINullableHasType(t *testing.T) {
	walk(openapi.Document(), "#", func(path string, m map[string]any) {
		if _, ok := m["nullable"]; ok && m["type"] == nil {
			t.Errorf("%s is nullable without a type", path)
		}
	})
}

// TestOpenAPIInfoNamesLicense: linters warn on a document without one.
func TestOpenAPIInfoNamesLicense(t *testing.T) {
	lic, _ := openapi.Document()["info"].(map[string]any)["license"].(map[string]any)
	if lic["name"] == nil || lic["url"] == nil {
		t.Errorf("info.license = %v, want a name and a url", lic)
	}
}

// TestOpenAPIEveryOperationAnswersSuccessAndClientError: each operation
// documents a 4xx, and a 2xx unless it only redirects, in which case its
// `default` (the error envelope) is what a client decodes otherwise.
// GET /api/v1/openapi.json had no 4xx, the dashboard jump no 2xx.
func TestOpenAPIEveryOperationAnswersSuccessAndClientError(t *testing.T) {
	for path, item := range openapi.Document()["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			var has [6]bool
			for code := range op.(map[string]any)["responses"].(map[string]any) {
				if code != "default" {
					has[code[0]-'0'] = true
				}
			}
			if !has[4] {
				t.Errorf("%s %s documents no 4xx response", method, path)
			}
			if !has[2] && !has[3] {
				t.Errorf("%s %s documents neither a 2xx nor a redirect", method, path)
			}
			if _, ok := op.(map[string]any)["responses"].(map[string]any)["default"]; !ok {
				t.Errorf("%s %s has no default (error envelope) response", method, path)
			}
		}
	}
}

// TestOpenAPIBodyLimits: every route's body is bounded by httpapi (413),
// with the route's own limit where it has one, and a body that does not
// arrive within the read timeout is answered 408. Only the log batches
// documented their 413 before, and none its limit.
func TestOpenAPIBodyLimits(t *testing.T) {
	paths := openapi.Document()["paths"].(map[string]any)
	for _, tc := range []struct {
		method, path string
		limit        int64
		body         bool
	}{
		{"post", "/api/v1/login", ecpauth.MaxLoginBodyBytes, true},
		{"post", "/api/v1/orgs", httpapi.DefaultBodyLimit, true},
		{"get", "/api/v1/licence", httpapi.DefaultBodyLimit, false},
		{"get", openapi.Path, httpapi.DefaultBodyLimit, false},
		{"post", agentproto.PathRegister, fleet.MaxAgentBody, true},
		{"post", agentproto.PathReport, fleet.MaxAgentBody, true},
		{"post", agentproto.PathWrite, remotewrite.DefaultMaxBodyBytes, true},
		{"post", agentproto.PathLogs, logs.DefaultMaxBatchBytes, true},
		{"post", agentproto.PathDashboardSession, httpapi.DefaultBodyLimit, true},
		{"post", alerts.WebhookPath, alerts.MaxWebhookBody, true},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			op, ok := paths[tc.path].(map[string]any)[tc.method].(map[string]any)
			if !ok {
				t.Fatalf("%s %s is not documented", tc.method, tc.path)
			}
			resps := op["responses"].(map[string]any)
			tooLarge, _ := resps["413"].(map[string]any)
			if want := fmt.Sprintf("larger than %d bytes", tc.limit); !strings.Contains(fmt.Sprint(tooLarge["description"]), want) {
				t.Errorf("413 = %v, want a description saying %q", tooLarge, want)
			}
			if _, ok := resps["408"]; ok != tc.body {
				t.Errorf("408 documented: %v, want %v (the operation reads a body: %v)", ok, tc.body, tc.body)
			}
		})
	}
}

// TestOpenAPIBindingHasUserGeneration: role-binding replies carry it.
func TestOpenAPIBindingHasUserGeneration(t *testing.T) {
	binding := openapi.Document()["components"].(map[string]any)["schemas"].(map[string]any)["Binding"].(map[string]any)
	if binding["properties"].(map[string]any)["userGeneration"] == nil {
		t.Error("Binding lacks userGeneration, which POST and GET /role-bindings return")
	}
}

// TestOpenAPIEnumsListEveryConstant: each enum of the document lists every
// constant of the group the code declares, so a state, role or reason
// added in code cannot be missing from the document.
func TestOpenAPIEnumsListEveryConstant(t *testing.T) {
	schemas := openapi.Document()["components"].(map[string]any)["schemas"].(map[string]any)
	prop := func(schema, name string) map[string]any {
		return schemas[schema].(map[string]any)["properties"].(map[string]any)[name].(map[string]any)
	}
	delivery := schemas["AlertSettingsReply"].(map[string]any)["allOf"].([]any)[1].(map[string]any)["properties"].(map[string]any)["status"].(map[string]any)["properties"].(map[string]any)["delivery"].(map[string]any)
	for _, tc := range []struct {
		file, prefix string
		where        map[string]any
	}{
		{"../fleet/status.go", "State", prop("Cluster", "state")},
		{"../fleet/status.go", "Reason", prop("StateReason", "code")},
		{"../../agentproto/agentproto.go", "Problem", prop("StateReason", "code")},
		{"../tenancy/tenancy.go", "Role", prop("BindingRequest", "role")},
		{"../tenancy/tenancy.go", "Role", prop("Binding", "role")},
		{"../alerting/settings.go", "Severity", prop("AlertSettings", "severity")},
		{"../alerts/http.go", "Delivery", delivery},
		{"../alerts/store.go", "State", prop("Alert", "state")},
		{"../alerts/store.go", "End", prop("Alert", "endReason")},
		{"../alerts/silences.go", "Silence", prop("Silence", "state")},
		{"../alerts/storm.go", "Storm", prop("AlertStorm", "state")},
		{"../quota/quota.go", "Quota", prop("ScopeQuota", "limitedBy")},
		{"../logstore/config.go", "Type", prop("LogReceiver", "type")},
	} {
		t.Run(tc.file+" "+tc.prefix, func(t *testing.T) {
			values := stringConsts(t, tc.file, tc.prefix)
			if len(values) == 0 {
				t.Fatalf("no string constants %s* in %s; the scan is broken", tc.prefix, tc.file)
			}
			for _, v := range values {
				// An open set (the reason codes) is listed in the
				// description rather than as an enum.
				if !slices.Contains(anyStrings(tc.where["enum"]), v) && !strings.Contains(fmt.Sprint(tc.where["description"]), v) {
					t.Errorf("%q (%s* in %s) is missing from %v", v, tc.prefix, tc.file, tc.where)
				}
			}
		})
	}
}

// stringConsts returns the values of the string constants named prefix…
// that file declares.
func stringConsts(t *testing.T, file, prefix string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func anyStrings(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		var out []string
		for _, s := range v {
			out = append(out, fmt.Sprint(s))
		}
		return out
	}
	return nil
}

// walk calls fn on every object of the document, with its JSON pointer.
func walk(v any, path string, fn func(string, map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(path, v)
		for k, c := range v {
			walk(c, path+"/"+k, fn)
		}
	case []any:
		for i, c := range v {
			walk(c, path+"/"+strconv.Itoa(i), fn)
		}
	}
}

// TestOpenAPIAlertRulesListTheCatalogue: the alert settings' "rules"
// member has exactly one property per rule of the catalogue, each with the
// threshold range the code enforces, and none for a rule without one.
func TestOpenAPIAlertRulesListTheCatalogue(t *testing.T) {
	schemas := openapi.Document()["components"].(map[string]any)["schemas"].(map[string]any)
	props := schemas["AlertSettings"].(map[string]any)["properties"].(map[string]any)["rules"].(map[string]any)["properties"].(map[string]any)
	if len(props) != len(rules.Catalogue) {
		t.Errorf("rules documents %d rules, the catalogue has %d", len(props), len(rules.Catalogue))
	}
	for _, e := range rules.Catalogue {
		p, ok := props[e.ID].(map[string]any)
		if !ok {
			t.Errorf("rule %s is not documented", e.ID)
			continue
		}
		th, has := p["properties"].(map[string]any)["threshold"].(map[string]any)
		switch {
		case e.Threshold == nil && has:
			t.Errorf("%s documents a threshold it does not have", e.ID)
		case e.Threshold != nil && (!has || th["minimum"] != e.Threshold.Min || th["maximum"] != e.Threshold.Max ||
			!strings.Contains(fmt.Sprint(th["description"]), e.Threshold.Unit)):
			t.Errorf("%s threshold documented as %v, want %v..%v %s", e.ID, th, e.Threshold.Min, e.Threshold.Max, e.Threshold.Unit)
		}
	}
}
