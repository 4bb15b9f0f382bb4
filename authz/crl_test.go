package authz

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crlService is a loopback stand-in for the dockca service's /v1/crl.
type crlService struct {
	srv       *httptest.Server
	mu        sync.Mutex
	der       []byte
	down      bool
	requests  atomic.Int32
	notMod    atomic.Int32
	number    int64
	revoked   []x509.RevocationListEntry
	pki       *testPKI
	signerKey crypto.Signer
	signer    *x509.Certificate
}

func newCRLService(t *testing.T, p *testPKI) *crlService {
	t.Helper()
	s := &crlService{pki: p, signer: p.inter, signerKey: p.interKey}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		der, down := s.der, s.down
		s.mu.Unlock()
		if down || r.URL.Path != "/v1/crl" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		etag := fmt.Sprintf(`"%x"`, sha256.Sum256(der))
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "max-age=30")
		if r.Header.Get("If-None-Match") == etag {
			s.notMod.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(der)
	}))
	srvCert := p.server(t)
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.cert.Raw, p.inter.Raw}, PrivateKey: srvCert.key}}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	s.publish(t)
	return s
}

// publish signs and serves a new CRL with the current entries.
func (s *crlService) publish(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.number++
	s.der = makeCRL(t, s.signer, s.signerKey, s.number, s.revoked)
}

func makeCRL(t testing.TB, issuer *x509.Certificate, key crypto.Signer, number int64, entries []x509.RevocationListEntry) []byte {
	t.Helper()
	now := time.Now()
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(number),
		ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour), RevokedCertificateEntries: entries}, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (s *crlService) revoke(t testing.TB, c *x509.Certificate, reason int) {
	s.mu.Lock()
	s.revoked = append(s.revoked, x509.RevocationListEntry{SerialNumber: c.SerialNumber,
		RevocationTime: time.Now().UTC().Truncate(time.Second), ReasonCode: reason})
	s.mu.Unlock()
	s.publish(t)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newSource(t *testing.T, p *testPKI, url, cache string, clock *fakeClock) *CRLSource {
	t.Helper()
	src, err := NewCRLSource(CRLOptions{URL: url, Root: p.root, Issuers: []*x509.Certificate{p.inter},
		CacheDir: cache, Refresh: 50 * time.Millisecond, MaxStale: 10 * time.Minute, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestCRLSourceRemoteMode(t *testing.T) {
	ctx := context.Background()
	p := newPKI(t)
	svc := newCRLService(t, p)
	clock := &fakeClock{t: time.Now()}
	cache := filepath.Join(t.TempDir(), "crl-cache")
	src := newSource(t, p, svc.srv.URL, cache, clock)
	alice, bob := p.client(t, "alice", "admin"), p.client(t, "bob", "operator")

	if _, err := src.Revoked(ctx, alice.cert); !errors.Is(err, ErrStaleCRL) {
		t.Fatalf("before any fetch: %v", err)
	}
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := src.Revoked(ctx, alice.cert); r != nil || err != nil {
		t.Fatalf("alice before revocation: %v %v", r, err)
	}

	// ETag: an unchanged list is answered 304 and still counts as fresh.
	clock.add(time.Minute)
	if err := src.Refresh(ctx); err != nil || svc.notMod.Load() != 1 {
		t.Fatalf("refresh with ETag: %v, 304s = %d", err, svc.notMod.Load())
	}

	svc.revoke(t, alice.cert, 1)
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := src.Revoked(ctx, alice.cert)
	if err != nil || r == nil || r.Reason != "key-compromise" || r.RevokedAt.IsZero() {
		t.Fatalf("alice after revocation: %+v %v", r, err)
	}
	if r, err := src.Revoked(ctx, bob.cert); r != nil || err != nil {
		t.Fatalf("bob: %v %v", r, err)
	}

	// Through the decision, with the message users see.
	a := newTestAuthorizer(t, p, src, func(o *Options) { o.Now = clock.now })
	d := a.Decide(ctx, tlsRequest(alice, "GET", "/_ping", nil))
	if d.Allow || !strings.Contains(d.Msg, "(alice) was revoked at ") || !strings.HasSuffix(d.Msg, "(key-compromise)") {
		t.Fatalf("decision: %+v", d)
	}

	// The cache is private and survives a restart without the service.
	for path, mode := range map[string]os.FileMode{cache: 0o700, filepath.Join(cache, crlCacheFile): 0o600, filepath.Join(cache, crlMetaFile): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v %v", path, fi.Mode(), err)
		}
	}
	svc.mu.Lock()
	svc.down = true
	svc.mu.Unlock()
	restarted := newSource(t, p, svc.srv.URL, cache, clock)
	if err := restarted.Refresh(ctx); err == nil {
		t.Fatal("refresh from a down service succeeded")
	}
	if r, err := restarted.Revoked(ctx, alice.cert); err != nil || r == nil {
		t.Fatalf("offline restart within max-stale: %v %v", r, err)
	}

	// Past max-stale without a fresh list every TLS request is denied.
	clock.add(11 * time.Minute)
	_ = restarted.Refresh(ctx)
	_, err = restarted.Revoked(ctx, bob.cert)
	if !errors.Is(err, ErrStaleCRL) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("stale: %v", err)
	}
	a = newTestAuthorizer(t, p, restarted, func(o *Options) { o.Now = clock.now })
	d = a.Decide(ctx, tlsRequest(bob, "GET", "/_ping", nil))
	if d.Allow || !strings.Contains(d.Msg, "revocation list is stale") {
		t.Fatalf("stale decision: %+v", d)
	}

	// And it recovers as soon as the service answers again.
	svc.mu.Lock()
	svc.down = false
	svc.mu.Unlock()
	if err := restarted.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := restarted.Revoked(ctx, bob.cert); r != nil || err != nil {
		t.Fatalf("after recovery: %v %v", r, err)
	}
}

func TestCRLSourceRejectsBadLists(t *testing.T) {
	ctx := context.Background()
	p := newPKI(t)
	svc := newCRLService(t, p)
	clock := &fakeClock{t: time.Now()}
	src := newSource(t, p, svc.srv.URL, t.TempDir(), clock)
	victim := p.client(t, "victim", "admin")
	svc.revoke(t, victim.cert, 0)
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	// A list signed by a key that merely claims the intermediate's name.
	forger := newKey(t)
	svc.mu.Lock()
	svc.der = makeCRL(t, p.inter, forger, 99, nil)
	svc.mu.Unlock()
	if err := src.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged CRL: %v", err)
	}
	// An older, properly signed list that would un-revoke the victim.
	svc.mu.Lock()
	svc.der = makeCRL(t, p.inter, p.interKey, 1, nil)
	svc.mu.Unlock()
	if err := src.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "older") {
		t.Fatalf("rolled-back CRL: %v", err)
	}
	if r, err := src.Revoked(ctx, victim.cert); r == nil || err != nil {
		t.Fatalf("victim un-revoked: %v %v", r, err)
	}

	// A certificate from an issuer this list does not cover.
	direct := *victim.cert
	direct.SerialNumber = randSerial(t)
	rootSigned := sign(t, &direct, p.root, victim.key.Public(), p.rootKey)
	if _, err := src.Revoked(ctx, rootSigned); err == nil || !strings.Contains(err.Error(), "covers certificates issued by") {
		t.Fatalf("other issuer: %v", err)
	}
}

func TestCRLSourcePinsTheRoot(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	svc := newCRLService(t, other) // a service with someone else's TLS certificate
	clock := &fakeClock{t: time.Now()}
	src := newSource(t, p, svc.srv.URL, t.TempDir(), clock)
	if err := src.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("fetch from an unpinned server: %v", err)
	}
	if svc.requests.Load() != 0 {
		t.Fatal("request reached an untrusted server")
	}
	for _, o := range []CRLOptions{
		{URL: "http://127.0.0.1:1", Root: p.root, CacheDir: t.TempDir()},
		{URL: svc.srv.URL, Root: p.root, CacheDir: t.TempDir(), Issuers: []*x509.Certificate{other.inter}},
		{URL: svc.srv.URL, CacheDir: t.TempDir()},
	} {
		if _, err := NewCRLSource(o); !errors.Is(err, ErrOptions) {
			t.Errorf("NewCRLSource(%+v): %v", o.URL, err)
		}
	}
}

func TestCRLSourceRunRefreshes(t *testing.T) {
	p := newPKI(t)
	svc := newCRLService(t, p)
	src, err := NewCRLSource(CRLOptions{URL: svc.srv.URL, Root: p.root, Issuers: []*x509.Certificate{p.inter},
		CacheDir: t.TempDir(), Refresh: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eve := p.client(t, "eve", "admin")
	svc.revoke(t, eve.cert, 9)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r, _ := src.Revoked(ctx, eve.cert); r != nil {
			if r.Reason != "privilege-withdrawn" {
				t.Fatalf("reason %q", r.Reason)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("revocation not picked up by Run")
}

// TestStaleWarnings: a source whose data cannot be confirmed logs a warning
// that says how old its data is, once, then again each minute while stale,
// and says so when the data is current again.
func TestStaleWarnings(t *testing.T) {
	p := newPKI(t)
	svc := newCRLService(t, p)
	clock := &fakeClock{t: time.Now()}
	var logs bytes.Buffer
	src, err := NewCRLSource(CRLOptions{URL: svc.srv.URL, Root: p.root, Issuers: []*x509.Certificate{p.inter},
		CacheDir: t.TempDir(), Now: clock.now, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	warnings := func() int { return strings.Count(logs.String(), "revocation data is stale") }
	svc.mu.Lock()
	svc.down = true
	svc.mu.Unlock()
	clock.add(90 * time.Second)
	_ = src.Refresh(ctx)
	if warnings() != 1 || !strings.Contains(logs.String(), "age=1m30s") || !strings.Contains(logs.String(), "503") {
		t.Fatalf("first stale refresh logged:\n%s", logs.String())
	}
	clock.add(30 * time.Second)
	_ = src.Refresh(ctx)
	if warnings() != 1 {
		t.Fatalf("warned again within a minute:\n%s", logs.String())
	}
	clock.add(31 * time.Second)
	_ = src.Refresh(ctx)
	if warnings() != 2 || !strings.Contains(logs.String(), "age=2m31s") {
		t.Fatalf("no periodic warning:\n%s", logs.String())
	}
	if f := src.Freshness(ctx); !f.Stale || f.Mode != "remote" || f.Error == "" {
		t.Fatalf("freshness while stale: %+v", f)
	}
	svc.mu.Lock()
	svc.down = false
	svc.mu.Unlock()
	if err := src.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "revocation data is current again") {
		t.Fatalf("recovery not logged:\n%s", logs.String())
	}
	a := newTestAuthorizer(t, p, src, func(o *Options) { o.Now = clock.now; o.Name = "dockca" })
	if st := a.Status(ctx); st.Stale || st.Revocation.Mode != "remote" || st.Policy != "built-in" || st.LastDecision != nil {
		t.Fatalf("status: %+v", st)
	}
}
