package fleet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// reportBodies are bodies on which encoding/json/v2 and encoding/json are
// known or feared to differ, and the ordinary ones.
func reportBodies(t testing.TB) []string {
	healthy, err := json.Marshal(agentproto.ReportRequest{CollectedAt: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC),
		AgentVersion: "1.0.0", AppliedRevision: 7, IntervalSeconds: 15, EMQX: healthy()})
	if err != nil {
		t.Fatal(err)
	}
	abnormal, err := json.Marshal(agentproto.ReportRequest{AgentVersion: "1.0.0", EMQX: agentproto.EMQXStatus{Reachable: true,
		Abnormal: []agentproto.Resource{{Kind: agentproto.KindRule, ID: "rule_1", Status: "failing", Reason: "failed 12"}},
		Problem:  &agentproto.Problem{Code: "QuotaApplyFailed", Message: "m"}}})
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		string(healthy), string(abnormal), "{}", "", " ", "null", "[]", `"x"`, "nul", "{", `{"emqx":`,
		string(healthy) + " ", string(healthy) + "{}", string(healthy) + string(healthy), string(healthy) + "x",
		`{"unknown":1}`, `{"emqx":{"unknown":1}}`, `{"emqx":{"nodes":[{"unknown":1}]}}`,
		// Case: encoding/json matches field names in any case.
		`{"AgentVersion":"1.0.0"}`, `{"EMQX":{"Reachable":true}}`, `{"agentversion":"a","agentVersion":"b"}`,
		// Repeated names: encoding/json keeps the last.
		`{"agentVersion":"a","agentVersion":"b"}`, `{"emqx":{"reachable":true},"emqx":{"version":"5"}}`,
		// Invalid UTF-8 and escapes.
		"{\"agentVersion\":\"\xff\xfe\"}", `{"agentVersion":"\ud800"}`, `{"agentVersion":"\u0000\n"}`, `{"agentVersion":"\x"}`,
		// Numbers.
		`{"appliedRevision":1e3}`, `{"appliedRevision":1.0}`, `{"appliedRevision":-0}`, `{"appliedRevision":9223372036854775808}`,
		`{"appliedRevision":"1"}`, `{"appliedRevision":01}`, `{"intervalSeconds":-1}`, `{"emqx":{"connections":1.5}}`,
		// Nulls and wrong kinds.
		`{"emqx":null}`, `{"emqx":{"problem":null,"nodes":null,"abnormal":null}}`, `{"agentVersion":null}`, `{"appliedRevision":null}`,
		`{"emqx":[]}`, `{"emqx":{"nodes":{}}}`, `{"emqx":{"reachable":"true"}}`, `{"emqx":{"reachable":1}}`, `{"intervalPinned":null}`,
		// Times.
		`{"collectedAt":"2026-11-27T12:00:00Z"}`, `{"collectedAt":"2026-11-27T12:00:00.123456789+01:00"}`,
		`{"collectedAt":"2026-11-27 12:00:00Z"}`, `{"collectedAt":"2026-11-27T12:00:00"}`, `{"collectedAt":"2026-11-27t12:00:00z"}`,
		`{"collectedAt":"2026-11-27T24:00:00Z"}`, `{"collectedAt":"2026-11-27T12:00:00+24:00"}`, `{"collectedAt":"10000-01-01T00:00:00Z"}`,
		`{"collectedAt":"2026-11-27T12:00:00.Z"}`, `{"collectedAt":"2026-11-27T12:00:00,5Z"}`, `{"collectedAt":1}`, `{"collectedAt":null}`,
		`{"emqx":{"startedAt":"0001-01-01T00:00:00Z"}}`, `{"emqx":{"startedAt":""}}`,
		// Deep and large.
		`{"emqx":{"abnormal":[` + strings.Repeat(`{"kind":"rule","id":"r","status":"s"},`, 200) + `{}]}}`,
		`{"agentVersion":"` + strings.Repeat("v", 70<<10) + `"}`,
		`{"emqx":{"version":` + strings.Repeat("[", 20000) + `}}`,
	}
}

// decodeBoth decodes body with decodeReport and with httpapi.Decode, each
// bounded by limit as the route bounds it, and returns what each gave and
// how each refusal reads.
func decodeBoth(t testing.TB, body string, limit int64) (fast, slow agentproto.ReportRequest, fastErr, slowErr string) {
	t.Helper()
	decode := func(f func(*http.Request, *agentproto.ReportRequest) error) (agentproto.ReportRequest, string) {
		r := httptest.NewRequest(http.MethodPost, agentproto.PathReport, strings.NewReader(body))
		r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, limit)
		var req agentproto.ReportRequest
		err := f(r, &req)
		if err == nil {
			return req, ""
		}
		rec := httptest.NewRecorder()
		httpapi.NewAdapter(nil, nil).WriteError(rec, r, err)
		return req, fmt.Sprint(rec.Code, " ", rec.Body.String())
	}
	fast, fastErr = decode(decodeReport)
	slow, slowErr = decode(func(r *http.Request, req *agentproto.ReportRequest) error { return httpapi.Decode(r, req) })
	return fast, slow, fastErr, slowErr
}

// TestDecodeReportAgreesWithDecode: decodeReport (encoding/json/v2 first)
// accepts exactly the reports httpapi.Decode accepts, decodes them to the
// same values, and refuses the others with the same reply.
func TestDecodeReportAgreesWithDecode(t *testing.T) {
	for _, body := range reportBodies(t) {
		for _, limit := range []int64{MaxAgentBody, 64} {
			fast, slow, fastErr, slowErr := decodeBoth(t, body, limit)
			name := body
			if len(name) > 80 {
				name = name[:80] + "…"
			}
			if fastErr != slowErr {
				t.Errorf("body %q (limit %d): decodeReport refused with %q, httpapi.Decode with %q", name, limit, fastErr, slowErr)
			}
			if fastErr == "" && !reflect.DeepEqual(fast, slow) {
				t.Errorf("body %q (limit %d): decodeReport gave %+v, httpapi.Decode %+v", name, limit, fast, slow)
			}
		}
	}
}

// FuzzDecodeReport holds decodeReport to httpapi.Decode on any body:
//
//	go test -run '^$' -fuzz FuzzDecodeReport -fuzztime 60s ./ecp/fleet/
func FuzzDecodeReport(f *testing.F) {
	for _, b := range reportBodies(f) {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, slow, fastErr, slowErr := decodeBoth(t, string(body), MaxAgentBody)
		if fastErr != slowErr {
			t.Fatalf("body %q: decodeReport refused with %q, httpapi.Decode with %q", body, fastErr, slowErr)
		}
		if fastErr == "" && !reflect.DeepEqual(fast, slow) {
			t.Fatalf("body %q: decodeReport gave %+v, httpapi.Decode %+v", body, fast, slow)
		}
	})
}

// BenchmarkDecodeReport compares decoding a report as the fleet does with
// httpapi.Decode.
func BenchmarkDecodeReport(b *testing.B) {
	body := []byte(reportBodies(b)[1])
	for name, f := range map[string]func(*http.Request, *agentproto.ReportRequest) error{
		"decodeReport":   decodeReport,
		"httpapi.Decode": func(r *http.Request, req *agentproto.ReportRequest) error { return httpapi.Decode(r, req) },
	} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			r := httptest.NewRequest(http.MethodPost, agentproto.PathReport, nil)
			for b.Loop() {
				r.Body = io.NopCloser(bytes.NewReader(body))
				var req agentproto.ReportRequest
				if err := f(r, &req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
