package fleet

import "context"

// States writes the lifecycle state of each cluster in ids to the same
// index of out (as Status would give it), under one lock and without
// building whole statuses: the cluster lists filter and count thousands of
// entries per request, where Status one by one would cost a lock, a clock
// read and an allocation each. out must be as long as ids.
func (f *Fleet) States(ctx context.Context, ids, out []string) error {
	if err := f.waitReady(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, id := range ids {
		out[i] = StateCreated
		if e := f.entries[id]; e != nil && e.hasStatus && e.status.State != "" {
			out[i] = e.status.State
		}
	}
	return nil
}
