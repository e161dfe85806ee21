package quota

import (
	"errors"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/httpapi"
)

// Register mounts GET /licence on r (the /api/v1 router). Every signed-in
// user may read it: project admins need the remaining quota to pick a
// cluster's max connections, and the figures name no tenant.
func (g *Ledger) Register(r *mux.Router, a *httpapi.Adapter) {
	r.Handle("/licence", a.Handle(func(w http.ResponseWriter, req *http.Request) error {
		if _, err := auth.Require(req); err != nil {
			return err
		}
		u, err := g.Usage(req.Context())
		if err != nil {
			return err
		}
		return httpapi.JSON(w, http.StatusOK, u)
	})).Methods(http.MethodGet)
}

// APIError turns a *Refusal into the 422 the API answers, with the
// licence's figures as members of the error object; other errors are
// returned unchanged.
func APIError(err error) error {
	var r *Refusal
	if !errors.As(err, &r) {
		return err
	}
	e := httpapi.Refused("%s", r.Error())
	e.Code = "QuotaExceeded"
	e.Field = "maxConnections"
	e.Details = map[string]any{
		"requested": r.Requested, "current": r.Current, "remaining": r.Remaining,
		"ceiling": r.Ceiling, "total": r.Total, "allocated": r.Allocated,
	}
	return e
}
