package tenancy

import (
	"context"
	"testing"
	"time"

	"github.com/ecpio/ecp/ecp/auth"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// eventually waits up to 10 s for cond (another replica's write reaches
// this one through its watch).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
}

// TestSnapshotReadsTheMirror: issue #13: a console page's Snapshot read
// bindings, organizations and projects from etcd (3 ranges) and every API
// request's Access the caller's bindings. Once the replica's mirror has
// loaded, neither reads etcd; a revocation on this replica takes effect at
// once, one on another replica when the watch delivers it; and a replica
// whose mirror has not loaded reads etcd instead of answering from an
// empty copy.
func TestSnapshotReadsTheMirror(t *testing.T) {
	cli := etcdtest.Client(t)
	ctx := t.Context()
	s, other := NewStore(cli), NewStore(cli)
	o, err := s.CreateOrg(ctx, "o")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.CreateProject(ctx, o.ID, "p")
	if err != nil {
		t.Fatal(err)
	}
	viewer := Binding{Username: "ann", Role: RoleProjectViewer, Org: o.ID, Project: p.ID}
	if _, err := s.CreateBinding(ctx, viewer); err != nil {
		t.Fatal(err)
	}
	ann := &auth.Principal{Username: "ann"}
	authz := NewAuthorizer(s)
	level := func(a *Authorizer) Level {
		t.Helper()
		ac, err := a.Snapshot(ctx, ann)
		if err != nil {
			t.Fatal(err)
		}
		pr, err := a.getProject(ctx, ac, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		return ac.Project(pr)
	}
	// Not loaded: etcd answers.
	if got := level(authz); got != View {
		t.Fatalf("before the mirror loads: level %d, want View", got)
	}

	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.RunMirror(mctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the mirror has not loaded", s.view.ready)

	before := etcdtest.Ranges(t)
	if got := level(authz); got != View {
		t.Fatalf("from the mirror: level %d, want View", got)
	}
	if _, err := authz.Access(ctx, ann); err != nil {
		t.Fatal(err)
	}
	if reads := etcdtest.Ranges(t) - before; reads != 0 {
		t.Errorf("Snapshot, a project lookup and Access read etcd %v times, want 0", reads)
	}

	// Revoked here: refused at once.
	viewer.ID = BindingID(viewer.Username, viewer.Role, viewer.Org, viewer.Project)
	if err := s.DeleteBinding(ctx, viewer); err != nil {
		t.Fatal(err)
	}
	if got := level(authz); got != None {
		t.Fatalf("right after revoking on this replica: level %d, want None", got)
	}
	// Granted and revoked on another replica: seen once the watch delivers.
	if _, err := other.CreateBinding(ctx, viewer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a grant on another replica never arrived", func() bool { return level(authz) == View })
	if err := other.DeleteBinding(ctx, viewer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a revocation on another replica never arrived", func() bool { return level(authz) == None })
}
