package fleet

import "context"

// States writes the lifecycle state of each cluster in ids to the same
// index of out (as Status would give it), under one lock and without
// building whole statuses: a list filtered by state reads the state of
// every entry in its scope, where Status one by one would cost a lock, a
// clock read and an allocation each. out must be as long as ids.
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

// tallied are the states the tally counts: every state but StateCreated,
// the state of every entry with no status, which a list counts as its
// entries less these.
var tallied = [...]string{StateRegistering, StateRunning, StateAbnormal}

// stateTally counts a project's entries by state, in tallied's order.
type stateTally [len(tallied)]int

// tallyLocked adds d (+1 or -1) to the count of e's project and state,
// when e has a spec and a state the tally counts. Callers take e out
// (-1) before changing its spec or status and put it back (+1) after, so
// the tally follows every change without a scan.
func (m *memory) tallyLocked(e *entry, d int) {
	if !e.hasSpec || !e.hasStatus {
		return
	}
	for k, st := range tallied {
		if e.status.State != st {
			continue
		}
		t := m.tally[e.spec.Project]
		if t == nil {
			t = new(stateTally)
			m.tally[e.spec.Project] = t
		}
		t[k] += d
		if *t == (stateTally{}) {
			delete(m.tally, e.spec.Project)
		}
	}
}

// StateCounts adds to out, by state, how many clusters of project (or,
// when project is "", of every project visible says) are in each state
// but StateCreated: kept up to date as states change, it answers a list's
// counts without reading the state of each of its entries.
func (f *Fleet) StateCounts(ctx context.Context, project string, visible func(project string) bool, out map[string]int) error {
	if err := f.waitReady(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	add := func(t *stateTally) {
		for k, st := range tallied {
			out[st] += t[k]
		}
	}
	if project != "" {
		if t := f.tally[project]; t != nil {
			add(t)
		}
		return nil
	}
	for p, t := range f.tally {
		if visible == nil || visible(p) {
			add(t)
		}
	}
	return nil
}
