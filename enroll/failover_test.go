package enroll_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

// replica is a real dockca serve (in-process) on its own home.
type replica struct {
	home string
	srv  *serve.Server
	logs *syncBuf
}

// requests counts the requests the replica logged on route.
func (r replica) requests(route string) int {
	return strings.Count(r.logs.String(), "route="+route+" ")
}

// replicas makes a CA and a copy of its database in a second home, and
// runs dockca serve on both. Several replicas of one CA on one database
// need the etcd store, which is not there yet; a second service on a copy
// of the database (what `dockca backup` writes) is a realistic stand-in: the
// same root, intermediate and token key, so a client pins both by one
// fingerprint and either signs a token the other minted. It also returns a
// service certificate of that CA for the test's own stand-in servers.
func replicas(t *testing.T) (a, b replica, svcCert tls.Certificate) {
	a, b, svcCert, _ = replicasAndDaemon(t)
	return a, b, svcCert
}

// replicasAndDaemon is replicas, also returning a daemon certificate of
// the CA for 127.0.0.1: it chains to the root but is not the service's.
func replicasAndDaemon(t *testing.T) (a, b replica, svcCert, daemonCert tls.Certificate) {
	t.Helper()
	homeA, err := os.MkdirTemp("", "dkfa")
	if err != nil {
		t.Fatal(err)
	}
	homeB, err := os.MkdirTemp("", "dkfb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(homeA); os.RemoveAll(homeB) })
	ctx := context.Background()
	st, err := store.Open(store.Path(homeA), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Init(ctx, st, ca.InitOptions{}); err != nil { // unencrypted keys: these tests are about the network
		t.Fatal(err)
	}
	auth, err := ca.Open(ctx, st, ca.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := auth.IssueService(ctx, []string{"127.0.0.1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := svc.KeyPEM()
	if svcCert, err = tls.X509KeyPair(svc.ChainPEM(), keyPEM); err != nil {
		t.Fatal(err)
	}
	dmn, err := auth.Issue(ctx, ca.Request{Kind: pki.KindDaemon, Name: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ = dmn.KeyPEM()
	if daemonCert, err = tls.X509KeyPair(dmn.ChainPEM(), keyPEM); err != nil {
		t.Fatal(err)
	}
	auth.Close()
	st.Close()
	db, err := os.ReadFile(store.Path(homeA))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.Path(homeB), db, 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(home string) replica {
		r := replica{home: home, logs: &syncBuf{}}
		r.srv, _ = serviceLogged(t, home, "127.0.0.1:0", slog.New(slog.NewTextHandler(r.logs, nil)))
		return r
	}
	return start(homeA), start(homeB), svcCert, daemonCert
}

func mint(t *testing.T, home string, req api.TokenRequest) *api.TokenResponse {
	t.Helper()
	ac, err := serve.DialAdmin(home)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ac.CreateToken(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// deadURL is a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return "https://127.0.0.1:" + strconv.Itoa(port)
}

// standIn is a real HTTPS server with a service certificate of the CA
// that answers every request with handle, counting them.
func standIn(t *testing.T, cert tls.Certificate, handle http.HandlerFunc) (url string, hits *atomic.Int32) {
	t.Helper()
	hits = &atomic.Int32{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		handle(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// A dead first URL is skipped: bootstrap, enrollment, the CRL and renewal
// all succeed at the live replica, the certificate directory records both
// URLs, and a renewal from the directory fails over too.
func TestFailoverPastADeadReplica(t *testing.T) {
	a, _, _ := replicas(t)
	dead := deadURL(t)
	urls := []string{dead, a.srv.URL()}
	tok := mint(t, a.home, api.TokenRequest{Kind: "daemon", Name: "localhost", SANs: []string{"127.0.0.1"}, CertTTL: "10m"})
	ctx := context.Background()
	c, err := enroll.Bootstrap(ctx, urls, tok.RootFingerprint)
	if err != nil {
		t.Fatalf("bootstrap past a dead URL: %v", err)
	}
	res, err := c.Enroll(ctx, tok.Token, "")
	if err != nil {
		t.Fatalf("enroll past a dead URL: %v", err)
	}
	if _, err := c.CRL(ctx); err != nil {
		t.Fatalf("CRL past a dead URL: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if err := enroll.WriteDir(dir, c, res); err != nil {
		t.Fatal(err)
	}
	d, err := enroll.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Meta.URLs(), urls) || d.Meta.CAURL != dead {
		t.Fatalf("recorded URLs %q (ca_url %q), want %q", d.Meta.URLs(), d.Meta.CAURL, urls)
	}
	renewed, err := enroll.RenewDir(ctx, enroll.WatchOptions{Dir: dir, Force: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("renew --cert-dir past a dead URL: %v", err)
	}
	if renewed.Leaf.SerialNumber.Cmp(res.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed")
	}
	if a.requests("renew") != 1 || a.requests("sign") != 1 {
		t.Fatalf("the live replica logged:\n%s", a.logs.String())
	}
}

// A replica answering 503 is passed over for every request; once the next
// one answered, later requests start there (the stand-in sees no more).
func TestFailoverPast503(t *testing.T) {
	a, _, cert := replicas(t)
	busy, hits := standIn(t, cert, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
	})
	urls := []string{busy, a.srv.URL()}
	tok := mint(t, a.home, api.TokenRequest{Kind: "client", Name: "alice", CertTTL: "1h"})
	ctx := context.Background()
	c, err := enroll.Bootstrap(ctx, urls, tok.RootFingerprint)
	if err != nil {
		t.Fatalf("bootstrap past a 503: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("the busy replica saw %d requests, want 1", hits.Load())
	}
	res, err := c.Enroll(ctx, tok.Token, "")
	if err != nil {
		t.Fatalf("enroll past a 503: %v", err)
	}
	pair, err := tls.X509KeyPair([]byte(res.Resp.Chain), res.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Renew(ctx, pair, false, ""); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("the busy replica saw %d requests after the live one answered, want still 1", hits.Load())
	}
	// A new client of the same list, in the same process, starts at the
	// replica that answered last.
	c2, err := enroll.New(urls, c.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CRL(ctx); err != nil || hits.Load() != 1 {
		t.Fatalf("a second client: %v, busy replica hits %d", err, hits.Load())
	}

	// When every replica is busy, the answer says so for each.
	busy2, _ := standIn(t, cert, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
	})
	c3, err := enroll.New([]string{busy, busy2}, c.Root())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c3.CRL(ctx)
	if !api.IsStatus(err, http.StatusServiceUnavailable) {
		t.Fatalf("all busy: %v", err)
	}
	t.Logf("all busy: %v", err)
	// Every URL dead: each one's failure is named.
	c4, err := enroll.New([]string{deadURL(t), deadURL(t)}, c.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err = c4.CRL(ctx); err == nil || !strings.Contains(err.Error(), "no CA URL answered") {
		t.Fatalf("all dead: %v", err)
	}
	t.Logf("all dead: %v", err)
}

// 4xx answers are the CA's answer: a used token is not tried at the other
// replica (which sees no request), and the message says plainly what a
// used token means.
func TestUsedTokenIsNotFailedOver(t *testing.T) {
	a, b, _ := replicas(t)
	tok := mint(t, a.home, api.TokenRequest{Kind: "client", Name: "bob", CertTTL: "1h"})
	ctx := context.Background()
	first, err := enroll.Bootstrap(ctx, []string{a.srv.URL()}, tok.RootFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Enroll(ctx, tok.Token, ""); err != nil {
		t.Fatal(err)
	}
	c, err := enroll.New([]string{a.srv.URL(), b.srv.URL()}, first.Root())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Enroll(ctx, tok.Token, "")
	if !api.IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), "already been used") || !strings.Contains(err.Error(), "mint a new token") {
		t.Fatalf("a used token: %v", err)
	}
	t.Logf("used token: %v", err)
	if n := b.requests("sign"); n != 0 {
		t.Fatalf("the second replica saw %d sign requests:\n%s", n, b.logs.String())
	}
	// The second replica is a real one of the same CA: the same token,
	// unspent in its copy of the database, works there. That is why a
	// token is never sent on after a replica may have acted on it.
	other := mint(t, b.home, api.TokenRequest{Kind: "client", Name: "carol", CertTTL: "1h"})
	cb, err := enroll.New([]string{b.srv.URL()}, first.Root())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Enroll(ctx, other.Token, ""); err != nil {
		t.Fatalf("the second replica does not serve the same CA: %v", err)
	}
}

// A replica that takes the request and drops the connection without an
// answer may have spent the token: the token is not sent on, and the error
// says it may have been used. A request that may be repeated (the CRL)
// moves on past the same replica.
func TestTokenNotResentAfterTheRequestWasSent(t *testing.T) {
	a, b, cert := replicas(t)
	drop, hits := standIn(t, cert, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	})
	tok := mint(t, a.home, api.TokenRequest{Kind: "client", Name: "dave", CertTTL: "1h"})
	ctx := context.Background()
	root, err := enroll.Bootstrap(ctx, []string{a.srv.URL()}, tok.RootFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	c, err := enroll.New([]string{drop, b.srv.URL()}, root.Root())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Enroll(ctx, tok.Token, "")
	if !errors.Is(err, enroll.ErrMaybeActed) || !strings.Contains(err.Error(), "may have been used") || !strings.Contains(err.Error(), drop) {
		t.Fatalf("a token sent to a replica that failed mid-request: %v", err)
	}
	t.Logf("dropped: %v", err)
	if hits.Load() != 1 || b.requests("sign") != 0 {
		t.Fatalf("dropping replica hits %d, second replica sign requests %d", hits.Load(), b.requests("sign"))
	}
	// The token was not spent anywhere, so it still works.
	if _, err := root.Enroll(ctx, tok.Token, ""); err != nil {
		t.Fatalf("the token after the dropped attempt: %v", err)
	}
	if _, err := c.CRL(ctx); err != nil {
		t.Fatalf("a CRL fetch past a dropping replica: %v", err)
	}
}

// A server whose certificate is not from the pinned root is not passed
// over: it may be someone in the middle, and the error names it.
func TestForeignCertificateStopsFailover(t *testing.T) {
	a, _, _, daemonCert := replicasAndDaemon(t)
	foreign := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(foreign.Close)
	tok := mint(t, a.home, api.TokenRequest{Kind: "client", Name: "erin", CertTTL: "1h"})
	ctx := context.Background()
	good, err := enroll.Bootstrap(ctx, []string{a.srv.URL()}, tok.RootFingerprint)
	if err != nil {
		t.Fatal(err)
	}
	c, err := enroll.New([]string{foreign.URL, a.srv.URL()}, good.Root())
	if err != nil {
		t.Fatal(err)
	}
	before := a.requests("sign")
	_, err = c.Enroll(ctx, tok.Token, "")
	if err == nil || !strings.Contains(err.Error(), foreign.URL) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("enroll with an impostor first: %v", err)
	}
	t.Logf("impostor: %v", err)
	if a.requests("sign") != before {
		t.Fatal("the request went on past an impostor")
	}
	// Bootstrapping from it fails too: it is not a dockca service.
	if _, err := enroll.Bootstrap(ctx, []string{foreign.URL, a.srv.URL()}, tok.RootFingerprint); err == nil {
		t.Fatal("bootstrap past an impostor")
	}
	// A daemon of the same CA posing as the service is stopped at too.
	posing, hits := standIn(t, daemonCert, func(w http.ResponseWriter, r *http.Request) {})
	urls := []string{posing, a.srv.URL()}
	c, err = enroll.New(urls, good.Root())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Enroll(ctx, tok.Token, "")
	if !errors.Is(err, enroll.ErrNotService) || !strings.Contains(err.Error(), posing) {
		t.Fatalf("enroll with a daemon certificate first: %v", err)
	}
	if _, err := enroll.Bootstrap(ctx, urls, tok.RootFingerprint); !errors.Is(err, enroll.ErrNotService) {
		t.Fatalf("bootstrap with a daemon certificate first: %v", err)
	}
	if hits.Load() != 0 || a.requests("sign") != before {
		t.Fatalf("requests reached the daemon (%d) or went on past it", hits.Load())
	}
}

// dockca-enroll.json with several URLs round-trips; one written before
// lists (a single ca_url) still loads and renews there.
func TestMetaRecordsURLs(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"testdata/meta-one-url.json", []string{"https://ca.example:8443"}},
		{"testdata/meta-two-urls.json", []string{"https://ca1.example:8443", "https://ca2.example:8443"}},
	} {
		b, err := os.ReadFile(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		var m enroll.Meta
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(m.URLs(), tc.want) {
			t.Errorf("%s: URLs %q, want %q", tc.file, m.URLs(), tc.want)
		}
		if m.CAURL != tc.want[0] {
			t.Errorf("%s: ca_url %q, want the first URL", tc.file, m.CAURL)
		}
	}
}

// A replica that accepts connections but never completes a handshake (a
// hung process) costs one handshake timeout, once: the request moves on
// long before the request timeout, and the next one starts at the replica
// that answered.
func TestFailoverPastAHungReplica(t *testing.T) {
	a, _, _ := replicas(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var conns atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			t.Cleanup(func() { c.Close() }) // held open, never answered
		}
	}()
	tok := mint(t, a.home, api.TokenRequest{Kind: "client", Name: "frank", CertTTL: "1h"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*enroll.ConnectTimeout+5*time.Second)
	defer cancel()
	c, err := enroll.Bootstrap(ctx, []string{"https://" + l.Addr().String(), a.srv.URL()}, tok.RootFingerprint)
	if err != nil {
		t.Fatalf("bootstrap past a hung replica: %v", err)
	}
	if _, err := c.Enroll(ctx, tok.Token, ""); err != nil {
		t.Fatalf("enroll past a hung replica: %v", err)
	}
	if conns.Load() != 1 {
		t.Fatalf("the hung replica got %d connections, want 1", conns.Load())
	}
}
