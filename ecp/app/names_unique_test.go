package app

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

type nameConflict struct {
	Error struct {
		Code, Message, Field, Cluster, Project string
	}
}

// mustNameTaken checks r is the 409 that names the field and the entry that
// has the name.
func mustNameTaken(t *testing.T, r reply, holder string, what string) {
	t.Helper()
	if r.status != 409 {
		t.Fatalf("%s: status %d, want 409; body %s", what, r.status, r.body)
	}
	var c nameConflict
	r.decode(t, &c)
	if c.Error.Code != "NameTaken" || c.Error.Field != "name" || c.Error.Cluster != holder || !strings.Contains(c.Error.Message, "cluster "+holder) {
		t.Fatalf("%s: error %+v, want NameTaken on field name naming cluster %s", what, c.Error, holder)
	}
}

// TestJourneyDuplicateClusterNamesRefused: a cluster name is unique within
// its project, on create, rename and transfer, and two creates of one name
// at once on two replicas leave exactly one entry.
func TestJourneyDuplicateClusterNamesRefused(t *testing.T) {
	opts := sharedEtcdOptions(t)
	h1, h2 := start(t, opts), start(t, opts)
	admin, project := setupProject(t, h1)
	create := func(h *harness, project, name string) reply {
		return h.do("POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": name})
	}
	edge := h1.id(h1.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "edge"}))
	mustNameTaken(t, create(h2, project, "edge"), edge, "second create of edge")
	mustNameTaken(t, create(h1, project, "edge"), edge, "second create of edge, same replica")

	other := h1.id(h1.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "other"}))
	mustNameTaken(t, h1.do("PATCH", "/api/v1/clusters/"+other, admin, map[string]string{"name": "edge"}), edge, "rename to edge")
	// Saving an entry under its own name is no conflict.
	h1.must(200, "PATCH", "/api/v1/clusters/"+edge, admin, map[string]string{"name": "edge", "serviceUrl": "http://emqx.example:18083"})

	// The same name in another project is fine, but moving it into the
	// project that has the name is not.
	var orgs struct{ Items []struct{ ID string } }
	h1.must(200, "GET", "/api/v1/orgs", admin, nil).decode(t, &orgs)
	second := h1.id(h1.must(201, "POST", "/api/v1/orgs/"+orgs.Items[0].ID+"/projects", admin, map[string]string{"name": "q"}))
	elsewhere := h1.id(h1.must(201, "POST", "/api/v1/projects/"+second+"/clusters", admin, map[string]string{"name": "edge"}))
	r := h2.do("POST", "/api/v1/clusters/"+elsewhere+"/transfer", admin, map[string]string{"project": project})
	mustNameTaken(t, r, edge, "transfer of a second edge")
	if !strings.Contains(string(r.body), "rename one of them before moving cluster "+elsewhere) {
		t.Fatalf("transfer refusal does not say what to do: %s", r.body)
	}

	// A renamed or deleted entry frees its name at once.
	h1.must(200, "PATCH", "/api/v1/clusters/"+edge, admin, map[string]string{"name": "edge-old"})
	h2.must(200, "PATCH", "/api/v1/clusters/"+other, admin, map[string]string{"name": "edge"})
	h1.must(204, "DELETE", "/api/v1/clusters/"+other, admin, nil)
	h2.must(200, "POST", "/api/v1/clusters/"+elsewhere+"/transfer", admin, map[string]string{"project": project})

	// Two creates of one name at once, one on each replica: exactly one
	// wins, every round.
	for round := range 20 {
		name := fmt.Sprint("race-", round)
		var wg sync.WaitGroup
		replies := make([]reply, 2)
		for i, h := range []*harness{h1, h2} {
			wg.Go(func() { replies[i] = create(h, project, name) })
		}
		wg.Wait()
		won := 0
		for _, r := range replies {
			if r.status == 201 {
				won++
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d creates of %q won, want 1: %d %s / %d %s", round, won, name,
				replies[0].status, replies[0].body, replies[1].status, replies[1].body)
		}
		winner := replies[0]
		if winner.status != 201 {
			winner, replies[1] = replies[1], replies[0]
		}
		mustNameTaken(t, replies[1], h1.id(winner), fmt.Sprintf("round %d loser", round))
	}
	var list struct{ Items []clusterJSON }
	h1.must(200, "GET", "/api/v1/projects/"+project+"/clusters?limit=100", admin, nil).decode(t, &list)
	if len(list.Items) != 22 {
		t.Fatalf("project lists %d entries, want edge-old, the moved edge and the 20 race winners (22)", len(list.Items))
	}
}
