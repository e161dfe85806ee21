package clusters

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
)

// scripted answers Status with one scripted status.
type scripted struct {
	stubFleet
	st Status
}

func (f scripted) Status(context.Context, string) (Status, error) { return f.st, nil }

func TestCheckLogCollection(t *testing.T) {
	yes, no := true, false
	withDir := Status{State: "running", RegisteredLogCollection: agentproto.LogCollection{Dir: "/opt/emqx/log"}}
	noDir := Status{State: "running"}
	unbound := Status{State: StateCreated}
	tests := []struct {
		name    string
		req     logCollectionPatch
		st      Status
		wantErr bool
	}{
		{"enabled missing", logCollectionPatch{}, withDir, true},
		{"on with a registered directory", logCollectionPatch{Enabled: &yes}, withDir, false},
		{"on without a registered directory", logCollectionPatch{Enabled: &yes}, noDir, true},
		{"on before any agent registered", logCollectionPatch{Enabled: &yes}, unbound, false},
		{"off without a registered directory", logCollectionPatch{Enabled: &no}, noDir, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := &API{fleet: scripted{st: tt.st}}
			r := httptest.NewRequest(http.MethodPatch, "/api/v1/clusters/c1", nil)
			err := api.checkLogCollection(r.Context(), "c1", &tt.req)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var apiErr *httpapi.Error
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Field != "logCollection.enabled" {
				t.Fatalf("got %v, want 400 naming logCollection.enabled", err)
			}
		})
	}
}

// TestClusterShowsEffectiveLogCollection: the cluster JSON shows what the
// agent is told, the operator's switch over the registration's choice.
func TestClusterShowsEffectiveLogCollection(t *testing.T) {
	registered := Status{State: "running", RegisteredLogCollection: agentproto.LogCollection{Enabled: true, Dir: "/opt/emqx/log"}}
	tests := []struct {
		name string
		set  *registry.LogCollectionSpec
		st   Status
		want agentproto.LogCollection
	}{
		{"as registered", nil, registered, registered.RegisteredLogCollection},
		{"switched off", &registry.LogCollectionSpec{Enabled: false}, registered, agentproto.LogCollection{Dir: "/opt/emqx/log"}},
		{"switched on, no agent yet", &registry.LogCollectionSpec{Enabled: true}, Status{State: StateCreated}, agentproto.LogCollection{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := toCluster(registry.Spec{ID: "c1", LogCollection: tt.set}, tt.st)
			if c.LogCollection != tt.want {
				t.Fatalf("got %+v, want %+v", c.LogCollection, tt.want)
			}
		})
	}
}
