package kv

import (
	"sync"
)

// GroupCommit shares write transactions, and so their fsyncs (bbolt) or
// their round trips and raft entries (etcd), among writers that arrive
// together, without making anyone wait for company. Both backends' Batch
// use it.
//
// bbolt's own DB.Batch holds every batch open for MaxBatchDelay hoping for
// more writers; a lone writer (one client, or the CLI) pays that delay on
// every commit. Here a writer that finds a lane free (no commit running,
// with one lane) commits at once, alone if need be. Writers that arrive
// while the lanes are busy queue up, and when a commit finishes the first
// of them commits the queue (up to MaxCalls) in one transaction. Under
// load every commit carries what arrived during the previous one; idle, a
// commit costs one transaction.
//
// A writer returns only after the transaction holding its change has been
// committed (and fsynced, unless the store was opened with NoSync), so
// every acknowledged write is durable.
type GroupCommit struct {
	// Update runs one transaction (the backend's own Update).
	Update func(fn func(Tx) error) error
	// MaxCalls caps the writers sharing one transaction (0: no cap), for
	// a backend that caps a transaction's size.
	MaxCalls int
	// Lanes is how many shared transactions may run at once (0: one). A
	// backend whose transactions are optimistic and remote (etcd) spends
	// most of one in round trips, reading and then committing; a second
	// lane reads while the first commits. bbolt has one writer anyway.
	Lanes int

	mu      sync.Mutex
	pending []*groupCall
	running int // lanes committing
}

type groupCall struct {
	fn      func(Tx) error
	err     error
	done    chan struct{} // closed when err is final
	lead    chan struct{} // signalled when this call is to commit the queue
	leading bool          // lead was signalled (at most once: one lane each)
}

// Do runs fn in a write transaction shared with the writers queued at the
// same moment. fn may run more than once (when another writer's function
// fails, the rest are retried without it) and must be idempotent.
func (g *GroupCommit) Do(fn func(Tx) error) error {
	c := &groupCall{fn: fn, done: make(chan struct{}), lead: make(chan struct{}, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if g.running < max(g.Lanes, 1) {
		// c runs a lane of its own: no other lane is passed to it.
		c.leading = true
		g.running++
		g.mu.Unlock()
		g.commitQueue()
	} else {
		g.mu.Unlock()
		select {
		case <-c.lead:
			g.commitQueue()
		case <-c.done:
			// Another lane committed this call after a lane had been
			// passed to it: the lane must still run, or it is lost.
			g.mu.Lock()
			passed := c.leading
			g.mu.Unlock()
			if passed {
				<-c.lead
				g.commitQueue()
			}
		}
	}
	<-c.done
	return c.err
}

// commitQueue commits everything queued, then passes the turn to the first
// writer that queued meanwhile (or marks the committer idle), so that no
// writer's latency includes commits made for later arrivals.
func (g *GroupCommit) commitQueue() {
	g.mu.Lock()
	calls := g.pending
	if g.MaxCalls > 0 && len(calls) > g.MaxCalls {
		calls, g.pending = calls[:g.MaxCalls:g.MaxCalls], calls[g.MaxCalls:]
	} else {
		g.pending = nil
	}
	g.mu.Unlock()

	g.commitCalls(calls)

	// The lane passes to the first writer still waiting that no other
	// lane has called on yet; it stops when there is none.
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.pending {
		if !c.leading {
			c.leading = true
			c.lead <- struct{}{}
			return
		}
	}
	g.running--
}

// commitCalls runs calls in one transaction. A function that fails is taken
// out, the others are retried together, and the failed one is run alone so
// its error is its own and not an artefact of its neighbours.
func (g *GroupCommit) commitCalls(calls []*groupCall) {
	var solo []*groupCall
	for len(calls) > 0 {
		failed := -1
		err := g.Update(func(tx Tx) error {
			failed = -1
			for i, c := range calls {
				if err := c.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 && len(calls) > 1 {
			solo = append(solo, calls[failed])
			calls = append(calls[:failed:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			c.err = err
			close(c.done)
		}
		break
	}
	for _, c := range solo {
		c.err = g.Update(c.fn)
		close(c.done)
	}
}
