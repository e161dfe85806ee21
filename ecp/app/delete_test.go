package app

import (
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/audit"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
	"github.com/ecpio/ecp/ecp/monitoring"
)

// TestDeleteClusterLeavesNoKey: deleting an entry removes every etcd key
// of it (registry.Delete): after a cluster was created, registered and
// reported (binding, state, identity keys, shared monitoring snapshot),
// no key names its id, nor does any value but the audit log's history.
func TestDeleteClusterLeavesNoKey(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := etcdtest.ClientOf(t, srv)
	opts := testOptions(t)
	opts.EtcdEndpoints, opts.EtcdTLS = []string{srv.Endpoint()}, srv.ClientTLS()
	h := startReal(t, opts)
	admin, project := setupProject(t, h)
	id := h.id(h.must(201, "POST", "/api/v1/projects/"+project+"/clusters", admin, map[string]string{"name": "doomed"}))
	var reg struct{ Token string }
	h.must(201, "POST", "/api/v1/clusters/"+id+"/registration", admin, nil).decode(t, &reg)
	var out agentproto.RegisterResponse
	registerAgent(h, reg.Token).decode(t, &out)

	// The snapshot is shared asynchronously: watch for it before reporting.
	shared := cli.Watch(clientv3.WithRequireLeader(t.Context()), monitoring.Prefix+id)
	h.must(200, "POST", agentproto.PathReport, out.Credential, agentproto.ReportRequest{
		CollectedAt: time.Now(), AgentVersion: "test",
		EMQX: agentproto.EMQXStatus{Reachable: true, ClusterName: "emqx@doomed",
			Nodes:      []agentproto.Node{{Name: "emqx@10.0.0.1", Status: "running"}},
			Connectors: agentproto.ResourceCounts{Total: 1, Unhealthy: 1},
			Abnormal:   []agentproto.Resource{{Kind: agentproto.KindConnector, ID: "http:c", Status: "disconnected"}}},
	})
	select {
	case wr := <-shared:
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the report's snapshot was never shared through etcd")
	}
	if keys := keysNaming(t, cli, id); len(keys) < 5 {
		t.Fatalf("before delete only %d keys name the cluster, want its spec, indexes, binding, state and snapshot: %v", len(keys), keys)
	}

	h.must(204, "DELETE", "/api/v1/clusters/"+id, admin, nil)
	if keys := keysNaming(t, cli, id); len(keys) > 0 {
		t.Fatalf("after delete these keys still name cluster %s:\n%s", id, strings.Join(keys, "\n"))
	}
}

// keysNaming lists every etcd key whose name or value holds id, leaving
// out the audit log (history of what was done to the entry, kept on purpose).
func keysNaming(t *testing.T, cli *clientv3.Client, id string) []string {
	t.Helper()
	resp, err := cli.Get(t.Context(), "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if strings.HasPrefix(k, audit.Prefix) {
			continue
		}
		if strings.Contains(k, id) || strings.Contains(string(kv.Value), id) {
			keys = append(keys, k)
		}
	}
	return keys
}
