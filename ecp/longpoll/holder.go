package longpoll

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// holder keeps the polls Hold took over until they are answered, all from
// one goroutine. A poll waiting here keeps no goroutine and no timer of its
// own: only its place in a deadline heap and the callback that
// context.AfterFunc registers on its Check's context. (A goroutine and a
// timer per poll were some 3 KiB of stack per agent, and a wake-up of the
// scheduler per answer.) The goroutine runs while polls are held and ends
// when none is, so an idle server, or a test, keeps none.
type holder struct {
	mu      sync.Mutex
	waiting deadlines // by deadline, earliest first
	woken   []*held   // woken by their Check's context or their Stop
	// stops watches each Stop of the polls in waiting once, for all of
	// them: every poll of a server shares its Stop, and a callback per
	// poll on it was an entry per agent in its children and some 200
	// bytes more per held poll.
	stops   map[context.Context]*stopWatch
	running bool
	// sleepUntil is the deadline the goroutine sleeps until; zero while
	// it is busy (it looks at the heap again before it sleeps).
	sleepUntil time.Time
	wake       chan struct{} // the goroutine has something new to look at
}

// heldPolls is the process's holder: the taken-over polls of every server.
var heldPolls = &holder{wake: make(chan struct{}, 1), stops: map[context.Context]*stopWatch{}}

// stopWatch is the watch on one Stop context: how many polls in the heap
// share it, and how to end the watch when none does.
type stopWatch struct {
	polls   int
	unwatch func() bool
}

// A poll may be answered a little before its deadline, together with one
// that falls due: a hundredth of its hold, at most maxEarly. At 10,000
// agents a held report falls due every 1.5 ms, and answered one at a
// time each answer (and the connection handed back with it) finds the
// process idle: most likely a thread of the runtime woken, spinning for
// more work and put to sleep again per answer. Answered in batches, ecp
// took 34.5 % of a core at 10,000 agents answering each at its deadline,
// 29.1 % with answers up to 5 ms early, 17.6 and 23.0 % (two runs) with
// 15 ms and 16.9 % with 30 ms (bench/fleet, session 8). The agent asks to
// be held until a second (a tenth of a shorter interval) before its next
// tick, so 30 ms earlier costs it nothing; a short hold stays nearly as
// asked.
const (
	maxEarly     = 30 * time.Millisecond
	earlyPerHold = 100 // a hundredth
)

// add holds h until its deadline, its Check's context or its Stop.
func (a *holder) add(h *held) {
	h.answerFrom = h.p.Deadline.Add(-min(maxEarly, time.Until(h.p.Deadline)/earlyPerHold))
	a.mu.Lock()
	a.waitLocked(h)
	start := !a.running
	a.running = true
	// Most polls fall due after the one the goroutine sleeps until: it
	// need not wake for them (a wake-up per report, otherwise).
	wake := !a.sleepUntil.IsZero() && h.p.Deadline.Before(a.sleepUntil)
	a.mu.Unlock()
	if start {
		go a.run()
	} else if wake {
		a.signal()
	}
}

// waitLocked puts h in the heap and watches its contexts. The callbacks
// run on goroutines of their own and take a.mu, so they find h in place.
func (a *holder) waitLocked(h *held) {
	heap.Push(&a.waiting, h)
	h.unwatch = nil
	if h.changed != nil {
		h.unwatch = context.AfterFunc(h.changed, func() { a.wakeUp(h) })
	}
	stop := h.p.Stop
	if stop == nil {
		return
	}
	w := a.stops[stop]
	if w == nil {
		w = &stopWatch{}
		w.unwatch = context.AfterFunc(stop, func() { a.stopped(stop) })
		a.stops[stop] = w
	}
	w.polls++
}

// takeLocked removes the poll at index i of the heap, and ends the watch
// on its Stop when no other poll in the heap shares it.
func (a *holder) takeLocked(i int) *held {
	h := heap.Remove(&a.waiting, i).(*held)
	if w := a.stops[h.p.Stop]; w != nil {
		if w.polls--; w.polls == 0 {
			w.unwatch()
			delete(a.stops, h.p.Stop)
		}
	}
	return h
}

// wakeUp moves h from the heap to the woken, unless the goroutine took it
// already.
func (a *holder) wakeUp(h *held) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if h.index < 0 {
		return
	}
	a.wakeLocked(h)
	a.signal()
}

// wakeLocked moves h, in the heap, to the woken for the goroutine to
// settle.
func (a *holder) wakeLocked(h *held) {
	a.takeLocked(h.index)
	h.woken = true
	a.woken = append(a.woken, h)
}

// stopped wakes every poll in the heap whose Stop is stop, now done.
func (a *holder) stopped(stop context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var stopping []*held
	for _, h := range a.waiting {
		if h.p.Stop == stop {
			stopping = append(stopping, h)
		}
	}
	for _, h := range stopping {
		a.wakeLocked(h)
	}
	if len(stopping) > 0 {
		a.signal()
	}
}

func (a *holder) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run answers the polls that fall due or are woken, until none is held.
func (a *holder) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var due []*held
	for {
		a.mu.Lock()
		due = append(due[:0], a.woken...)
		clear(a.woken)
		a.woken = a.woken[:0]
		// The heap is by deadline; a poll whose answerFrom has not come
		// yet ends the batch, even if one after it could join (a shorter
		// hold, fewer milliseconds early).
		now := time.Now()
		for len(a.waiting) > 0 && !a.waiting[0].answerFrom.After(now) {
			due = append(due, a.takeLocked(0))
		}
		if len(due) == 0 && len(a.waiting) == 0 {
			a.running = false
			a.mu.Unlock()
			return
		}
		if len(due) == 0 {
			a.sleepUntil = a.waiting[0].p.Deadline
			timer.Reset(time.Until(a.sleepUntil))
			a.mu.Unlock()
			select {
			case <-timer.C:
			case <-a.wake:
				timer.Stop()
			}
			a.mu.Lock()
			a.sleepUntil = time.Time{}
			a.mu.Unlock()
			continue
		}
		a.mu.Unlock()
		for i, h := range due {
			a.settle(h)
			due[i] = nil
		}
	}
}

// settle answers h, or holds it again when it was woken for nothing.
func (a *holder) settle(h *held) {
	if h.unwatch != nil {
		h.unwatch()
	}
	woken := h.woken
	h.woken = false
	if h.respond(!woken) {
		return
	}
	a.mu.Lock()
	a.waitLocked(h)
	a.mu.Unlock()
}

// deadlines is a min-heap of held polls by deadline.
type deadlines []*held

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].p.Deadline.Before(d[j].p.Deadline) }
func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].index, d[j].index = i, j
}

func (d *deadlines) Push(x any) {
	h := x.(*held)
	h.index = len(*d)
	*d = append(*d, h)
}

func (d *deadlines) Pop() any {
	old := *d
	h := old[len(old)-1]
	old[len(old)-1] = nil
	h.index = -1
	*d = old[:len(old)-1]
	return h
}
