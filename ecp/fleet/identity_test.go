package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
	"github.com/ecpio/ecp/internal/secret"
)

func putSpecIn(t testing.TB, cli *clientv3.Client, id, name, project string) {
	t.Helper()
	b, err := registry.Spec{ID: id, Name: name, Project: project, MaxConnections: 10}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(t.Context(), registry.Key(id), string(b)); err != nil {
		t.Fatal(err)
	}
}

func (a *agent) registerOn(t *testing.T, token secret.String, id *agentproto.ClusterIdentity) reply {
	t.Helper()
	r := a.do(t, http.MethodPost, agentproto.PathRegister, agentproto.RegisterRequest{Token: token.Reveal(),
		AgentVersion: "1.0.0", APIURL: "http://127.0.0.1:18083", Cluster: id})
	if r.status == http.StatusOK {
		a.cred = decodeBody[agentproto.RegisterResponse](t, r).Credential
	}
	return r
}

// on is a healthy report of the cluster named name with the given nodes.
func on(name string, nodes ...string) agentproto.EMQXStatus {
	em := healthy()
	em.ClusterName = name
	em.Nodes = nil
	for _, n := range nodes {
		em.Nodes = append(em.Nodes, agentproto.Node{Name: n, Status: "running"})
	}
	return em
}

func errMessage(t *testing.T, r reply) string {
	t.Helper()
	var eb agentproto.ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	return eb.Error.Message
}

func projectNames(_ context.Context, id string) (string, error) { return "project " + id, nil }

// TestJourneyClusterRegisteredTwiceIsRefused: a second entry registered
// against a cluster another entry manages is refused with 409, names the
// holder only inside its project, and keeps its token.
func TestJourneyClusterRegisteredTwiceIsRefused(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1", func(o *Options) { o.ProjectName = projectNames })
	putSpecIn(t, cli, "a", "north", "p1")
	putSpecIn(t, cli, "b", "north-again", "p1")
	putSpecIn(t, cli, "c", "theirs", "p2")
	first := newAgent(f.url)
	decodeBody[agentproto.RegisterResponse](t, first.registerOn(t, issue(t, f, "a", time.Hour),
		&agentproto.ClusterIdentity{Name: "emqxcl", Nodes: []string{"emqx@10.0.0.1", "emqx@10.0.0.2"}}))

	// Same name, one node in common (a node was added since): the same cluster.
	tokB := issue(t, f, "b", time.Hour)
	second := newAgent(f.url)
	r := second.registerOn(t, tokB, &agentproto.ClusterIdentity{Name: "emqxcl", Nodes: []string{"emqx@10.0.0.2", "emqx@10.0.0.3"}})
	wantCode(t, r, http.StatusConflict, agentproto.CodeClusterAlreadyManaged)
	for _, want := range []string{`already managed by cluster "north" (id a) in project "project p1"`, `cluster name "emqxcl"`, "token was not used"} {
		if !strings.Contains(errMessage(t, r), want) {
			t.Errorf("refusal %s does not say %q", r.body, want)
		}
	}

	// Another project: the holder's names stay hidden.
	r = newAgent(f.url).registerOn(t, issue(t, f, "c", time.Hour), &agentproto.ClusterIdentity{Name: "emqxcl", Nodes: []string{"emqx@10.0.0.1"}})
	wantCode(t, r, http.StatusConflict, agentproto.CodeClusterAlreadyManaged)
	if !strings.Contains(string(r.body), "managed by an entry in another project; ask a system admin") {
		t.Errorf("refusal %s does not point to a system admin", r.body)
	}
	for _, leak := range []string{"north", "p1", `id a`} {
		if strings.Contains(errMessage(t, r), leak) {
			t.Errorf("refusal to another project leaks %q: %s", leak, r.body)
		}
	}

	// Another cluster name, same node names: another cluster.
	putSpecIn(t, cli, "d", "south", "p1")
	decodeBody[agentproto.RegisterResponse](t, newAgent(f.url).registerOn(t, issue(t, f, "d", time.Hour),
		&agentproto.ClusterIdentity{Name: "south", Nodes: []string{"emqx@10.0.0.1"}}))

	// Once the holder unregisters, the refused token still works.
	if r := first.unregister(t); r.status != http.StatusNoContent {
		t.Fatalf("unregister: %d %s", r.status, r.body)
	}
	decodeBody[agentproto.RegisterResponse](t, second.registerOn(t, tokB, &agentproto.ClusterIdentity{Name: "emqxcl", Nodes: []string{"emqx@10.0.0.2"}}))
}

// TestJourneyClusterReleasedByReRegistration: re-registering an entry onto
// another cluster, or deleting it, frees the cluster it held; re-registering
// onto the same cluster is not refused by its own old binding.
func TestJourneyClusterReleasedByReRegistration(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpecIn(t, cli, "a", "north", "p1")
	putSpecIn(t, cli, "b", "other", "p1")
	x := &agentproto.ClusterIdentity{Name: "x", Nodes: []string{"emqx@h1"}}
	y := &agentproto.ClusterIdentity{Name: "y", Nodes: []string{"emqx@h1"}}
	decodeBody[agentproto.RegisterResponse](t, newAgent(f.url).registerOn(t, issue(t, f, "a", time.Hour), x))
	decodeBody[agentproto.RegisterResponse](t, newAgent(f.url).registerOn(t, issue(t, f, "a", time.Hour), x))
	decodeBody[agentproto.RegisterResponse](t, newAgent(f.url).registerOn(t, issue(t, f, "a", time.Hour), y))
	decodeBody[agentproto.RegisterResponse](t, newAgent(f.url).registerOn(t, issue(t, f, "b", time.Hour), x))
	putSpecIn(t, cli, "c", "third", "p1")
	wantCode(t, newAgent(f.url).registerOn(t, issue(t, f, "c", time.Hour), x), http.StatusConflict, agentproto.CodeClusterAlreadyManaged)
	if err := f.Forget(t.Context(), "b"); err != nil {
		t.Fatal(err)
	}
	// The deleted entry's keys are gone, not just powerless.
	if n := identityKeysOf(t, cli, "b"); n != 0 {
		t.Errorf("%d identity keys of the deleted entry remain", n)
	}
	c := newAgent(f.url)
	decodeBody[agentproto.RegisterResponse](t, c.registerOn(t, issue(t, f, "c", time.Hour), x))
	if r := c.unregister(t); r.status != http.StatusNoContent {
		t.Fatalf("unregister: %d %s", r.status, r.body)
	}
	if n := identityKeysOf(t, cli, "c"); n != 0 {
		t.Errorf("%d identity keys of the unregistered agent remain", n)
	}
}

func identityKeysOf(t *testing.T, cli *clientv3.Client, clusterID string) int {
	t.Helper()
	resp, err := cli.Get(t.Context(), identityPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		if rec, err := decode[identityRecord](kv.Value); err == nil && rec.ClusterID == clusterID {
			n++
		}
	}
	return n
}

// TestJourneyClusterRegistrationRace: entries registered at once against one
// cluster: exactly one is bound.
func TestJourneyClusterRegistrationRace(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	const n = 8
	tokens := make([]secret.String, n)
	for i := range n {
		id := fmt.Sprintf("e%d", i)
		putSpecIn(t, cli, id, "entry "+id, "p1")
		tokens[i] = issue(t, f, id, time.Hour)
	}
	results := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = newAgent(f.url).registerOn(t, tokens[i], &agentproto.ClusterIdentity{Name: "emqxcl", Nodes: []string{"emqx@10.0.0.1"}})
		})
	}
	wg.Wait()
	won := 0
	for _, r := range results {
		switch {
		case r.status == http.StatusOK:
			won++
		case r.status == http.StatusConflict && r.code == agentproto.CodeClusterAlreadyManaged:
		default:
			t.Fatalf("unexpected reply %d %s: %s", r.status, r.code, r.body)
		}
	}
	if won != 1 {
		t.Fatalf("%d entries bound to one EMQX cluster, want exactly 1", won)
	}
}

// TestJourneyClusterManagedTwiceHolds: two bindings that already share a
// cluster (registered before the check, or a node joined later): the one
// that reports it second turns abnormal and its agent is told to hold, until
// the first one goes.
func TestJourneyClusterManagedTwiceHolds(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpecIn(t, cli, "a", "north", "p1")
	putSpecIn(t, cli, "b", "north-again", "p1")
	first, second := newAgent(f.url), newAgent(f.url)
	// No identity at registration: agents older than the check.
	decodeBody[agentproto.RegisterResponse](t, first.registerOn(t, issue(t, f, "a", time.Hour), nil))
	decodeBody[agentproto.RegisterResponse](t, second.registerOn(t, issue(t, f, "b", time.Hour), nil))

	rep := decodeBody[agentproto.ReportResponse](t, first.report(t, on("emqxcl", "emqx@n1")))
	if rep.Desired.Hold != nil {
		t.Fatalf("first agent told to hold: %+v", rep.Desired.Hold)
	}
	f.waitState(t, "a", StateRunning, "")
	// The second one sees a node join: its identity now overlaps.
	decodeBody[agentproto.ReportResponse](t, second.report(t, on("emqxcl", "emqx@n2")))
	f.waitState(t, "b", StateRunning, "")
	before := decodeBody[agentproto.DesiredState](t, second.desired(t, 0, "0s")).Revision
	rep = decodeBody[agentproto.ReportResponse](t, second.report(t, on("emqxcl", "emqx@n2", "emqx@n1")))
	if rep.Desired.Hold == nil || rep.Desired.Hold.Code != agentproto.ProblemClusterManagedElsewhere {
		t.Fatalf("second agent not told to hold: %+v", rep.Desired)
	}
	if rep.Desired.Revision <= before {
		t.Errorf("hold did not raise the desired revision: %d, was %d", rep.Desired.Revision, before)
	}
	st := f.waitState(t, "b", StateAbnormal, ReasonClusterManagedElsewhere)
	if !strings.Contains(st.StateReason.Message, `already managed by cluster "north" (id a)`) {
		t.Errorf("reason %q does not name the holder", st.StateReason.Message)
	}
	// The holder is untouched and keeps enforcing.
	rep = decodeBody[agentproto.ReportResponse](t, first.report(t, on("emqxcl", "emqx@n1", "emqx@n2")))
	if rep.Desired.Hold != nil || f.status(t, "a").State != StateRunning {
		t.Fatalf("holder held or not running: %+v %+v", rep.Desired, f.status(t, "a"))
	}
	// Still held at the next report, and no write for it.
	writes := f.writes("report")
	rep = decodeBody[agentproto.ReportResponse](t, second.report(t, on("emqxcl", "emqx@n2", "emqx@n1")))
	if rep.Desired.Hold == nil || f.writes("report") != writes {
		t.Fatalf("hold lifted or rewritten: %+v, writes %v → %v", rep.Desired, writes, f.writes("report"))
	}

	// The holder unregisters: the second entry takes the cluster over.
	if r := first.unregister(t); r.status != http.StatusNoContent {
		t.Fatalf("unregister: %d %s", r.status, r.body)
	}
	rep = decodeBody[agentproto.ReportResponse](t, second.report(t, on("emqxcl", "emqx@n2", "emqx@n1")))
	if rep.Desired.Hold != nil {
		t.Fatalf("hold not lifted after the holder left: %+v", rep.Desired.Hold)
	}
	f.waitState(t, "b", StateRunning, "")
}

func TestClusterIdentityValidation(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpecIn(t, cli, "a", "north", "p1")
	tok := issue(t, f, "a", time.Hour)
	many := make([]string, maxIdentityNodes+1)
	for i := range many {
		many[i] = fmt.Sprintf("emqx@%d", i)
	}
	r := newAgent(f.url).registerOn(t, tok, &agentproto.ClusterIdentity{Name: "emqxcl", Nodes: many})
	wantCode(t, r, http.StatusBadRequest, httpapi.CodeInvalid)
	if !strings.Contains(string(r.body), `"field":"cluster.nodes"`) {
		t.Errorf("refusal %s does not name cluster.nodes", r.body)
	}
	a := newAgent(f.url)
	decodeBody[agentproto.RegisterResponse](t, a.registerOn(t, tok, nil))
	r = a.report(t, on(strings.Repeat("n", maxIdentityField+1), "emqx@1"))
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "emqx.clusterName") {
		t.Errorf("long cluster name: %d %s", r.status, r.body)
	}
}

// TestJourneyClusterOlderBindingKeepsIt: when the younger of two bindings on
// one cluster reports first, the older one still keeps the cluster and the
// younger one is held from its next report on.
func TestJourneyClusterOlderBindingKeepsIt(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpecIn(t, cli, "a", "north", "p1")
	putSpecIn(t, cli, "b", "north-again", "p2")
	older, younger := newAgent(f.url), newAgent(f.url)
	decodeBody[agentproto.RegisterResponse](t, older.registerOn(t, issue(t, f, "a", time.Hour), nil))
	decodeBody[agentproto.RegisterResponse](t, younger.registerOn(t, issue(t, f, "b", time.Hour), nil))
	if rep := decodeBody[agentproto.ReportResponse](t, younger.report(t, on("emqxcl", "emqx@n1"))); rep.Desired.Hold != nil {
		t.Fatalf("younger held while alone: %+v", rep.Desired.Hold)
	}
	if rep := decodeBody[agentproto.ReportResponse](t, older.report(t, on("emqxcl", "emqx@n1"))); rep.Desired.Hold != nil {
		t.Fatalf("older binding held: %+v", rep.Desired.Hold)
	}
	f.waitFor(t, "the younger binding to lose the cluster", func() bool {
		rep := decodeBody[agentproto.ReportResponse](t, younger.report(t, on("emqxcl", "emqx@n1")))
		return rep.Desired.Hold != nil
	})
	st := f.waitState(t, "b", StateAbnormal, ReasonClusterManagedElsewhere)
	if !strings.Contains(st.StateReason.Message, "managed by an entry in another project") || strings.Contains(st.StateReason.Message, "north") {
		t.Errorf("reason across projects: %q", st.StateReason.Message)
	}
	if f.status(t, "a").State != StateRunning {
		t.Errorf("older binding: %+v", f.status(t, "a"))
	}
}
