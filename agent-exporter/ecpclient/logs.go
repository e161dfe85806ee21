package ecpclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/ecpio/ecp/agentproto"
)

// SendLogs posts a log batch (agentproto.PathLogs); body is the JSON of an
// agentproto.LogBatch, encoded once by the caller and sent again as is on
// every retry. It returns nil only when ecp acknowledged the batch as
// stored; a 429/503 is an *APIError whose RetryAfter says when to try
// again.
func (c *Client) SendLogs(ctx context.Context, body []byte) (agentproto.LogBatchResponse, error) {
	var out agentproto.LogBatchResponse
	u := *c.base
	u.Path += agentproto.PathLogs
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return out, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.credential.Reveal())
	resp, err := c.hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("ecp POST %s: %w", agentproto.PathLogs, err)
	}
	defer resp.Body.Close()
	reply, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return out, fmt.Errorf("reading ecp %s: %w", agentproto.PathLogs, err)
	}
	if resp.StatusCode != http.StatusOK {
		return out, apiError(resp, reply)
	}
	if err := jsonv2.Unmarshal(reply, &out); err != nil {
		return out, fmt.Errorf("decoding ecp %s: %w", agentproto.PathLogs, err)
	}
	return out, nil
}

// apiError reads ecp's error envelope like the other calls do.
func apiError(resp *http.Response, body []byte) error {
	apiErr := &APIError{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get(agentproto.HeaderRetryAfter))}
	var eb agentproto.ErrorBody
	if jsonv2.Unmarshal(body, &eb) == nil {
		apiErr.Code, apiErr.Message, apiErr.Field = eb.Error.Code, eb.Error.Message, eb.Error.Field
	}
	return apiErr
}
