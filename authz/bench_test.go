package authz

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockca/dockca/internal/dockerdtest"
)

// crlWithRevoked builds a CRLSource holding n revoked serials (not the
// benchmark's leaf), installed as if just fetched.
func crlWithRevoked(b testing.TB, p *testPKI, n int) *CRLSource {
	b.Helper()
	entries := make([]x509.RevocationListEntry, n)
	now := time.Now()
	for i := range entries {
		entries[i] = x509.RevocationListEntry{SerialNumber: new(big.Int).Add(big.NewInt(1<<40), big.NewInt(int64(i))),
			RevocationTime: now, ReasonCode: 1}
	}
	der := makeCRL(b, p.inter, p.interKey, 1, entries)
	src, err := NewCRLSource(CRLOptions{URL: "https://127.0.0.1:1", Root: p.root, Issuers: []*x509.Certificate{p.inter}, CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := src.install(der, "", time.Now()); err != nil {
		b.Fatal(err)
	}
	return src
}

// BenchmarkDecision measures one full decision as the plugin makes it:
// decode dockerd's JSON, parse the PEM chain, verify it to the root, look
// the serial up among 100,000 revoked ones, and run the operator policy
// with container-create body inspection. It reports p50 and p99 latency.
//
// "warm" is the steady state (the client's verified chain is cached);
// "cold" verifies both signatures on every call, as for a client's first
// request.
//
//	go test ./authz -run '^$' -bench Decision -benchtime 20000x
func BenchmarkDecision(b *testing.B) {
	p := newPKI(b)
	src := crlWithRevoked(b, p, 100_000)
	b.Run("warm", func(b *testing.B) { benchDecision(b, newTestAuthorizer(b, p, src, nil), p) })
	b.Run("cold", func(b *testing.B) {
		benchDecision(b, newTestAuthorizer(b, p, src, func(*Options) {}), p, true)
	})
}

func benchDecision(b *testing.B, a *Authorizer, p *testPKI, cold ...bool) {
	a.noCache = len(cold) > 0 && cold[0]
	body, err := os.ReadFile("testdata/bodies/create-plain.json")
	if err != nil {
		b.Fatal(err)
	}
	op := p.client(b, "otto", "operator")
	raw, _ := json.Marshal(tlsRequest(op, "POST", "/v1.41/containers/create?name=web", body))
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		req, err := DecodeRequest(bytes.NewReader(raw))
		if err != nil {
			b.Fatal(err)
		}
		d := a.Decide(ctx, req)
		lat = append(lat, time.Since(start))
		if !d.Allow {
			b.Fatalf("denied: %s", d.Msg)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// TestThroughputRatio compares a real dockerd's request rate for GET
// /containers/json over mTLS with and without the plugin. It takes about
// 20 s, so it only runs with DOCKCA_AUTHZ_THROUGHPUT=1:
//
//	DOCKCA_AUTHZ_THROUGHPUT=1 go test ./authz -run ThroughputRatio -v
func TestThroughputRatio(t *testing.T) {
	if os.Getenv("DOCKCA_AUTHZ_THROUGHPUT") != "1" {
		t.Skip("set DOCKCA_AUTHZ_THROUGHPUT=1 to measure dockerd throughput with and without the plugin")
	}
	p := newPKI(t)
	admin := p.client(t, "ada", "admin")
	srvDir := p.server(t).writeFiles(t, filepath.Join(t.TempDir(), "server"))
	tlsOpts := dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(srvDir, "ca.pem"),
		Cert: filepath.Join(srvDir, "cert.pem"), Key: filepath.Join(srvDir, "key.pem")}

	measure := func(addr string) float64 {
		roots := x509.NewCertPool()
		roots.AddCert(p.root)
		cert := tls.Certificate{Certificate: [][]byte{admin.cert.Raw, p.inter.Raw}, PrivateKey: admin.key}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 8}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		url := "https://" + addr + "/v1.41/containers/json"
		get := func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %s", resp.Status)
			}
			return nil
		}
		for i := 0; i < 50; i++ { // warm up connections and the plugin client
			if err := get(); err != nil {
				t.Fatal(err)
			}
		}
		const workers, window = 4, 5 * time.Second
		var n atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(window)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if err := get(); err != nil {
						t.Error(err)
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / window.Seconds()
	}

	plain := dockerdtest.Start(t, tlsOpts)
	without := measure(plain.Addr)
	plain.Stop(t)

	e := startE2EWith(t, p, crlWithRevoked(t, p, 100_000), tlsOpts)
	with := measure(e.d.Addr)
	ratio := with / without
	t.Logf("GET /containers/json over mTLS, 4 workers, 5 s: without plugin %.0f req/s, with plugin %.0f req/s, ratio %.2f", without, with, ratio)
	if ratio < 0.8 {
		t.Errorf("throughput ratio %.2f is below the 0.8 target", ratio)
	}
}
