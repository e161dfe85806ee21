package ecpclient

import (
	"context"
	"net/http"

	"github.com/ecpio/ecp/agentproto"
)

// SendLogs posts a log batch (agentproto.PathLogs). It returns nil only when
// ecp acknowledged the batch as stored; a 429/503 is an *APIError whose
// RetryAfter says when to try again.
func (c *Client) SendLogs(ctx context.Context, b agentproto.LogBatch) (agentproto.LogBatchResponse, error) {
	var out agentproto.LogBatchResponse
	err := c.do(ctx, http.MethodPost, agentproto.PathLogs, nil, b, &out, true)
	return out, err
}
