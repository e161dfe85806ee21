package fleet

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ecpio/ecp/agentproto"
)

// pollQueries are raw queries an agent, or anyone, may send: well formed,
// repeated, escaped, and broken in each way url.ParseQuery knows.
func pollQueries() []string {
	return []string{
		"", "after=7&timeout=15s", "timeout=15s&after=7", "after=&timeout=", "after", "after=7=8",
		"after=1&after=2", "after=&after=2", "timeout=1s&timeout=x", "&&after=3&&", "=&=3&after=4",
		"after=%37", "%61fter=5", "after=%", "after=%zz&after=6", "%zz=1&after=6", "after=1+2", "timeout=1+s",
		"after=1;timeout=2s", "after=1&x=;&timeout=2s", "timeout=2s;", "af%74er=9&timeout=3%73", "after=%2B1",
		"AFTER=1&Timeout=2s", "after=-1", "timeout=-1s", "after=9223372036854775808", "timeout=1h", "after= 1",
		"after=\x00", "after=%00", "timeout=%C3%A9", "timeout=\xff", "x=" + strings.Repeat("a", 300) + "&after=1",
		strings.Repeat("&", maxQueryParams-1) + "after=1", strings.Repeat("&", maxQueryParams) + "after=1",
	}
}

// TestQueryValueAsURLQuery holds queryValue to what r.URL.Query().Get,
// which readPollQuery used before, makes of the same query.
func TestQueryValueAsURLQuery(t *testing.T) {
	for _, raw := range pollQueries() {
		checkQueryValue(t, raw)
	}
}

// FuzzQueryValue holds queryValue to url.ParseQuery on any query:
//
//	go test -run '^$' -fuzz FuzzQueryValue -fuzztime 60s ./ecp/fleet/
func FuzzQueryValue(f *testing.F) {
	for _, raw := range pollQueries() {
		f.Add(raw)
	}
	f.Fuzz(checkQueryValue)
}

func checkQueryValue(t *testing.T, raw string) {
	t.Helper()
	want, _ := url.ParseQuery(raw)
	for _, key := range []string{agentproto.QueryAfter, agentproto.QueryTimeout} {
		if got := queryValue(raw, key); got != want.Get(key) {
			t.Fatalf("query %q: queryValue(%q) = %q, url.ParseQuery gives %q", raw, key, got, want.Get(key))
		}
	}
}

// TestPollQueryRefused: a poll or a held report whose ?after= or ?timeout=
// is not what the protocol takes is refused with a 400 naming the
// parameter and what it accepts, and the report is not recorded.
func TestPollQueryRefused(t *testing.T) {
	_, f, a, _ := heldReportAgent(t, newClock())
	afterMsg := "after must be a revision: a non-negative integer"
	timeoutMsg := "timeout must be a Go duration such as 30s"
	for _, c := range []struct{ query, field, message string }{
		{"after=x&timeout=1s", agentproto.QueryAfter, afterMsg},
		{"after=-1", agentproto.QueryAfter, afterMsg},
		{"after=1.5", agentproto.QueryAfter, afterMsg},
		{"after=9223372036854775808", agentproto.QueryAfter, afterMsg},
		{"after=%2D1", agentproto.QueryAfter, afterMsg},
		{"after=x&after=1", agentproto.QueryAfter, afterMsg},
		{"after=0&timeout=15", agentproto.QueryTimeout, timeoutMsg},
		{"timeout=-1s", agentproto.QueryTimeout, timeoutMsg},
		{"timeout=1s+", agentproto.QueryTimeout, timeoutMsg},
		{"timeout=%zz&timeout=x", agentproto.QueryTimeout, timeoutMsg},
	} {
		for _, path := range []string{agentproto.PathDesired, agentproto.PathReport} {
			method := http.MethodGet
			var body any
			if path == agentproto.PathReport {
				method, body = http.MethodPost, agentproto.ReportRequest{AgentVersion: "1.0.0", EMQX: healthy()}
			}
			r := a.do(t, method, path+"?"+c.query, body)
			var eb agentproto.ErrorBody
			if err := json.Unmarshal(r.body, &eb); err != nil {
				t.Fatalf("%s ?%s: %d %s: %v", path, c.query, r.status, r.body, err)
			}
			if r.status != http.StatusBadRequest || eb.Error.Code != "Invalid" || eb.Error.Field != c.field || eb.Error.Message != c.message {
				t.Fatalf("%s ?%s: %d %s, want 400 Invalid field %q: %q", path, c.query, r.status, r.body, c.field, c.message)
			}
		}
	}
	if got := f.status(t, "c1").LastReportAt; !got.IsZero() {
		t.Fatalf("a refused report was recorded at %v", got)
	}
}
