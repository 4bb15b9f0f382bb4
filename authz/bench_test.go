package authz

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
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
// "new-client" is a client's first request (one signature: its
// intermediate is known); "cold" verifies both signatures on every call, as
// for the plugin's very first request.
//
//	go test ./authz -run '^$' -bench Decision -benchtime 20000x
//
// The body mounts a named volume, which the plugin looks up on dockerd's
// socket; here an in-memory stand-in answers, so the figures leave out that
// round trip (it is in TestThroughputRatio's and the gate's figures).
func BenchmarkDecision(b *testing.B) {
	p := newPKI(b)
	src := crlWithRevoked(b, p, 100_000)
	objs := func(o *Options) { o.Containers = &fakeObjects{} }
	otto := p.client(b, "otto", "operator")
	b.Run("warm", func(b *testing.B) { benchDecision(b, newTestAuthorizer(b, p, src, objs), otto) })
	// The same with a scoped client, a daemon in two groups and a policy
	// that narrows roles on another group: what scopes add to a decision.
	b.Run("warm-scoped", func(b *testing.B) {
		pol, err := LoadPolicy(strings.NewReader(prodReadonlyPolicy))
		if err != nil {
			b.Fatal(err)
		}
		a := newTestAuthorizer(b, p, src, func(o *Options) {
			objs(o)
			o.Groups, o.Policy = []string{"staging", "eu"}, pol
		})
		benchDecision(b, a, p.client(b, "otto", "operator", withScope("staging", "prod")))
	})
	// A client's first request: its chain is new, its intermediate known.
	b.Run("new-client", func(b *testing.B) {
		a := newTestAuthorizer(b, p, src, objs)
		a.noCache = true
		benchDecision(b, a, otto)
	})
	// Nothing cached: both signatures verified (the plugin's first request).
	b.Run("cold", func(b *testing.B) {
		a := newTestAuthorizer(b, p, src, objs)
		a.noCache, a.noIssuers = true, true
		benchDecision(b, a, otto)
	})
}

func benchDecision(b *testing.B, a *Authorizer, op *testLeaf) {
	body, err := os.ReadFile("testdata/bodies/create-plain.json")
	if err != nil {
		b.Fatal(err)
	}
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
// /containers/json over mTLS (1 and 4 client loops) in three setups: no
// plugin, a null plugin that allows everything without reading a byte, and
// dockca's plugin with 100,000 revoked serials. The null plugin isolates
// what dockerd's plugin round trips cost (two per API call, bodies buffered
// and re-encoded) from what dockca's decision adds. It takes about a
// minute, so it only runs with DOCKCA_AUTHZ_THROUGHPUT=1:
//
//	DOCKCA_AUTHZ_THROUGHPUT=1 go test ./authz -run ThroughputRatio -v
func TestThroughputRatio(t *testing.T) {
	if os.Getenv("DOCKCA_AUTHZ_THROUGHPUT") != "1" {
		t.Skip("set DOCKCA_AUTHZ_THROUGHPUT=1 to measure dockerd throughput with and without the plugin")
	}
	p := newPKI(t)
	srvDir := p.server(t).writeFiles(t, filepath.Join(t.TempDir(), "server"))
	tlsOpts := dockerdtest.Options{TLSVerify: true, CACert: filepath.Join(srvDir, "ca.pem"),
		Cert: filepath.Join(srvDir, "cert.pem"), Key: filepath.Join(srvDir, "key.pem")}
	workers := []int{1, 4}
	rates := map[string][]float64{}

	plain := dockerdtest.Start(t, tlsOpts)
	for _, w := range workers {
		rates["none"] = append(rates["none"], measureThroughput(t, p, plain.Addr, w, 5*time.Second))
	}
	plain.Stop(t)

	// Both plugins run in their own process, as in production, so that
	// their garbage collector does not slow the client loop.
	cacheDir := t.TempDir()
	src := crlWithRevoked(t, p, 100_000)
	if err := writeFileAtomic(filepath.Join(cacheDir, crlCacheFile), src.crl.Raw); err != nil {
		t.Fatal(err)
	}
	if err := src.writeMeta(crlMeta{FetchedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_ = os.Rename(filepath.Join(src.o.CacheDir, crlMetaFile), filepath.Join(cacheDir, crlMetaFile))
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	interFile := filepath.Join(t.TempDir(), "inter.pem")
	_ = os.WriteFile(rootFile, pemCert(p.root), 0o600)
	_ = os.WriteFile(interFile, pemCert(p.inter), 0o600)
	addr := map[string]string{}
	for _, setup := range []string{"null", "dockca"} {
		name := uniquePluginName(t)
		helperPlugin(t, setup, name, rootFile, interFile, cacheDir)
		o := tlsOpts
		o.Args = []string{"--authorization-plugin=" + name}
		addr[setup] = dockerdtest.Start(t, o).Addr
	}
	// Both daemons run side by side and are measured in alternating
	// windows, so that drift on a shared machine hits both alike.
	for _, w := range workers {
		sum := map[string]float64{}
		for round := 0; round < 4; round++ {
			for _, setup := range []string{"null", "dockca"} {
				sum[setup] += measureThroughput(t, p, addr[setup], w, 2*time.Second) / 4
			}
		}
		rates["null"] = append(rates["null"], sum["null"])
		rates["dockca"] = append(rates["dockca"], sum["dockca"])
	}

	for i, w := range workers {
		none, nul, dk := rates["none"][i], rates["null"][i], rates["dockca"][i]
		t.Logf("GET /containers/json over mTLS, %d client loop(s): no plugin %.0f req/s, null plugin %.0f req/s, dockca %.0f req/s; dockca/no-plugin %.2f, dockca/null-plugin %.2f",
			w, none, nul, dk, dk/none, dk/nul)
		// What dockca controls is its own cost on top of the protocol.
		if dk/nul < 0.8 {
			t.Errorf("%d loop(s): dockca reaches only %.2f of a null plugin's throughput", w, dk/nul)
		}
	}
}

// helperPlugin re-runs this test binary as a plugin process (see TestMain)
// and waits for its socket.
func helperPlugin(t *testing.T, kind, name, rootFile, interFile, cacheDir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DOCKCA_AUTHZ_HELPER="+kind, "DOCKCA_AUTHZ_HELPER_NAME="+name,
		"DOCKCA_AUTHZ_HELPER_ROOT="+rootFile, "DOCKCA_AUTHZ_HELPER_INTER="+interFile, "DOCKCA_AUTHZ_HELPER_CACHE="+cacheDir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = os.Remove(SocketPath(name))
	})
	for i := 0; i < 500; i++ {
		if c, err := net.Dial("unix", SocketPath(name)); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("helper plugin %s did not start", kind)
}

// runHelperPlugin is the plugin process: "null" allows everything without
// reading the request; "dockca" is Serve with the CRL cache the parent
// prepared (100,000 revoked serials; the service URL is unreachable, so
// the cache is what serves, as after an offline restart).
func runHelperPlugin(kind string) int {
	name := os.Getenv("DOCKCA_AUTHZ_HELPER_NAME")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if kind == "null" {
		l, err := listenSocket(SocketPath(name))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			if r.URL.Path == pathActivate {
				writeJSON(w, map[string][]string{"Implements": {"authz"}})
				return
			}
			_, _ = w.Write([]byte(`{"Allow":true}`))
		})}
		go func() { <-ctx.Done(); _ = srv.Close() }()
		_ = srv.Serve(l)
		return 0
	}
	readCert := func(env string) *x509.Certificate {
		b, err := os.ReadFile(os.Getenv(env))
		if err != nil {
			panic(err)
		}
		block, _ := pem.Decode(b)
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			panic(err)
		}
		return c
	}
	root, inter := readCert("DOCKCA_AUTHZ_HELPER_ROOT"), readCert("DOCKCA_AUTHZ_HELPER_INTER")
	src, err := NewCRLSource(CRLOptions{URL: "https://127.0.0.1:1", Root: root, Issuers: []*x509.Certificate{inter},
		CacheDir: os.Getenv("DOCKCA_AUTHZ_HELPER_CACHE"), Refresh: time.Hour})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	audit, err := OpenAuditLog(filepath.Join(os.Getenv("DOCKCA_AUTHZ_HELPER_CACHE"), "audit.jsonl"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer audit.Close()
	if prof := os.Getenv("DOCKCA_AUTHZ_HELPER_CPUPROFILE"); prof != "" {
		f, err := os.Create(prof)
		if err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if err := Serve(ctx, Options{Name: name, Root: root, Revocations: src, Audit: audit}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// measureThroughput runs workers client loops of GET /containers/json over
// mTLS as admin against addr for window and returns requests/s.
func measureThroughput(t *testing.T, p *testPKI, addr string, workers int, window time.Duration) float64 {
	t.Helper()
	admin := p.client(t, "ada", "admin")
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
