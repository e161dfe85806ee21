package console

import (
	"net/http"

	"github.com/gorilla/mux"
)

// clusterLink answers /clusters/{id}, the address alerts link to (rules
// know the cluster, not the console's URL layout): it looks the entry up
// with the caller's rights and redirects to its page in its current
// project, so an alert raised before a transfer still leads to it.
func (c *Console) clusterLink(w http.ResponseWriter, r *http.Request) error {
	ac, err := c.access(r)
	if err != nil {
		return err
	}
	cl, err := c.opts.Clusters.Get(r.Context(), ac, mux.Vars(r)["id"])
	if err != nil {
		return serviceError(err)
	}
	http.Redirect(w, r, "/projects/"+pathEscape(cl.Project)+"/clusters/"+pathEscape(cl.ID), http.StatusSeeOther)
	return nil
}
