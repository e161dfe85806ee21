package app

import "testing"

// TestJourneyRegistrationWarnsOfTheCap: the registration reply says, with
// the number, that the agent will cap EMQX at the entry's max connections.
func TestJourneyRegistrationWarnsOfTheCap(t *testing.T) {
	h := start(t, testOptions(t))
	admin, project := setupProject(t, h)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "c"}))
	h.must(200, "PUT", "/api/v1/clusters/"+id+"/max-connections", admin, map[string]int{"maxConnections": 250})
	var reg struct {
		MaxConnections int
		Note           string
	}
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	want := "Once registered, the agent caps EMQX at this entry's max connections, 250: beyond that EMQX refuses new clients. " +
		"If the cluster serves more, raise it first (PUT /api/v1/clusters/" + id + "/max-connections)."
	if reg.MaxConnections != 250 || reg.Note != want {
		t.Fatalf("registration maxConnections %d, note %q; want 250, %q", reg.MaxConnections, reg.Note, want)
	}
}
