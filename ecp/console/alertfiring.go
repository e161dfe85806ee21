package console

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/ecpio/ecp/ecp/alerts"
)

// confirmFiringRemoval asks before an alert that is still firing is
// removed: removing it only takes it off the list, while Alertmanager keeps
// notifying and brings it back with its next notification. It reports
// whether it answered (with the question) instead of letting the removal
// go ahead; a history entry, or a confirmed removal, goes ahead.
func (c *Console) confirmFiringRemoval(w http.ResponseWriter, r *http.Request, b base) (bool, error) {
	if r.PostFormValue("confirm") == "yes" {
		return false, nil
	}
	firing, names, err := c.firing(r, b.Project.ID)
	if err != nil {
		return false, err
	}
	id := mux.Vars(r)["id"]
	for _, a := range firing {
		if a.ID != id {
			continue
		}
		b.Title = "Remove a firing alert?"
		c.render(w, http.StatusOK, "alert_remove", "", struct {
			base
			Alert alerts.Alert
			Names map[string]string
		}{b, a, names})
		return true, nil
	}
	return false, nil
}
