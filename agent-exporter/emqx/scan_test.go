package emqx

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/ecpio/ecp/emqx-sim/sim"
)

// scanCases are replies the scanner must read as the JSON v2 decoder
// (lenient) read them into []Resource.
var scanCases = []string{
	`[]`,
	`null`,
	` [ ] `,
	`[null]`,
	`[{"type":"http","name":"h1","enable":true,"status":"connected"}]`,
	// Configuration members of every kind, nested, with escaped quotes
	// and brackets inside strings, around the kept members.
	`[{"url":"http://x/\"]}","headers":{"a":["b",{"c":null}],"d":-1.5e+3},"type":"kafka_producer","ssl":{"enable":false,"ciphers":[]},` +
		`"name":"k\u00e9","enable":false,"status":"disconnected","status_reason":"econnrefused \\ \"x\"","node_status":[{"node":"emqx@a","status":"connected"}],"actions":[]}]`,
	// Escapes, non-ASCII and invalid UTF-8 in kept strings.
	`[{"type":"a\nb","name":"\ud83d\ude00","status":"caf\u00e9","status_reason":"bad ` + "\xff" + ` byte"}]`,
	`[{"name":"été"}]`,
	// Names in another case, with '_' or '-' (MatchCaseInsensitiveNames),
	// an escaped name, duplicates (the last wins), nulls.
	`[{"TYPE":"t","Name":"n","ENABLE":true,"statusReason":"r","status-reason":"r2","st\u0061tus":"connected"}]`,
	`[{"name":"a","name":"b","enable":true,"enable":null,"status":null}]`,
	"[\n\t{\"type\" : \"t\" ,\r\n \"name\":\"n\" }\n]\n",
}

// scanFailures are replies both must refuse.
var scanFailures = []string{
	``,
	`{}`,
	`[{"type":1}]`,
	`[{"enable":"true"}]`,
	`[{"name":"a"}`,
	`[{"name":"a"}]x`,
	`[{"name":"a",}]`,
	`[{"name" "a"}]`,
	`[{"config":{"a":[1,2}}]`,
	`[{"config":"unterminated}]`,
	`[{"name":"a` + "\x01" + `"}]`,
	`[{"name":"\q"}]`,
	`[1]`,
}

// ruleCases are pages of rules the scanner must read as the decoder read
// them (data and meta.hasnext).
var ruleCases = []string{
	`{"data":[],"meta":{"page":1,"limit":1000,"hasnext":false}}`,
	`{"meta":{"hasnext":true},"data":[{"id":"r1","name":"n","enable":true,"description":"d","sql":"SELECT * FROM \"t/#\"","actions":["http:a",{"function":"console","args":{}}],"from":["t/#"],"created_at":"2024-01-01T00:00:00+00:00"},null]}`,
	`{"data":[{"id":"r1"}],"data":[{"id":"r2","ENABLE":true}],"Meta":{"has_next":true}}`,
	`null`,
	`{"data":null,"meta":null}`,
}

func decodeV2(b []byte) ([]Resource, error) {
	var out []Resource
	err := jsonv2.Unmarshal(b, &out, lenient)
	return out, err
}

// scanBytes scans b through a reader of the smallest buffer, so that
// strings and words span reads.
func scanBytes(b []byte) ([]Resource, error) {
	var out []Resource
	err := scanResources(bufio.NewReaderSize(bytes.NewReader(b), 16), &out)
	return out, err
}

func TestScanResourcesAsDecoder(t *testing.T) {
	for _, c := range scanCases {
		want, err := decodeV2([]byte(c))
		if err != nil {
			t.Fatalf("%s: the decoder refused it: %v", c, err)
		}
		got, err := scanBytes([]byte(c))
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c, got, want)
		}
	}
	for _, c := range scanFailures {
		if _, err := decodeV2([]byte(c)); err == nil {
			t.Fatalf("%q: the decoder accepted it", c)
		}
		if got, err := scanBytes([]byte(c)); err == nil {
			t.Errorf("%q: read as %+v, want an error", c, got)
		}
	}
}

func TestScanRulesAsDecoder(t *testing.T) {
	for _, c := range ruleCases {
		var want page[Rule]
		if err := jsonv2.Unmarshal([]byte(c), &want, lenient); err != nil {
			t.Fatalf("%s: the decoder refused it: %v", c, err)
		}
		got, err := scanRulesBytes([]byte(c))
		if err != nil {
			t.Errorf("%s: %v", c, err)
			continue
		}
		if !equalPages(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c, got, want)
		}
	}
	for _, c := range []string{`[]`, `{"data":{}}`, `{"data":[{"id":1}]}`, `{"meta":{"hasnext":"yes"}}`, `{"data":[]`} {
		if got, err := scanRulesBytes([]byte(c)); err == nil {
			t.Errorf("%q: read as %+v, want an error", c, got)
		}
	}
}

func scanRulesBytes(b []byte) (page[Rule], error) {
	var out page[Rule]
	err := scanRules(bufio.NewReaderSize(bytes.NewReader(b), 16), &out)
	return out, err
}

func equalPages(a, b page[Rule]) bool {
	return a.Meta.HasNext == b.Meta.HasNext && len(a.Data) == len(b.Data) && (len(a.Data) == 0 || slices.Equal(a.Data, b.Data))
}

// TestScanResourcesDeep: a configuration nested deeper than the decoder
// allows is refused, without a stack as deep.
func TestScanResourcesDeep(t *testing.T) {
	deep := `[{"c":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}]`
	if _, err := scanBytes([]byte(deep)); err == nil || !strings.Contains(err.Error(), "nested") {
		t.Fatalf("err = %v, want nested too deep", err)
	}
}

// FuzzScanResources: whatever the decoder reads, the scanner reads the
// same; it may accept malformed members it skips, never panics.
func FuzzScanResources(f *testing.F) {
	for _, c := range append(scanCases, scanFailures...) {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := decodeV2(b)
		got, err := scanBytes(b)
		if werr != nil {
			return
		}
		if err != nil {
			t.Fatalf("%q: %v (the decoder read %+v)", b, err, want)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
		}
	})
}

// FuzzScanRules: whatever the decoder reads of a page of rules, the
// scanner reads the same.
func FuzzScanRules(f *testing.F) {
	for _, c := range ruleCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want page[Rule]
		if jsonv2.Unmarshal(b, &want, lenient) != nil {
			return
		}
		got, err := scanRulesBytes(b)
		if err != nil {
			t.Fatalf("%q: %v (the decoder read %+v)", b, err, want)
		}
		if !equalPages(got, want) {
			t.Fatalf("%q:\n got %+v\nwant %+v", b, got, want)
		}
	})
}

// BenchmarkScanResources reads the simulator's /connectors, /actions and
// /actions_summary at 1,000 connectors with the scanner and, for
// comparison, with the JSON v2 decoder it replaced.
func BenchmarkScanResources(b *testing.B) {
	opts := sim.DefaultOptions()
	opts.Connectors = 1000
	s, err := sim.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	b.Cleanup(srv.Close)
	cl, err := New(Config{APIURL: srv.URL, Username: sim.DefaultUsername, Password: sim.DefaultPassword, HTTPClient: srv.Client()})
	if err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/connectors", "/actions", "/actions_summary"} {
		var body []byte
		raw := rawReply{decode: func(_ string, r *bufio.Reader) (err error) {
			body, err = io.ReadAll(r)
			return err
		}}
		if err := cl.call(b.Context(), http.MethodGet, path, nil, nil, &raw); err != nil {
			b.Fatal(err)
		}
		b.Run(path[1:]+"/scanner", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			r := bufio.NewReaderSize(nil, readerSize)
			for b.Loop() {
				r.Reset(bytes.NewReader(body))
				var out []Resource
				if err := scanResources(r, &out); err != nil || len(out) != opts.Connectors {
					b.Fatal(len(out), err)
				}
			}
		})
		b.Run(path[1:]+"/decoder", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			r := bufio.NewReaderSize(nil, readerSize)
			for b.Loop() {
				r.Reset(bytes.NewReader(body))
				var out []Resource
				if err := jsonv2.UnmarshalRead(r, &out, lenient); err != nil || len(out) != opts.Connectors {
					b.Fatal(len(out), err)
				}
			}
		})
	}
}
