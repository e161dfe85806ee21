package tenancy

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ecpio/ecp/ecp/auth"
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

// TestBindingsBelongToOneUserGeneration: a role granted to a user is not
// inherited by a later user of the same name, cannot be granted once that
// user is gone, and removing the earlier user's roles leaves the later
// one's.
func TestBindingsBelongToOneUserGeneration(t *testing.T) {
	cli := etcdtest.Client(t)
	s := NewStore(cli)
	a := NewAuthorizer(s)
	ctx := t.Context()
	createUser := func() int64 {
		resp, err := cli.Put(ctx, auth.UsersPrefix+"x", "{}")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	first := createUser()
	p1, p2 := Project{ID: "p1", Org: "o"}, Project{ID: "p2", Org: "o"}
	if _, err := s.CreateBinding(ctx, Binding{Username: "x", Role: RoleProjectAdmin, Org: "o", Project: p1.ID, UserGeneration: first}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, auth.UsersPrefix+"x"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateBinding(ctx, Binding{Username: "x", Role: RoleProjectViewer, Org: "o", Project: p2.ID, UserGeneration: first}); !errors.Is(err, ErrUserGone) {
		t.Fatalf("granting a role to a deleted user: %v, want ErrUserGone", err)
	}
	second := createUser()
	if _, err := s.CreateBinding(ctx, Binding{Username: "x", Role: RoleProjectViewer, Org: "o", Project: p2.ID, UserGeneration: second}); err != nil {
		t.Fatal(err)
	}
	ac, err := a.Access(ctx, &auth.Principal{Username: "x", Generation: second})
	if err != nil {
		t.Fatal(err)
	}
	if ac.Project(p1) != None || ac.Project(p2) != View {
		t.Fatalf("the second x holds %d on p1 (the first x's) and %d on p2, want none and view", ac.Project(p1), ac.Project(p2))
	}
	if err := a.ForgetUser(ctx, "x", first); err != nil {
		t.Fatal(err)
	}
	left, err := s.UserBindings(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].Project != p2.ID {
		t.Fatalf("after forgetting the first x, bindings %+v, want only the second x's on p2", left)
	}
}
