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

// decodeReport decodes r's body into req, which must be zero, as
// httpapi.Decode would.
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
