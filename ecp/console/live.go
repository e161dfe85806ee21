package console

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/clusters"
)

// registerLive mounts the fragments pages poll to stay current without a
// reload; each page renders the same fragment in full, so it works without
// script too.
func (c *Console) registerLive(r *mux.Router) {
	r.Handle("/projects/{project}/clusters/{id}/status", c.page(c.clusterPart("cluster-status"))).Methods(http.MethodGet)
}

// registeredMeanwhile: the Register button was pressed on a page loaded
// before an agent registered. The page stays open and current, but its
// Register panel is as of the load, and a new token now would revoke the
// agent that just registered.
func registeredMeanwhile(r *http.Request, cl clusters.Cluster) bool {
	return r.PostFormValue("seenState") == clusters.StateCreated && cl.State != clusters.StateCreated
}

func (c *Console) refuseStaleRegister(w http.ResponseWriter, r *http.Request) error {
	d, err := c.detail(r)
	if err != nil {
		return err
	}
	d.Errors[""] = d.Cluster.Name + " was registered while this page was open (it is " + d.Cluster.State +
		" now): a new token would revoke its agent, so none was issued. Use Re-register if that is what you want."
	c.render(w, http.StatusConflict, "cluster", "", d)
	return nil
}
