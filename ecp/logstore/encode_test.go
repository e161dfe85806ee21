package logstore

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestAppendDocumentMatchesEncodingJSON: the hand-written encoder gives the
// document encoding/json gives, tricky strings included.
func TestAppendDocumentMatchesEncodingJSON(t *testing.T) {
	cases := []struct {
		name string
		d    document
	}{
		{"plain", document{Time: "2026-01-01T00:00:00.000000000Z", Message: "m", Level: "warning", Project: "p", Cluster: "c",
			Node: "emqx@h", Raw: "raw", File: "emqx.log.1", Offset: 42, Fields: map[string]string{"msg": "m", "tag": "AUTHZ"}, ID: "abc"}},
		{"empty optional fields", document{Time: "t", Project: "p", Cluster: "c", ID: "x"}},
		{"escapes", document{Time: "t", Message: "quote \" backslash \\ tab \t nl \n cr \r bell \a <html> & é 日本 \u2028\u2029",
			Raw: "bad utf8 \xff\xfe end", Project: "p", Cluster: "c", Offset: -1, Fields: map[string]string{"k\"ey": "v\x00al"}, ID: "x"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := appendDocument(nil, &tc.d)
			want, err := json.Marshal(tc.d)
			if err != nil {
				t.Fatal(err)
			}
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("not JSON: %s: %v", got, err)
			}
			_ = json.Unmarshal(want, &w)
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}
