package clusters

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/ecpio/ecp/ecp/httpapi"
	"github.com/ecpio/ecp/ecp/registry"
)

// Paging of the cluster lists.
const (
	// DefaultListLimit is the page size when the caller gives no limit.
	DefaultListLimit = 100
	// MaxListLimit is the largest page a caller may ask for.
	MaxListLimit = 1000
	// MaxQueryRunes bounds q: no name is longer, so a longer q matches
	// nothing.
	MaxQueryRunes = MaxNameRunes
)

// ListPage is the reply of the cluster lists: one page of entries in
// (name, id) order and what it takes to move on.
type ListPage struct {
	Items []Cluster `json:"items"`
	// NextPageToken continues after the last item; empty on the last page.
	NextPageToken string `json:"nextPageToken,omitempty"`
	// PrevPageToken leads to the page before the first item; empty on the
	// first page.
	PrevPageToken string `json:"prevPageToken,omitempty"`
	// Total is how many entries match q and state.
	Total int `json:"total"`
	// StateCounts is how many of the list's entries are in each state,
	// before the q and state filters (the console's filter shows them).
	StateCounts map[string]int `json:"stateCounts"`
}

// listQuery is a validated list request.
type listQuery struct {
	// scope names the list a token belongs to (a project, or the fleet).
	scope string
	q     string
	// lowerQ is q lower-cased, for the case-insensitive name match.
	lowerQ string
	state  string
	limit  int
	cur    *cursor
}

// cursor is what a page token holds: where the page it leads to starts.
// Tokens are opaque to callers; they are base64url JSON so that a token
// stays valid across replicas and restarts.
type cursor struct {
	// Fingerprint binds the token to the list and filters it was made
	// for.
	Fingerprint string `json:"f"`
	// Back is true for a previous-page token: the page ends before the
	// key; otherwise it starts after it.
	Back bool   `json:"b,omitempty"`
	Name string `json:"n"`
	ID   string `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c) // strings and a bool: cannot fail
	return base64.RawURLEncoding.EncodeToString(b)
}

// fingerprint is what a token must have been issued for: the same list and
// the same filters (the page size may change between pages).
func (q *listQuery) fingerprint() string {
	h := sha256.Sum256([]byte(q.scope + "\x00" + q.q + "\x00" + q.state))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

// listQueryOf reads a list request's query string. A limit that is not a
// number is kept as -1, which newListQuery refuses in its turn.
func listQueryOf(v url.Values) ListQuery {
	in := ListQuery{Q: v.Get("q"), State: v.Get("state"), PageToken: v.Get("pageToken")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			n = -1
		}
		in.Limit = n
	}
	return in
}

// parseListQuery validates the query of a list request; every refusal
// names its field.
func parseListQuery(v url.Values, scope string) (*listQuery, error) {
	return newListQuery(listQueryOf(v), scope)
}

// newListQuery validates a list request for the list named scope; every
// refusal names its field.
func newListQuery(in ListQuery, scope string) (*listQuery, error) {
	q := &listQuery{scope: scope, q: strings.TrimSpace(in.Q), state: in.State, limit: DefaultListLimit}
	if q.state != "" && !slices.Contains(States, q.state) {
		return nil, httpapi.Invalid("state", "state must be one of %s", strings.Join(States, ", "))
	}
	if utf8.RuneCountInString(q.q) > MaxQueryRunes {
		return nil, httpapi.Invalid("q", "q (a part of the cluster name, or its id) must be at most %d characters", MaxQueryRunes)
	}
	q.lowerQ = strings.ToLower(q.q)
	if in.Limit != 0 {
		if in.Limit < 1 || in.Limit > MaxListLimit {
			return nil, httpapi.Invalid("limit", "limit must be an integer from 1 to %d (default %d)", MaxListLimit, DefaultListLimit)
		}
		q.limit = in.Limit
	}
	if tok := in.PageToken; tok != "" {
		c, err := decodeCursor(tok)
		if err != nil {
			return nil, httpapi.Invalid("pageToken", "pageToken is not a page token of this list; start again without it")
		}
		if c.Fingerprint != q.fingerprint() {
			return nil, httpapi.Invalid("pageToken", "pageToken was issued for another list or other filters (q, state); repeat the request with the filters it came with, or start again without it")
		}
		q.cur = c
	}
	return q, nil
}

func decodeCursor(tok string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, fmt.Errorf("decode page token: %w", err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode page token: %w", err)
	}
	if c.Fingerprint == "" || c.ID == "" {
		return nil, fmt.Errorf("decode page token: incomplete")
	}
	return &c, nil
}

// matches reports whether an entry in state passes q and the state filter.
// q matches a part of the name, whatever the case, or the whole id.
func (q *listQuery) matches(it *registry.Entry, state string) bool {
	if q.state != "" && state != q.state {
		return false
	}
	return q.lowerQ == "" || strings.Contains(it.LowerName, q.lowerQ) || it.Spec.ID == q.q
}

// compareCursor orders an entry against the cursor's key.
func compareCursor(it *registry.Entry, c *cursor) int {
	if n := strings.Compare(it.Spec.Name, c.Name); n != 0 {
		return n
	}
	return strings.Compare(it.Spec.ID, c.ID)
}

// scratch is the per-request memory of a list walk, pooled: at 10,000
// entries it is a few hundred KiB that would otherwise be garbage on every
// request (and every refresh of every open console).
type scratch struct {
	items  []*registry.Entry
	ids    []string
	states []string
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) release() {
	clear(s.items)
	clear(s.ids)
	clear(s.states)
	s.items, s.ids, s.states = s.items[:0], s.ids[:0], s.states[:0]
	scratchPool.Put(s)
}

// readStates fills s.states with the state of each of s.items.
func (api *API) readStates(ctx context.Context, s *scratch) error {
	n := len(s.items)
	s.ids = slices.Grow(s.ids[:0], n)
	for _, it := range s.items {
		s.ids = append(s.ids, it.Spec.ID)
	}
	s.states = slices.Grow(s.states[:0], n)[:n]
	if err := api.fleet.States(ctx, s.ids, s.states); err != nil {
		return fmt.Errorf("read cluster states: %w", err)
	}
	for i, st := range s.states {
		if st == "" {
			s.states[i] = StateCreated
		}
	}
	return nil
}

// page answers a list request over the ordered entries of one project (or
// of every project, keeping those visible says the caller may see). It
// walks them once: it counts states and matches and keeps only the page's
// entries, so what it builds is the page whatever the list's size.
func (api *API) page(ctx context.Context, project string, visible func(project string) bool, q *listQuery) (ListPage, error) {
	s := scratchPool.Get().(*scratch)
	defer s.release()
	s.items = api.index.AppendSnapshot(s.items[:0], project, visible)
	if q.state == "" {
		// Nothing to filter by state: the counts come from fleet's tally,
		// and only the page's entries need their state (their status).
		out, err := api.pageOf(ctx, s.items, nil, q)
		if err != nil {
			return ListPage{}, err
		}
		return out, api.countStates(ctx, project, visible, len(s.items), out.StateCounts)
	}
	if err := api.readStates(ctx, s); err != nil {
		return ListPage{}, err
	}
	return api.pageOf(ctx, s.items, s.states, q)
}

// countStates fills counts (zero for every state) for n entries of the
// scope: fleet counts every state but created, which is the rest.
func (api *API) countStates(ctx context.Context, project string, visible func(string) bool, n int, counts map[string]int) error {
	if err := api.fleet.StateCounts(ctx, project, visible, counts); err != nil {
		return fmt.Errorf("count cluster states: %w", err)
	}
	others := 0
	for _, st := range States {
		if st != StateCreated {
			others += counts[st]
		}
	}
	// Fleet's copy of the records may be a moment behind the index's.
	counts[StateCreated] = max(n-others, 0)
	return nil
}

// pageOf picks the page q asks for from items in order, with their states
// (nil when q filters on no state: the counts are then left at zero, for
// the caller to fill).
func (api *API) pageOf(ctx context.Context, items []*registry.Entry, states []string, q *listQuery) (ListPage, error) {
	var counts [4]int // by index in States
	out := ListPage{}
	var (
		sel           = make([]*registry.Entry, 0, min(q.limit, len(items)))
		head          int // of the ring sel is while walking back
		before, after int // matches outside the page
	)
	back := q.cur != nil && q.cur.Back
	for i, it := range items {
		var state string
		if states != nil {
			state = states[i]
			if k := slices.Index(States, state); k >= 0 {
				counts[k]++
			}
		}
		if !q.matches(it, state) {
			continue
		}
		out.Total++
		switch {
		case back && compareCursor(it, q.cur) >= 0:
			after++
		case back && len(sel) == q.limit:
			// Keep the last limit matches before the cursor.
			sel[head] = it
			head = (head + 1) % q.limit
			before++
		case back:
			sel = append(sel, it)
		case q.cur != nil && compareCursor(it, q.cur) <= 0:
			before++
		case len(sel) < q.limit:
			sel = append(sel, it)
		default:
			after++
		}
	}
	if back {
		if before == 0 && len(sel) < q.limit {
			// The walk back reached the start: show the full first page
			// rather than a short one.
			first := *q
			first.cur = nil
			return api.pageOf(ctx, items, states, &first)
		}
		sel = append(sel[head:], sel[:head]...)
	}
	out.StateCounts = make(map[string]int, len(States))
	for k, st := range States {
		out.StateCounts[st] = counts[k]
	}
	out.Items = make([]Cluster, 0, len(sel))
	for _, it := range sel {
		// The page shows each entry's status as of now, which may have
		// moved on since the filter read its state.
		st, err := api.fleet.Status(ctx, it.Spec.ID)
		if err != nil {
			return ListPage{}, fmt.Errorf("read status of cluster %s: %w", it.Spec.ID, err)
		}
		out.Items = append(out.Items, toCluster(it.Spec, st))
	}
	fp := q.fingerprint()
	switch {
	case len(sel) > 0:
		if after > 0 {
			last := sel[len(sel)-1].Spec
			out.NextPageToken = cursor{Fingerprint: fp, Name: last.Name, ID: last.ID}.encode()
		}
		if before > 0 {
			first := sel[0].Spec
			out.PrevPageToken = cursor{Fingerprint: fp, Back: true, Name: first.Name, ID: first.ID}.encode()
		}
	case before > 0:
		// Walked past the end (entries went away): the previous page ends
		// with the cursor's own entry, so it goes back from just after it
		// (no id holds a NUL).
		out.PrevPageToken = cursor{Fingerprint: fp, Back: true, Name: q.cur.Name, ID: q.cur.ID + "\x00"}.encode()
	}
	return out, nil
}
