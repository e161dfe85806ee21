package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// APIError is an error reply of /api/v1, as the console shows it.
type APIError struct {
	Status  int
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Field   string         `json:"field"`
	Details map[string]any `json:"-"`
}

func (e *APIError) Error() string { return e.Message }

// recorder is the ResponseWriter of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}

// call runs one /api/v1 request in-process on behalf of the caller of r (its
// principal is in r's context) and decodes the reply into out. Error replies
// come back as *APIError.
func (c *Console) call(r *http.Request, method, apiPath string, body, out any) (*recorder, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, apiPath, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.Context(), method, "http://ecp/api/v1"+apiPath, rd)
	if err != nil {
		return nil, fmt.Errorf("build %s %s: %w", method, apiPath, err)
	}
	req.RemoteAddr = r.RemoteAddr
	req.Header.Set("User-Agent", "ecp-console")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := &recorder{header: http.Header{}}
	c.opts.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.status >= 400 {
		var env struct {
			Error json.RawMessage `json:"error"`
		}
		apiErr := &APIError{Status: rec.status, Message: http.StatusText(rec.status)}
		if json.Unmarshal(rec.body.Bytes(), &env) == nil && env.Error != nil {
			_ = json.Unmarshal(env.Error, apiErr)
			_ = json.Unmarshal(env.Error, &apiErr.Details)
		}
		return rec, apiErr
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return rec, fmt.Errorf("decode reply of %s %s: %w", method, apiPath, err)
		}
	}
	return rec, nil
}

// get is call for reads.
func (c *Console) get(r *http.Request, apiPath string, out any) error {
	_, err := c.call(r, http.MethodGet, apiPath, nil, out)
	return err
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func pathEscape(s string) string { return url.PathEscape(s) }
