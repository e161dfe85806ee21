package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestJourneySecondEntryOnManagedClusterIsRefused is issue #12's defect 1
// with the built binaries: a second entry registered, with the command the
// guide renders, against an EMQX cluster another entry already manages is
// refused with a message naming that entry (or, across projects, pointing
// to a system admin), and EMQX keeps the first entry's max connections
// through several collections instead of flipping between two values.
func TestJourneySecondEntryOnManagedClusterIsRefused(t *testing.T) {
	s := startECP(t)
	ctx := t.Context()
	simURL := s.newSim()
	ps := s.projects("plant", "lab")
	plant, lab := ps[0], ps[1]

	first := s.manage(plant.ID, simURL)
	if err := s.api.Do(ctx, http.MethodPut, "/api/v1/clusters/"+first.entry.ID+"/max-connections", map[string]int{"maxConnections": 50}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "EMQX holds the first entry's max connections", func() (bool, string) {
		got := simLicenceSetting(t, simURL)
		return got == 50, fmt.Sprint(got)
	})

	// register runs the guide's commands for a new entry on the same
	// cluster and returns what the register command printed.
	register := func(project, name string) (testbed.Cluster, string) {
		t.Helper()
		entry, err := s.api.CreateCluster(ctx, project, name, simURL)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := s.api.Register(ctx, entry.ID)
		if err != nil {
			t.Fatal(err)
		}
		setup := testbed.AgentSetup{Dir: filepath.Join(s.dir, "agent-"+name), EMQXUsername: "admin", EMQXPassword: "public", CollectInterval: reportInterval}
		if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
			t.Fatal(err)
		}
		agent, err := testbed.RunAgent(ctx, reg, setup)
		if err == nil {
			t.Cleanup(func() { _ = agent.Stop() })
			t.Errorf("a second entry (%s) registered on a cluster %s already manages", name, first.entry.Name)
			return entry, ""
		}
		return entry, err.Error()
	}

	same, out := register(plant.ID, "line-1-again")
	for _, want := range []string{
		"register failed: ecp refused the registration: this EMQX cluster (cluster name \"emqxcl\"",
		fmt.Sprintf("is already managed by cluster %q (id %s) in project \"plant\"", first.entry.Name, first.entry.ID),
		"unregister its agent or delete that entry first",
		"The registration token was not used.",
	} {
		if out != "" && !strings.Contains(out, want) {
			t.Errorf("register command output lacks %q:\n%s", want, out)
		}
	}
	other, out := register(lab.ID, "lab-copy")
	if out != "" {
		if !strings.Contains(out, "is already managed by an entry in another project; ask a system admin") {
			t.Errorf("refusal across projects does not point to a system admin:\n%s", out)
		}
		for _, leak := range []string{first.entry.Name, first.entry.ID, "plant"} {
			if strings.Contains(out, leak) {
				t.Errorf("refusal to project lab leaks %q:\n%s", leak, out)
			}
		}
	}

	// Several collections later EMQX still holds the first entry's value,
	// the first entry runs and the refused ones never left "created".
	for i := range 8 {
		time.Sleep(reportInterval)
		if got := simLicenceSetting(t, simURL); got != 50 {
			t.Fatalf("collection %d: dynamic_max_connections = %d, want the first entry's 50", i+1, got)
		}
	}
	for _, c := range []testbed.Cluster{same, other} {
		if got, err := s.api.Cluster(ctx, c.ID); err != nil || got.State != "created" {
			t.Errorf("refused entry %s: %+v %v, want created", c.Name, got, err)
		}
	}
	if got, err := s.api.Cluster(ctx, first.entry.ID); err != nil || got.State != "running" {
		t.Errorf("first entry: %+v %v, want running", got, err)
	}
}
