package logs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ecpio/ecp/agentproto"
)

// BenchmarkIngest measures ecp's side of log ingestion in-process: decode
// an agent batch of 2,000 EMQX lines, build the documents and send them as
// one bulk request to a fake VictoriaLogs (so the store's own work is not
// counted).
//
//	go test ./ecp/logs -run '^$' -bench Ingest
func BenchmarkIngest(b *testing.B) {
	f := newFixture(b)
	f.configure()
	const n = 2000
	t0 := time.Now().UTC()
	lines := make([]agentproto.LogEntry, n)
	for i := range lines {
		ts := t0.Add(time.Duration(i) * time.Microsecond)
		fields := map[string]string{"tag": "AUTHZ", "clientid": fmt.Sprintf("client%d", i), "msg": "cannot_publish_to_topic_due_to_not_authorized",
			"peername": "10.1.2.3:4567", "username": "user1", "topic": "devices/1/telemetry", "reason": "not_authorized"}
		raw := ts.Format("2006-01-02T15:04:05.000000-07:00") + " [warning] tag: AUTHZ, clientid: " + fields["clientid"] +
			", msg: cannot_publish_to_topic_due_to_not_authorized, peername: 10.1.2.3:4567, username: user1, topic: devices/1/telemetry, reason: not_authorized"
		lines[i] = agentproto.LogEntry{Time: ts, Level: "warning", Message: fields["msg"], Fields: fields, Raw: raw, File: "emqx.log.1", Offset: int64(i) * 200}
	}
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i], _ = json.Marshal(agentproto.LogBatch{BatchID: fmt.Sprint("bench-", i), Lines: lines})
	}
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest(http.MethodPost, agentproto.PathLogs, bytes.NewReader(bodies[i]))
		req.Header.Set("Authorization", "Bearer agent")
		w := httptest.NewRecorder()
		f.router.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*n), "µs/line")
}
