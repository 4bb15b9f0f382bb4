package serve_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

// TestLoadSign drives /v1/sign over HTTPS with 64 concurrent clients, each
// on its own TLS connection, and checks zero errors and that every
// certificate is stored exactly once with its token spent. It is not part
// of the default run:
//
//	DOCKCA_LOAD=1 [DOCKCA_LOAD_N=20000] [DOCKCA_LOAD_CLIENTS=64] go test -tags nobadger,nomysql,nopgx ./serve -run TestLoadSign -v
func TestLoadSign(t *testing.T) {
	if os.Getenv("DOCKCA_LOAD") == "" {
		t.Skip("set DOCKCA_LOAD=1 to run the load test")
	}
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("DOCKCA_LOAD_N")); err == nil && v > 0 {
		n = v
	}
	clients := 64
	if v, err := strconv.Atoi(os.Getenv("DOCKCA_LOAD_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	ts := startServer(t, serve.Options{SignRate: 1e6, SignBurst: 1e6})
	ctx := context.Background()
	minter, err := ca.UnlockTokenKey(ctx, ts.st, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}

	// Tokens and CSRs are made before the clock starts: the test measures
	// the service, not the clients' key generation.
	type job struct{ body api.SignRequest }
	jobs := make([]job, n)
	key, err := pki.GenerateKey(pki.KeyECP256)
	if err != nil {
		t.Fatal(err)
	}
	for i := range jobs {
		name := fmt.Sprintf("load-%06d", i)
		tok, _, err := minter.Mint(ca.TokenRequest{Kind: "client", Name: name, CAURL: ts.URL()}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
		if err != nil {
			t.Fatal(err)
		}
		jobs[i].body = api.SignRequest{Token: tok, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	}
	before := ts.certCount(t)

	pool := x509.NewCertPool()
	pool.AddCert(ts.Authority().Root())
	latencies := make([]time.Duration, n)
	serials := make([]string, n)
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	// DOCKCA_LOAD_PROFILE=PREFIX writes PREFIX.cpu and PREFIX.allocs
	// covering the measured window only (not the token and CSR minting).
	stopProfile := startProfile(t, os.Getenv("DOCKCA_LOAD_PROFILE"))
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 1,
			}}
			defer hc.CloseIdleConnections()
			for i := range next {
				t0 := time.Now()
				var resp api.CertResponse
				if err := api.Do(ctx, hc, http.MethodPost, ts.URL()+api.PathSign, jobs[i].body, &resp); err != nil {
					errs <- err
					continue
				}
				latencies[i] = time.Since(t0)
				serials[i] = resp.Serial
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopProfile()
	close(errs)
	nerr := 0
	for err := range errs {
		if nerr < 5 {
			t.Errorf("request failed: %v", err)
		}
		nerr++
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[min(n-1, int(float64(n)*p))] }
	rate := float64(n) / elapsed.Seconds()
	t.Logf("%d signings by %d clients in %s: %.0f/s; latency p50 %s p90 %s p99 %s max %s; errors %d",
		n, clients, elapsed.Round(time.Millisecond), rate, pct(.50), pct(.90), pct(.99), latencies[n-1], nerr)

	// Every certificate stored exactly once, and every token spent.
	certs, err := ts.st.List(ctx, store.Filter{Kind: pki.KindClient})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, c := range certs {
		seen[c.Serial]++
	}
	for i, s := range serials {
		if s == "" {
			continue
		}
		if seen[s] != 1 {
			t.Fatalf("certificate %d (%s) stored %d times", i, s, seen[s])
		}
	}
	if got := ts.certCount(t) - before; got != n-nerr {
		t.Fatalf("%d certificates stored for %d successful signings", got, n-nerr)
	}
	if nerr > 0 {
		t.Fatalf("%d errors", nerr)
	}
	if clients == 64 && (rate < 1000 || pct(.99) > 100*time.Millisecond) {
		t.Errorf("below target: %.0f/s (want >= 1000), p99 %s (want < 100ms)", rate, pct(.99))
	}
}

// startProfile starts a CPU profile into prefix.cpu and returns the
// function that stops it and writes the allocation profile since the start
// into prefix.allocs. An empty prefix profiles nothing.
func startProfile(t testing.TB, prefix string) func() {
	t.Helper()
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + ".cpu")
	if err != nil {
		t.Fatal(err)
	}
	runtime.MemProfileRate = 64 << 10
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		m, err := os.Create(prefix + ".allocs")
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if err := pprof.Lookup("allocs").WriteTo(m, 0); err != nil {
			t.Fatal(err)
		}
	}
}
