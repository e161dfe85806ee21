package etcdserver

import (
	"log/slog"
	"testing"
)

// TestMemberKeepsFewCatchUpEntries pins what the running member keeps of
// its raft log in memory: etcd's default of 5,000 entries behind a
// snapshot, for followers the embedded member never has, held the last
// 5,000 writes of a registration burst on the heap for good (about 5 MiB
// of ecp's heap, twice that of its resident set, at 3,000 agents), and its
// default of a snapshot every 10,000 entries held up to as many more.
func TestMemberKeepsFewCatchUpEntries(t *testing.T) {
	srv, err := Start(t.Context(), Options{Dir: t.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// What etcd runs with, after its own defaulting (0 means 5,000).
	if got := srv.etcd.Server.Cfg.SnapshotCatchUpEntries; got != snapshotCatchUpEntries || got > 1000 {
		t.Fatalf("the member keeps %d raft entries behind a snapshot, want %d", got, snapshotCatchUpEntries)
	}
	// Entries since the last snapshot stay too (etcd's default: 10,000).
	if got := srv.etcd.Server.Cfg.SnapshotCount; got != snapshotCount || got > 1000 {
		t.Fatalf("the member takes a snapshot every %d raft entries, want %d", got, snapshotCount)
	}
}
