package store

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// TestPrecheckWhileAnotherProcessWrites: the damage check reads the file
// without bbolt's lock, while a writer commits; it must never mistake a
// live database for a damaged one.
func TestPrecheckWhileAnotherProcessWrites(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	var stop atomic.Bool
	done := make(chan error, 1)
	go func() {
		for i := 0; !stop.Load(); i++ {
			// Settings and tokens grow the file and move the freelist.
			if err := s.SetSetting(ctx, fmt.Sprintf("k%d", i%500), make([]byte, 100+i%3000)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	deadline := time.Now().Add(time.Second)
	n := 0
	for time.Now().Before(deadline) {
		if err := precheckFile(path); err != nil {
			stop.Store(true)
			<-done
			t.Fatalf("precheck %d of a live database: %v", n, err)
		}
		n++
	}
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
