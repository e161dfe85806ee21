package fleet

import (
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/registry"
)

// putLogSwitch stores the spec of id with the operator's log collection
// switch (nil: as registered) and returns the write's revision.
func putLogSwitch(t *testing.T, cli *clientv3.Client, id string, lc *registry.LogCollectionSpec) int64 {
	t.Helper()
	spec := registry.Spec{ID: id, Name: "cluster " + id, Project: "p1", MaxConnections: 10, LogCollection: lc,
		CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	b, err := spec.Encode()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Put(t.Context(), registry.Key(id), string(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

// TestDesiredLogCollectionFollowsSpec: the operator's switch in the spec
// reaches a waiting long-poll within 2 s, and with no switch the agent
// keeps the choice it registered with.
func TestDesiredLogCollectionFollowsSpec(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	reg := mustRegister(t, a, issue(t, f, "c1", time.Hour))
	registered := agentproto.LogCollection{Enabled: true, Dir: "/opt/emqx/log"}
	if reg.Desired.LogCollection != registered {
		t.Fatalf("registration reply log collection %+v, want %+v", reg.Desired.LogCollection, registered)
	}
	if got := f.status(t, "c1").RegisteredLogCollection; got != registered {
		t.Fatalf("status registered log collection %+v, want %+v", got, registered)
	}

	rev := reg.Desired.Revision
	for _, step := range []struct {
		name string
		set  *registry.LogCollectionSpec
		want agentproto.LogCollection
	}{
		{"switched off", &registry.LogCollectionSpec{Enabled: false}, agentproto.LogCollection{Dir: "/opt/emqx/log"}},
		{"switched on", &registry.LogCollectionSpec{Enabled: true}, registered},
		{"switched off again", &registry.LogCollectionSpec{Enabled: false}, agentproto.LogCollection{Dir: "/opt/emqx/log"}},
		{"no switch keeps the registration's", nil, registered},
	} {
		t.Run(step.name, func(t *testing.T) {
			polled := make(chan reply, 1)
			fast := &agent{base: a.base, cred: a.cred, hc: &http.Client{Timeout: 2 * time.Second}}
			go func() { polled <- fast.desired(t, rev, "30s") }()
			f.waitFor(t, "long-poll waiting", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
			rev = putLogSwitch(t, cli, "c1", step.set)
			d := decodeBody[agentproto.DesiredState](t, <-polled)
			if d.LogCollection != step.want || d.Revision != rev {
				t.Fatalf("got %+v at revision %d, want %+v at revision %d", d.LogCollection, d.Revision, step.want, rev)
			}
		})
	}
}

// TestDesiredLogCollectionWithoutDir: an agent that registered no log
// directory is never told to collect, whatever the switch says.
func TestDesiredLogCollectionWithoutDir(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putLogSwitch(t, cli, "c1", &registry.LogCollectionSpec{Enabled: true})
	a := newAgent(f.url)
	r := a.do(t, http.MethodPost, agentproto.PathRegister, agentproto.RegisterRequest{Token: issue(t, f, "c1", time.Hour).Reveal(),
		AgentVersion: "1.0.0", Hostname: "broker-1"})
	reg := decodeBody[agentproto.RegisterResponse](t, r)
	if reg.Desired.LogCollection.Enabled {
		t.Fatalf("desired log collection %+v: on without a directory", reg.Desired.LogCollection)
	}
}
