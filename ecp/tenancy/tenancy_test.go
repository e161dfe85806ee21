package tenancy

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

func TestAccessLevels(t *testing.T) {
	a1 := Project{ID: "a1", Org: "a"}
	a2 := Project{ID: "a2", Org: "a"}
	b1 := Project{ID: "b1", Org: "b"}
	ac := &Access{
		orgAdmin:     map[string]bool{"c": true},
		orgMember:    map[string]bool{"a": true, "c": true},
		projectLevel: map[string]Level{"a1": View, "a2": Admin},
	}
	tests := []struct {
		name string
		got  Level
		want Level
	}{
		{"viewer of a1", ac.Project(a1), View},
		{"admin of a2", ac.Project(a2), Admin},
		{"stranger to b1", ac.Project(b1), None},
		{"org admin of c sees its projects as admin", ac.Project(Project{ID: "c9", Org: "c"}), Admin},
		{"member of org a views it", ac.Org("a"), View},
		{"org admin of c", ac.Org("c"), Admin},
		{"stranger to org b", ac.Org("b"), None},
		{"system admin", (&Access{System: true}).Project(b1), Admin},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("level %d, want %d", tc.got, tc.want)
			}
		})
	}
}

func TestBindingIDIsContentAddressed(t *testing.T) {
	a, b := BindingID("u", RoleProjectViewer, "o", "p"), BindingID("u", RoleProjectViewer, "o", "p")
	if a != b || len(a) != 16 {
		t.Fatalf("same grant gave ids %q and %q, want one 16-digit id", a, b)
	}
	// The separator keeps ("ab","c") and ("a","bc") apart.
	if BindingID("ab", "c", "", "") == BindingID("a", "bc", "", "") {
		t.Fatal("different grants share an id")
	}
}

// TestLastSystemAdminSurvivesConcurrentRevocations: two system admins
// revoked at the same moment leave exactly one.
func TestLastSystemAdminSurvivesConcurrentRevocations(t *testing.T) {
	s := NewStore(etcdtest.Client(t))
	ctx := t.Context()
	if _, err := s.CreateBinding(ctx, Binding{Username: "first", Role: RoleSystemAdmin}); err != nil {
		t.Fatal(err)
	}
	for round := range 10 {
		// The survivor of the last round and a new admin race to revoke
		// both.
		if _, err := s.CreateBinding(ctx, Binding{Username: fmt.Sprint("admin", round), Role: RoleSystemAdmin}); err != nil {
			t.Fatal(err)
		}
		bs, err := s.ListBindings(ctx)
		if err != nil || len(bs) != 2 {
			t.Fatalf("round %d: %d bindings, %v", round, len(bs), err)
		}
		errs := make(chan error, len(bs))
		var wg sync.WaitGroup
		for _, b := range bs {
			wg.Go(func() { errs <- s.DeleteBindingKeepingAdmin(ctx, b) })
		}
		wg.Wait()
		close(errs)
		refused := 0
		for err := range errs {
			switch {
			case errors.Is(err, ErrLastSystemAdmin):
				refused++
			case err != nil:
				t.Fatal(err)
			}
		}
		all, err := s.ListBindings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 || refused != 1 {
			t.Fatalf("round %d: %d bindings left, %d refused; want exactly one left", round, len(all), refused)
		}
	}
}
