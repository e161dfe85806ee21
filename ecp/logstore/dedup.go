package logstore

import (
	"container/list"
	"sync"
	"time"
)

// dedupWindow remembers, per cluster and agent batch id, the batches stored
// recently, the ones in flight and, for a batch that failed half-way, the
// lines already stored, so that the agent's retry neither writes a line twice
// nor races its first attempt. See the package doc ("Exactly once").
type dedupWindow struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[string]*list.Element
	order   *list.List // of *dedupEntry, oldest first
}

type dedupEntry struct {
	key      string
	at       time.Time
	inFlight bool
	done     bool
	// written holds the log_ids stored by an attempt that then failed.
	written map[string]struct{}
}

// dedupState is what begin found.
type dedupState int

const (
	dedupNew dedupState = iota
	dedupDone
	dedupInFlight
)

func newDedupWindow(ttl time.Duration, maxEntries int) *dedupWindow {
	return &dedupWindow{ttl: ttl, max: maxEntries, entries: map[string]*list.Element{}, order: list.New()}
}

// begin marks key in flight unless it is already stored or in flight. For a
// new attempt it returns the ids a failed earlier attempt already stored.
func (d *dedupWindow) begin(key string, now time.Time) (dedupState, map[string]struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if el, ok := d.entries[key]; ok {
		e := el.Value.(*dedupEntry)
		switch {
		case e.done:
			return dedupDone, nil
		case e.inFlight:
			return dedupInFlight, nil
		}
		e.inFlight = true
		return dedupNew, e.written
	}
	e := &dedupEntry{key: key, at: now, inFlight: true}
	d.entries[key] = d.order.PushBack(e)
	for d.order.Len() > d.max {
		d.remove(d.order.Front())
	}
	return dedupNew, nil
}

// end records the outcome of an attempt begun with begin. written is the set
// of ids stored so far; it is kept only when the batch did not complete.
func (d *dedupWindow) end(key string, done bool, written map[string]struct{}, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.entries[key]
	if !ok {
		return // evicted meanwhile; the next attempt starts afresh
	}
	e := el.Value.(*dedupEntry)
	e.inFlight = false
	e.done = done
	if done {
		e.written = nil
	} else {
		e.written = written
	}
	// Refresh the entry's age: the window counts from the last attempt.
	e.at = now
	d.order.MoveToBack(el)
}

func (d *dedupWindow) expire(now time.Time) {
	for el := d.order.Front(); el != nil; el = d.order.Front() {
		e := el.Value.(*dedupEntry)
		if e.inFlight || now.Sub(e.at) < d.ttl {
			return
		}
		d.remove(el)
	}
}

func (d *dedupWindow) remove(el *list.Element) {
	delete(d.entries, el.Value.(*dedupEntry).key)
	d.order.Remove(el)
}
