package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// post sends body to the fleet's agent API as an agent holding cred and
// checks what every answer must be: a status the agent can act on (never
// 5xx: hostile input is the agent's fault, not ecp's) and, for an error,
// the agent protocol's error envelope with a code and a message.
func post(t testing.TB, base, path, cred string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode >= 500 {
		t.Fatalf("POST %s with %q = %d %s: hostile agent input must be a 4xx", path, body, resp.StatusCode, b)
	}
	if resp.StatusCode >= 400 {
		var eb agentproto.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("POST %s = %d %s: not the error envelope (%v)", path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, b
}

// checkStored asserts that what a cluster's status keeps of agent input
// is bounded and printable as sent: the agent is not trusted to size what
// ecp stores in etcd and shows in the console.
func checkStored(t *testing.T, st Status) {
	t.Helper()
	for _, f := range []struct {
		name, v string
		limit   int
	}{
		{"version", st.Version, maxShortField}, {"agentVersion", st.AgentVersion, maxShortField},
		{"hostname", st.Hostname, maxShortField}, {"dashboardUrl", st.DashboardURL, maxURLField},
		{"logCollection.dir", st.RegisteredLogCollection.Dir, maxURLField},
	} {
		if len(f.v) > f.limit {
			t.Errorf("stored %s is %d bytes, over the %d an agent may send", f.name, len(f.v), f.limit)
		}
		if !utf8.ValidString(f.v) {
			t.Errorf("stored %s %q is not valid UTF-8", f.name, f.v)
		}
	}
	if r := st.StateReason; r != nil && (len(r.Code) > maxProblemCode || len(r.Message) > maxProblemMessage) {
		t.Errorf("stored state reason is %d+%d bytes, over %d+%d", len(r.Code), len(r.Message), maxProblemCode, maxProblemMessage)
	}
}

// FuzzAgentRegister sends hostile register bodies, each with a fresh valid
// token put in (so the fields reach the store, not just the decoder): the
// answer is 200 or a 4xx in the envelope, and what is stored is bounded.
func FuzzAgentRegister(f *testing.F) {
	for _, s := range []string{
		`{"agentVersion":"1.0.0","hostname":"broker-1","dashboardUrl":"http://broker-1:18083","apiUrl":"http://broker-1:18083/api/v5","logCollection":{"enabled":true,"dir":"/opt/emqx/log"}}`,
		`{"agentVersion":"` + strings.Repeat("v", 300) + `"}`,
		`{"hostname":"\u202eevil\u0000","dashboardUrl":"javascript:alert(1)"}`,
		`{"logCollection":{"enabled":"yes"}}`,
		`{"token":null,"extra":1}`,
		`{"agentVersion":"1"} {}`,
		`[]`, `null`, `"`, ``,
	} {
		f.Add([]byte(s))
	}
	cli := etcdtest.Client(f)
	tf := startFleet(f, cli, newClock(), "fuzz")
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		n++
		id := "fuzz-register-" + strconv.Itoa(n)
		putSpec(t, cli, id, 10)
		tok, _, err := tf.IssueRegistration(t.Context(), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// A JSON object gets the valid token; anything else goes as is.
		var obj map[string]json.RawMessage
		if json.Unmarshal(body, &obj) == nil && obj != nil {
			obj["token"], _ = json.Marshal(tok.Reveal())
			if body, err = json.Marshal(obj); err != nil {
				t.Fatal(err)
			}
		}
		status, reply := post(t, tf.url, agentproto.PathRegister, "", body)
		if status != http.StatusOK {
			return
		}
		var rr agentproto.RegisterResponse
		if err := json.Unmarshal(reply, &rr); err != nil || rr.Credential == "" || rr.ClusterID != id {
			t.Fatalf("register = 200 %s: want a credential for cluster %s (%v)", reply, id, err)
		}
		st, err := tf.Status(context.WithoutCancel(t.Context()), id)
		if err != nil {
			t.Fatal(err)
		}
		checkStored(t, st)
	})
}

// FuzzAgentReport sends hostile report bodies as a registered agent: the
// answer is 200 or a 4xx in the envelope, and whatever a 200 stored is
// bounded.
func FuzzAgentReport(f *testing.F) {
	healthyBody, err := json.Marshal(agentproto.ReportRequest{CollectedAt: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC), AgentVersion: "1.0.0", EMQX: healthy()})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(healthyBody),
		`{"agentVersion":"1.0.0","emqx":{"reachable":false,"problem":{"code":"EMQXAuthFailed","message":"401 from /api/v5/nodes"}}}`,
		`{"emqx":{"reachable":true,"version":"` + strings.Repeat("5", 5000) + `"}}`,
		`{"emqx":{"reachable":false,"problem":{"code":"` + strings.Repeat("A", 65) + `"}}}`,
		`{"emqx":{"reachable":false,"problem":{"code":"x y","message":"m"}}}`,
		`{"emqx":{"reachable":true,"nodes":[{"name":"a","status":"running"},{}],"connections":-1,"maxConnections":9223372036854775807}}`,
		`{"emqx":{"startedAt":"0001-01-01T00:00:00Z"}}`,
		`{"emqx":{"startedAt":"not a time"}}`,
		`{"unknown":1}`, `{}`, `[]`, `nul`,
	} {
		f.Add([]byte(s))
	}
	cli := etcdtest.Client(f)
	tf := startFleet(f, cli, newClock(), "fuzz")
	const id = "fuzz-report"
	putSpec(f, cli, id, 10)
	tok, _, err := tf.IssueRegistration(f.Context(), id, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	regBody, err := json.Marshal(agentproto.RegisterRequest{Token: tok.Reveal(), AgentVersion: "1.0.0"})
	if err != nil {
		f.Fatal(err)
	}
	status, reply := post(f, tf.url, agentproto.PathRegister, "", regBody)
	if status != http.StatusOK {
		f.Fatalf("register = %d %s", status, reply)
	}
	var rr agentproto.RegisterResponse
	if err := json.Unmarshal(reply, &rr); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		status, reply := post(t, tf.url, agentproto.PathReport, rr.Credential, body)
		switch status {
		case http.StatusOK:
			var out agentproto.ReportResponse
			if err := json.Unmarshal(reply, &out); err != nil || out.ReportIntervalSeconds <= 0 {
				t.Fatalf("report = 200 %s: want the report reply (%v)", reply, err)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("report %q = %d %s, want 200, 400 or 413: the agent is registered", body, status, reply)
		}
		st, err := tf.Status(context.WithoutCancel(t.Context()), id)
		if err != nil {
			t.Fatal(err)
		}
		checkStored(t, st)
	})
}
