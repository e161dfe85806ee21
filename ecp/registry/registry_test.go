package registry

import (
	"context"
	"errors"
	"slices"
	"testing"
)

type fakeRecords struct {
	calls *[]string
	also  []string
}

func (f *fakeRecords) Delete(_ context.Context, id string, also ...string) (Spec, error) {
	*f.calls = append(*f.calls, "records")
	f.also = also
	return Spec{ID: id, Project: "p"}, nil
}

type fakeBinder struct {
	calls *[]string
	err   error
}

func (f fakeBinder) Forget(context.Context, string) error {
	*f.calls = append(*f.calls, "binder")
	return f.err
}

// TestDeleteOrder: the agent is revoked first, then the record goes with
// every declared key in one call (then the mirror's subscribers hear of
// it: TestDeleteTellsSubscribers); a failed revocation leaves the record
// in place so the call can be retried.
func TestDeleteOrder(t *testing.T) {
	for _, tc := range []struct {
		name      string
		forgetErr error
		want      []string
	}{
		{"ok", nil, []string{"binder", "records"}},
		{"revocation fails", errors.New("etcd down"), []string{"binder"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls []string
			recs := &fakeRecords{calls: &calls}
			r := New(recs, nil, nil)
			r.SetBinder(fakeBinder{calls: &calls, err: tc.forgetErr})
			r.KeepsKeys(func(id string) []string { return []string{"/a/" + id} })
			r.KeepsKeys(func(id string) []string { return []string{"/b/" + id} })
			_, err := r.Delete(t.Context(), "c1")
			if (err != nil) != (tc.forgetErr != nil) {
				t.Fatalf("Delete error %v, want %v", err, tc.forgetErr)
			}
			if !slices.Equal(calls, tc.want) {
				t.Fatalf("calls %v, want %v", calls, tc.want)
			}
			if tc.forgetErr == nil && !slices.Equal(recs.also, []string{"/a/c1", "/b/c1"}) {
				t.Fatalf("keys deleted with the record %v, want /a/c1 /b/c1", recs.also)
			}
		})
	}
}
