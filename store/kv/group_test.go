package kv

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// With several lanes, up to Lanes shared transactions run at once, never
// more; every writer's change is committed exactly once and every writer
// returns, no lane is lost (passed to a writer that runs a lane of its own
// already, or that another lane committed meanwhile), and at most MaxCalls
// writers share a transaction. Eight lanes with instant commits make the
// hand-offs race.
func TestGroupCommitLanes(t *testing.T) {
	for _, lanes := range []int{0, 1, 3, 8} {
		var running, most, txs atomic.Int32
		g := &GroupCommit{MaxCalls: 4, Lanes: lanes, Update: func(fn func(Tx) error) error {
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			txs.Add(1)
			if lanes < 8 {
				time.Sleep(200 * time.Microsecond) // the round trips of a remote commit
			}
			return fn(nil)
		}}
		const writers = 2000
		var committed [writers]atomic.Int32
		var wg sync.WaitGroup
		done := make(chan struct{})
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := g.Do(func(Tx) error {
					committed[i].Add(1)
					return nil
				}); err != nil {
					t.Error(err)
				}
			}()
		}
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("lanes=%d: writers still waiting after 30 s (a lane was lost)", lanes)
		}
		g.mu.Lock()
		lost := g.running
		g.mu.Unlock()
		if lost != 0 {
			t.Fatalf("lanes=%d: %d lanes still marked running with every writer gone: lost", lanes, lost)
		}
		for i := range writers {
			if n := committed[i].Load(); n != 1 {
				t.Fatalf("lanes=%d: writer %d committed %d times", lanes, i, n)
			}
		}
		want := int32(max(lanes, 1))
		if most.Load() > want {
			t.Fatalf("lanes=%d: %d transactions at once", lanes, most.Load())
		}
		if txs.Load() < writers/4 {
			t.Fatalf("lanes=%d: %d transactions for %d writers: more than MaxCalls (4) per transaction", lanes, txs.Load(), writers)
		}
		t.Logf("lanes=%d: %d writers in %d transactions, at most %d at once", lanes, writers, txs.Load(), most.Load())
	}
}
