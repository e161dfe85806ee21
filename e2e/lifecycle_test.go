package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/testbed"
)

// TestLifecycle takes a simulated cluster under management with the real
// binaries and walks it through every state an operator meets: running,
// quota enforced and restored after drift, EMQX down, agent crashed, moved
// to another project, unregistered from the agent side, re-registered and
// deleted.
func TestLifecycle(t *testing.T) {
	s := startECP(t)
	ctx := t.Context()

	simAddr, err := testbed.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	simURL := "http://" + simAddr
	sim := s.startSim(simAddr)

	org, err := s.api.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	plant, err := s.api.CreateProject(ctx, org.ID, "plant")
	if err != nil {
		t.Fatal(err)
	}
	lab, err := s.api.CreateProject(ctx, org.ID, "lab")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := s.api.CreateCluster(ctx, plant.ID, "line-1", simURL)
	if err != nil {
		t.Fatal(err)
	}
	if entry.State != "created" || entry.MaxConnections != 10 {
		t.Fatalf("new entry: state %q max %d, want created and 10", entry.State, entry.MaxConnections)
	}

	// Register with the commands ecp renders.
	reg, err := s.api.Register(ctx, entry.ID)
	if err != nil {
		t.Fatal(err)
	}
	setup := testbed.AgentSetup{
		Dir: filepath.Join(s.dir, "agent"), EMQXUsername: "admin", EMQXPassword: "public", EMQXURL: simURL,
		CollectInterval: reportInterval,
	}
	if setup.ListenAddress, err = testbed.FreeAddr(); err != nil {
		t.Fatal(err)
	}
	agent, err := testbed.RunAgent(ctx, reg, setup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Stop() })

	cl := s.waitState(entry.ID, "running")
	if cl.Version != "5.8.9" || cl.Nodes != 3 || cl.ManagedSince.IsZero() || cl.StartedAt.IsZero() {
		t.Fatalf("running entry lacks what the agent saw: %+v", cl)
	}

	t.Run("the used token is refused", func(t *testing.T) {
		again := setup
		again.Dir = filepath.Join(s.dir, "second-agent")
		var err error
		if again.ListenAddress, err = testbed.FreeAddr(); err != nil {
			t.Fatal(err)
		}
		second, err := testbed.RunAgent(ctx, reg, again)
		if err == nil {
			_ = second.Stop()
		}
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "token") {
			t.Fatalf("registering twice with one token: %v, want a refusal that names the token", err)
		}
	})

	t.Run("max connections reach EMQX and drift is undone", func(t *testing.T) {
		if err := s.api.Do(ctx, http.MethodPut, "/api/v1/clusters/"+entry.ID+"/max-connections", map[string]int{"maxConnections": 50}, nil); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "EMQX's dynamic_max_connections follows ecp", func() (bool, string) {
			got := simLicenceSetting(t, simURL)
			return got == 50, fmt.Sprint(got)
		})
		setSimLicence(t, simURL, 777) // someone on the cluster's own dashboard
		eventually(t, 5*reportInterval+2*time.Second, "the agent restores ecp's value", func() (bool, string) {
			got := simLicenceSetting(t, simURL)
			return got == 50, fmt.Sprint(got)
		})
	})

	t.Run("EMQX down makes the entry abnormal until it is back", func(t *testing.T) {
		if err := sim.Stop(); err != nil {
			t.Fatal(err)
		}
		cl := s.waitState(entry.ID, "abnormal")
		if cl.StateReason == nil || cl.StateReason.Code != "EMQXUnreachable" {
			t.Fatalf("abnormal without EMQXUnreachable: %+v", cl.StateReason)
		}
		sim = s.startSim(simAddr)
		s.waitState(entry.ID, "running")
		// The restarted cluster came back with its own licence; the agent
		// puts ecp's allocation back.
		eventually(t, 5*reportInterval+2*time.Second, "allocation re-applied after EMQX restart", func() (bool, string) {
			got := simLicenceSetting(t, simURL)
			return got == 50, fmt.Sprint(got)
		})
	})

	t.Run("a crashed agent makes the entry abnormal; restarted it resumes", func(t *testing.T) {
		agent.Kill()
		cl := s.waitState(entry.ID, "abnormal")
		if cl.StateReason == nil || cl.StateReason.Code != "AgentSilent" {
			t.Fatalf("abnormal without AgentSilent: %+v", cl.StateReason)
		}
		agent = s.start("agent-exporter restarted", filepath.Join(setup.Dir, "agent-exporter"), []string{"run",
			"--state.dir", setup.StateDir(), "--web.listen-address", setup.ListenAddress,
			"--log.file", filepath.Join(setup.Dir, "agent.log"), "--collect.interval", reportInterval.String()}, nil)
		s.waitState(entry.ID, "running")
	})

	t.Run("transfer to another project", func(t *testing.T) {
		if err := s.api.Do(ctx, http.MethodPost, "/api/v1/clusters/"+entry.ID+"/transfer", map[string]string{"project": lab.ID}, nil); err != nil {
			t.Fatal(err)
		}
		cl, err := s.api.Cluster(ctx, entry.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cl.Project != lab.ID || cl.State != "running" {
			t.Fatalf("after transfer: project %q state %q, want %q running", cl.Project, cl.State, lab.ID)
		}
	})

	t.Run("unregister from the agent side returns the entry to created", func(t *testing.T) {
		out, err := agentCmd(t, setup, "unregister")
		if err != nil {
			t.Fatalf("agent-exporter unregister: %v\n%s", err, out)
		}
		s.waitState(entry.ID, "created")
		out, err = agentCmd(t, setup, "status")
		if !strings.Contains(out, "registered:           no") {
			t.Fatalf("status after unregister (%v):\n%s", err, out)
		}
	})

	t.Run("re-register binds the agent again", func(t *testing.T) {
		reg, err := s.api.Register(ctx, entry.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(reg.Commands) == 0 {
			t.Fatal("registration without commands")
		}
		// The register command is the same for every arch; the binary is
		// already on the host.
		if err := testbed.Registered(ctx, reg.Commands[0].Register, setup); err != nil {
			t.Fatal(err)
		}
		s.waitState(entry.ID, "running")
	})

	t.Run("delete tells the agent to unregister", func(t *testing.T) {
		if err := s.api.Do(ctx, http.MethodDelete, "/api/v1/clusters/"+entry.ID, nil, nil); err != nil {
			t.Fatal(err)
		}
		var apiErr *testbed.APIError
		if _, err := s.api.Cluster(ctx, entry.ID); err == nil || !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
			t.Fatalf("deleted entry still readable: %v", err)
		}
		eventually(t, 5*time.Second, "agent forgets its credential", func() (bool, string) {
			out, _ := agentCmd(t, setup, "status")
			return strings.Contains(out, "registered:           no"), out
		})
	})
}
