package fleet

import (
	"bytes"
	"io"
	"net/http"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// A report is decoded at every agent's every interval: with encoding/json
// (httpapi.Decode) it took a ninth of ecp's CPU at 10,000 agents, most of
// it reflection and the decoder's growing buffers. encoding/json/v2's
// decoder (go-json-experiment, as for log batches) does the same work in
// a fraction of that from a pooled buffer. Only its successes are taken:
// a body it refuses is decoded again by httpapi.Decode, which then gives
// the reply it always gave (an unknown field, a wrong type, a body too
// large), and a body v2 refuses and encoding/json accepts (a field name in
// other case, a repeated name, invalid UTF-8) is accepted as before.
// TestDecodeReportAgreesWithDecode holds the two to the same outcome.

// reportBufferMax is the largest buffer kept for the next report: a
// report is a few KiB; one near MaxAgentBody is not worth keeping.
const reportBufferMax = 64 << 10

var reportBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxReusedNodes is the most nodes of a report request kept for the next
// report: clusters are a few nodes; a longer list is not worth keeping.
const maxReusedNodes = 16

// reportRequests keeps report requests and their node slices for the next
// report: the struct and the slice grown node by node were a third of what
// a report allocated (BenchmarkReport).
var reportRequests = sync.Pool{New: func() any { return new(agentproto.ReportRequest) }}

// newReportRequest is a zero report request to decode into, but for the
// capacity of its (empty) node slice.
func newReportRequest() *agentproto.ReportRequest {
	return reportRequests.Get().(*agentproto.ReportRequest)
}

// reuseReportRequest hands req to the next report once nothing holds it.
// It zeroes req and every node its slice can hold, so that nothing of one
// agent's report can reach another's: both decoders append to a slice's
// capacity, and encoding/json (decodeReport's fallback) decodes into the
// element it finds there.
func reuseReportRequest(req *agentproto.ReportRequest) {
	nodes := req.EMQX.Nodes
	if cap(nodes) > maxReusedNodes {
		nodes = nil
	}
	clear(nodes[:cap(nodes)])
	*req = agentproto.ReportRequest{EMQX: agentproto.EMQXStatus{Nodes: nodes[:0]}}
	reportRequests.Put(req)
}

// decodeReport decodes r's body into req, which must be zero (or from
// newReportRequest), as httpapi.Decode would.
func decodeReport(r *http.Request, req *agentproto.ReportRequest) error {
	buf := reportBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= reportBufferMax {
			buf.Reset()
			reportBuffers.Put(buf)
		}
	}()
	_, readErr := buf.ReadFrom(r.Body)
	if readErr == nil && jsonv2.Unmarshal(buf.Bytes(), req, jsonv2.RejectUnknownMembers(true)) == nil {
		return nil
	}
	// Decoded again from what was read, then the read's error: exactly
	// what encoding/json would have seen of the body.
	*req = agentproto.ReportRequest{}
	body := io.Reader(bytes.NewReader(buf.Bytes()))
	if readErr != nil {
		body = io.MultiReader(body, errReader{readErr})
	}
	slow := *r
	slow.Body = io.NopCloser(body)
	return httpapi.Decode(&slow, req)
}

// errReader fails every read with err.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
