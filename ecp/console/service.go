package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/tenancy"
)

// The pages moved off in-process HTTP call the API packages' service
// methods with the caller's access instead: the same authorization and
// validation as the routes, without routing, middleware and a JSON round
// trip per call.

// access is the caller's access for this request, with every organization
// and project as of one etcd transaction (tenancy.Authorizer.Snapshot),
// loaded on first use and kept for the rest of the request.
func (c *Console) access(r *http.Request) (*tenancy.Access, error) {
	s := sessionFrom(r.Context())
	if s.access == nil {
		ac, err := c.opts.Authz.Snapshot(r.Context(), s.principal)
		if err != nil {
			return nil, err
		}
		s.access = ac
	}
	return s.access, nil
}

// APIError is a refusal of a service method, as the console shows it:
// what the API's error envelope would say.
type APIError struct {
	Status  int
	Code    string
	Message string
	Field   string
	Details map[string]any
}

func (e *APIError) Error() string { return e.Message }

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func pathEscape(s string) string { return url.PathEscape(s) }

// serviceError turns a service method's refusal into the APIError the
// pages show, as the API's error envelope has it.
func serviceError(err error) error {
	var he *httpapi.Error
	if errors.As(err, &he) {
		// Details is the whole error object, as the API's envelope has it.
		d := map[string]any{"code": he.Code, "message": he.Message}
		if he.Field != "" {
			d["field"] = he.Field
		}
		// As the envelope's JSON has them: the pages read lists as []any
		// of map[string]any, whatever Go types the API built them from.
		if b, err := json.Marshal(he.Details); err == nil {
			_ = json.Unmarshal(b, &d)
		}
		return &APIError{Status: he.Status, Code: he.Code, Message: he.Message, Field: he.Field, Details: d}
	}
	return err
}
