package ca

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

func TestConcurrentIssuanceUniqueAndStored(t *testing.T) {
	st, a := newCA(t, pki.KeyECP256, "")
	ctx := context.Background()
	var wg sync.WaitGroup
	serials := make(chan string, 64)
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			iss, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: fmt.Sprintf("dev%d", g), Role: pki.RoleReadonly})
			if err != nil {
				errs <- err
				return
			}
			serials <- iss.Record.Serial
		}(g)
	}
	wg.Wait()
	close(serials)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for s := range serials {
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
	list, err := st.List(ctx, store.Filter{})
	if err != nil || len(list) != 64 {
		t.Fatalf("stored %d of 64 certificates (%v)", len(list), err)
	}
	for _, c := range list {
		if !seen[c.Serial] || c.Role != pki.RoleReadonly || c.IssuedBy != "test" {
			t.Fatalf("unexpected record %+v", c)
		}
	}
}

// BenchmarkIssueFromCSR measures durable issuance: policy, signing by the
// embedded authority and the fsynced bbolt commit. Run with -cpu to vary
// parallelism; b.SetParallelism(16) on 2 CPUs gives 32 callers.
//
//	go test -tags nobadger,nomysql,nopgx -run '^$' -bench IssueFromCSR -benchtime 3s ./ca/
func BenchmarkIssueFromCSR(b *testing.B) {
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			_, a := newCA(b, pki.KeyECP256, "")
			csr := testCSR(b, "bench", nil, nil)
			ctx := context.Background()
			var failed atomic.Int64
			b.ResetTimer()
			if callers == 1 {
				for i := 0; i < b.N; i++ {
					if _, err := a.Issue(ctx, Request{Kind: pki.KindClient, CSR: csr}); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism((callers + 1) / max(1, runtimeGOMAXPROCS()))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := a.Issue(ctx, Request{Kind: pki.KindClient, CSR: csr}); err != nil {
							failed.Add(1)
						}
					}
				})
			}
			b.StopTimer()
			if failed.Load() > 0 {
				b.Fatalf("%d issuances failed", failed.Load())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "issuances/s")
		})
	}
}
