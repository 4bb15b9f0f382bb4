package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
)

// Concurrent writers share commits, and a writer whose change fails (a
// token spent twice, a serial stored twice) gets its own error without
// taking its neighbours in the same commit down with it.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	s, p := openTemp(t)
	ctx := context.Background()
	now := time.Now()
	const writers, tokens = 200, 20
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rec(int64(i+1), fmt.Sprintf("w%03d", i), pki.KindClient, now.Add(time.Hour))
			c.TokenID = fmt.Sprintf("tok-%02d", i%tokens) // each token offered 10 times
			errs[i] = s.PutCertificate(ctx, c)
		}()
	}
	wg.Wait()
	spent := map[string]int{}
	for i, err := range errs {
		switch {
		case err == nil:
			spent[fmt.Sprintf("tok-%02d", i%tokens)]++
		case !errors.Is(err, ErrTokenUsed):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if len(spent) != tokens {
		t.Fatalf("%d tokens spent, want %d", len(spent), tokens)
	}
	for tok, n := range spent {
		if n != 1 {
			t.Fatalf("token %s bought %d certificates", tok, n)
		}
	}
	// What was acknowledged is what is on disk, after a reopen.
	s.Close()
	s2, err := Open(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	all, err := s2.List(ctx, Filter{})
	if err != nil || len(all) != tokens {
		t.Fatalf("%d certificates stored (%v), want %d", len(all), err, tokens)
	}
	for _, c := range all {
		if u, err := s2.TokenUsed(ctx, c.TokenID); err != nil || u == nil || u.Serial != c.Serial {
			t.Fatalf("token of %s: %+v %v", c.Serial, u, err)
		}
	}
}

// BenchmarkPutCertificate measures durable (fsynced) stores by one writer
// and by many: one writer must not wait for company, many share fsyncs.
func BenchmarkPutCertificate(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", par), func(b *testing.B) {
			s, _ := openTemp(b)
			ctx := context.Background()
			now := time.Now()
			var next int64
			var mu sync.Mutex
			b.ResetTimer()
			run := func() error {
				mu.Lock()
				next++
				n := next
				mu.Unlock()
				return s.PutCertificate(ctx, rec(n, fmt.Sprintf("b%d", n), pki.KindClient, now.Add(time.Hour)))
			}
			if par == 1 {
				for range b.N {
					if err := run(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0))) // about par goroutines
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := run(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
