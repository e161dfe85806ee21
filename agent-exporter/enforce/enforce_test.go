package enforce_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agent-exporter/emqx"
	"github.com/ecpio/ecp/agent-exporter/enforce"
	"github.com/ecpio/ecp/agentproto"
)

// fakeLicence behaves as EMQX's /license/setting: dynamic_max_connections
// exists only for customer_type 3 and is silently dropped otherwise.
type fakeLicence struct {
	customerType int
	dynamic      int
	putErr       error
	puts         int
}

func (f *fakeLicence) License(context.Context) (emqx.License, error) {
	return emqx.License{CustomerType: f.customerType, MaxConnections: f.dynamic}, nil
}

func (f *fakeLicence) LicenseSetting(context.Context) (emqx.LicenseSetting, error) {
	if f.customerType != 3 {
		return emqx.LicenseSetting{}, nil
	}
	n := f.dynamic
	return emqx.LicenseSetting{DynamicMaxConnections: &n}, nil
}

func (f *fakeLicence) SetDynamicMaxConnections(ctx context.Context, n int) (emqx.LicenseSetting, error) {
	f.puts++
	if f.putErr != nil {
		return emqx.LicenseSetting{}, f.putErr
	}
	if f.customerType == 3 {
		f.dynamic = n
	}
	return f.LicenseSetting(ctx)
}

func newEnforcer(t *testing.T) (*enforce.Enforcer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return enforce.New(slog.New(slog.DiscardHandler), reg), reg
}

func TestEnforce(t *testing.T) {
	tests := []struct {
		name        string
		api         *fakeLicence
		want        int
		wantProblem string
		wantPuts    int
		wantValue   int
	}{
		{"applies a new value", &fakeLicence{customerType: 3, dynamic: 25}, 10, "", 1, 10},
		{"leaves an equal value alone", &fakeLicence{customerType: 3, dynamic: 10}, 10, "", 0, 10},
		{"licence not business-critical", &fakeLicence{customerType: 1, dynamic: 25}, 10, agentproto.ProblemLicenceUnsupported, 0, 25},
		{"EMQX refuses", &fakeLicence{customerType: 3, dynamic: 25, putErr: errors.New("http 400 BAD_REQUEST")}, 10, agentproto.ProblemQuotaApplyFailed, 1, 25},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newEnforcer(t)
			e.SetDesired(agentproto.DesiredState{Revision: 1, MaxConnections: tc.want})
			err := e.Enforce(t.Context(), tc.api)
			st := e.State()
			gotProblem := ""
			if st.Problem != nil {
				gotProblem = st.Problem.Code
			}
			if gotProblem != tc.wantProblem || (err != nil) != (tc.wantProblem != "") {
				t.Fatalf("problem = %q err = %v, want %q", gotProblem, err, tc.wantProblem)
			}
			if tc.api.puts != tc.wantPuts || tc.api.dynamic != tc.wantValue {
				t.Fatalf("puts = %d dynamic = %d, want %d %d", tc.api.puts, tc.api.dynamic, tc.wantPuts, tc.wantValue)
			}
			if tc.wantProblem == "" && (!st.AppliedOK || st.Applied != tc.want) {
				t.Fatalf("state = %+v", st)
			}
		})
	}
}

func TestDriftCorrection(t *testing.T) {
	e, reg := newEnforcer(t)
	api := &fakeLicence{customerType: 3, dynamic: 25}
	e.SetDesired(agentproto.DesiredState{Revision: 3, MaxConnections: 40})
	for step, drift := range []int{0, 999, 0, 7} {
		if drift != 0 {
			api.dynamic = drift // someone edits it on EMQX's dashboard
		}
		if err := e.Enforce(t.Context(), api); err != nil {
			t.Fatal(err)
		}
		if api.dynamic != 40 {
			t.Fatalf("step %d: dynamic = %d, want 40", step, api.dynamic)
		}
	}
	if got := testutil.ToFloat64(counter(t, reg, "agent_exporter_max_connections_corrections_total")); got != 3 {
		t.Fatalf("corrections = %v, want 3 (initial + two drifts)", got)
	}
}

func TestRevisionOrdering(t *testing.T) {
	e, _ := newEnforcer(t)
	if !e.SetDesired(agentproto.DesiredState{Revision: 5, MaxConnections: 50}) {
		t.Fatal("first desired state refused")
	}
	if e.SetDesired(agentproto.DesiredState{Revision: 4, MaxConnections: 40}) {
		t.Fatal("an older revision replaced a newer one")
	}
	if e.State().Wanted != 50 {
		t.Fatalf("wanted = %d", e.State().Wanted)
	}
	e.Reset()
	api := &fakeLicence{customerType: 3, dynamic: 25}
	if err := e.Enforce(t.Context(), api); err != nil || api.puts != 0 {
		t.Fatalf("after reset the enforcer must do nothing: err %v puts %d", err, api.puts)
	}
}

// TestJourneyHeldAgentDoesNotEnforce: an agent ecp holds (another entry's
// agent manages the cluster) writes nothing to EMQX, says so on /metrics and
// in its log, and enforces again once the hold is lifted.
func TestJourneyHeldAgentDoesNotEnforce(t *testing.T) {
	var logs strings.Builder
	reg := prometheus.NewRegistry()
	e := enforce.New(slog.New(slog.NewTextHandler(&logs, nil)), reg)
	api := &fakeLicence{customerType: 3, dynamic: 1000}
	hold := &agentproto.Problem{Code: agentproto.ProblemClusterManagedElsewhere, Message: "managed by cluster north"}
	e.SetDesired(agentproto.DesiredState{Revision: 1, MaxConnections: 10, Hold: hold})
	for range 3 {
		if err := e.Enforce(t.Context(), api); err != nil {
			t.Fatal(err)
		}
	}
	if api.puts != 0 || api.dynamic != 1000 {
		t.Fatalf("held agent wrote dynamic_max_connections: %d writes, now %d", api.puts, api.dynamic)
	}
	if st := e.State(); st.Held == nil || st.Problem != nil {
		t.Fatalf("state while held: %+v", st)
	}
	wantHeld(t, reg, 1)
	if !strings.Contains(logs.String(), "not enforcing max connections: another agent manages this EMQX cluster") {
		t.Errorf("log does not say it holds: %s", logs.String())
	}
	e.SetDesired(agentproto.DesiredState{Revision: 2, MaxConnections: 10})
	if err := e.Enforce(t.Context(), api); err != nil {
		t.Fatal(err)
	}
	if api.dynamic != 10 {
		t.Fatalf("after the hold: dynamic_max_connections %d, want 10", api.dynamic)
	}
	wantHeld(t, reg, 0)
}

func wantHeld(t *testing.T, reg prometheus.Gatherer, v int) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`# HELP agent_exporter_enforcement_held 1 while ecp says another entry's agent manages this EMQX cluster, so this agent writes nothing to it.
# TYPE agent_exporter_enforcement_held gauge
agent_exporter_enforcement_held %d
`, v)), "agent_exporter_enforcement_held"); err != nil {
		t.Error(err)
	}
}
