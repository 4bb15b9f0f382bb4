package serve_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/ca"
	"github.com/dockca/dockca/enroll"
	"github.com/dockca/dockca/internal/api"
	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/serve"
	"github.com/dockca/dockca/store"
)

func TestEnrollRenewRevokeCRLMetrics(t *testing.T) {
	ts := startServer(t, serve.Options{})
	ctx := context.Background()
	c := ts.client(t)

	// Enroll a client; the key is made here and written 0600.
	tok := ts.token(t, api.TokenRequest{Kind: "client", Name: "alice", Role: "operator", CertTTL: "2h"})
	res, err := c.Enroll(ctx, tok, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Resp.Role != "operator" || res.Resp.Kind != "client" || res.KeyPEM == nil {
		t.Fatalf("enrollment: %+v", res.Resp)
	}
	dir := tempDir(t, "alice")
	if err := enroll.WriteDir(dir, c, res); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}

	// Replay: refused, nothing stored.
	before := ts.certCount(t)
	if _, err := c.Enroll(ctx, tok, ""); !api.IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), "already been used") {
		t.Fatalf("replayed token: %v", err)
	}
	if ts.certCount(t) != before {
		t.Fatal("a refused enrollment stored a certificate")
	}

	// Token ls shows it used, with the serial, and no token text.
	infos, err := ts.admin.Tokens(ctx)
	if err != nil || len(infos) != 1 || infos[0].UsedAt == nil || infos[0].Serial != res.Resp.Serial {
		t.Fatalf("token list %v %+v", err, infos)
	}
	if b, _ := json.Marshal(infos); bytes.Contains(b, []byte(tok[:20])) {
		t.Fatal("token list leaks the token")
	}

	// Renew without and with a new key.
	same, err := enroll.RenewDir(ctx, enroll.WatchOptions{Dir: dir, Force: true, Logger: ts.Server.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if same.KeyPEM != nil || same.Resp.Serial == res.Resp.Serial || same.Resp.Role != "operator" {
		t.Fatalf("renewal: %+v", same.Resp)
	}
	rekeyed, err := enroll.RenewDir(ctx, enroll.WatchOptions{Dir: dir, Rekey: true, Force: true, Logger: ts.Server.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if rekeyed.KeyPEM == nil || !tlsCert(t, dir).Leaf.Equal(rekeyed.Leaf) {
		t.Fatal("rekeyed renewal not written")
	}

	// Admin revokes by name over the socket: every unexpired alice.
	rr, err := ts.admin.Revoke(ctx, []string{"alice"}, pki.Reason{Name: "key-compromise", Code: 1})
	if err != nil || len(rr) != 3 {
		t.Fatalf("admin revoke: %v %+v", err, rr)
	}
	if _, err := enroll.RenewDir(ctx, enroll.WatchOptions{Dir: dir, Force: true, Logger: ts.Server.Logger()}); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("renewal after revocation: %v", err)
	}
	crl, err := c.CRL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ts.Authority().Intermediate()); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[pki.FormatSerial(e.SerialNumber)] = true
	}
	if !listed[rekeyed.Resp.Serial] || !listed[res.Resp.Serial] {
		t.Fatalf("CRL lacks revoked serials: %v", listed)
	}

	// CRL caching headers, PEM form, and the openssl view of it.
	hc := ts.httpsClient(nil)
	resp, err := hc.Get(ts.URL() + api.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag == "" || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age") || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("CRL headers %v", resp.Header)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL()+api.PathCRL, nil)
	req.Header.Set("If-None-Match", etag)
	if resp, err = hc.Do(req); err != nil || resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional CRL: %v %v", err, resp.Status)
	}
	resp.Body.Close()
	if _, err := exec.LookPath("openssl"); err == nil {
		p := filepath.Join(t.TempDir(), "crl.der")
		os.WriteFile(p, der, 0o600)
		out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", p, "-noout", "-text").CombinedOutput()
		if err != nil || !strings.Contains(strings.ToLower(string(out)), strings.ToLower(rekeyed.Resp.Serial)) {
			t.Fatalf("openssl crl: %v\n%s", err, out)
		}
	}
	if resp, err = hc.Get(ts.URL() + api.PathCRL + "?format=pem"); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.HasPrefix(body, []byte("-----BEGIN X509 CRL-----")) {
		t.Fatalf("PEM CRL: %q", body[:min(40, len(body))])
	}

	// A holder revokes its own certificate; it cannot revoke another.
	tok = ts.token(t, api.TokenRequest{Kind: "client", Name: "bob"})
	bob, err := c.Enroll(ctx, tok, pki.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	bobDir := tempDir(t, "bob")
	enroll.WriteDir(bobDir, c, bob)
	bobCert := tlsCert(t, bobDir)
	var out api.Error
	err = api.Do(ctx, ts.httpsClient(&bobCert), http.MethodPost, ts.URL()+api.PathRevoke, api.RevokeRequest{Serial: res.Resp.Serial}, &out)
	if !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("revoking another's certificate: %v", err)
	}
	if rv, err := c.Revoke(ctx, bobCert, "superseded"); err != nil || rv.Serial != bob.Resp.Serial || rv.Reason != "superseded" {
		t.Fatalf("self revoke: %v %+v", err, rv)
	}

	// Admin revoke token over HTTPS.
	tok = ts.token(t, api.TokenRequest{Kind: "daemon", Name: "h1.test"})
	h1, err := c.Enroll(ctx, tok, "")
	if err != nil {
		t.Fatal(err)
	}
	rtok := ts.token(t, api.TokenRequest{Kind: "revoke", Name: h1.Resp.Serial})
	if rv, err := c.RevokeWithToken(ctx, rtok, ""); err != nil || rv.Serial != h1.Resp.Serial {
		t.Fatalf("token revoke: %v %+v", err, rv)
	}

	// Health, roots, metrics.
	for path, want := range map[string]string{
		api.PathHealthz: "ok",
		api.PathRoots:   "-----BEGIN CERTIFICATE-----",
		api.PathMetrics: `dockca_certificates_issued_total{kind="client"} 2`,
	} {
		resp, err := hc.Get(ts.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("%s: %s\n%s", path, resp.Status, b)
		}
		if path == api.PathMetrics {
			for _, m := range []string{`dockca_certificates_renewed_total{kind="client"} 2`, `dockca_token_failures_total{reason="used"} 1`,
				"dockca_certificates_revoked_total 5", `dockca_http_request_duration_seconds_bucket{code="200",route="sign"`} {
				if !strings.Contains(string(b), m) {
					t.Errorf("metrics lack %s", m)
				}
			}
		}
	}

	// Nothing sensitive in the logs.
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ts.logs.String(), tok[:30]) || strings.Contains(ts.logs.String(), "PRIVATE KEY") {
		t.Fatal("logs contain a token or a key")
	}
}

func TestRefusedTokensAndBootstrap(t *testing.T) {
	ts := startServer(t, serve.Options{})
	ctx := context.Background()
	c := ts.client(t)

	// Wrong fingerprint: refused before anything is sent.
	bad := strings.Repeat("ab", 32)
	if _, err := enroll.Bootstrap(ctx, []string{ts.URL()}, bad); !errors.Is(err, enroll.ErrFingerprintMismatch) {
		t.Fatalf("wrong fingerprint: %v", err)
	}

	minter, err := ca.UnlockTokenKey(ctx, ts.st, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	other := startServer(t, serve.Options{})
	foreignMinter, err := ca.UnlockTokenKey(ctx, other.st, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	mint := func(m *ca.TokenMinter, r ca.TokenRequest, at time.Time) string {
		t.Helper()
		if r.CAURL == "" {
			r.CAURL = ts.URL()
		}
		tok, _, err := m.Mint(r, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	before := ts.certCount(t)
	for name, tc := range map[string]struct {
		token string
		want  string
	}{
		"expired":        {mint(minter, ca.TokenRequest{Kind: "client", Name: "x", TTL: time.Minute}, time.Now().Add(-time.Hour)), "expired"},
		"foreign-signed": {mint(foreignMinter, ca.TokenRequest{Kind: "client", Name: "x"}, time.Now()), "not signed by this CA"},
		"wrong-kind":     {mint(minter, ca.TokenRequest{Kind: "revoke", Name: "0a"}, time.Now()), "another operation"},
		"garbage":        {"not.a.token", "malformed"},
	} {
		// Raw, since the client refuses some of these before sending.
		err := api.Do(ctx, ts.httpsClient(nil), http.MethodPost, ts.URL()+api.PathSign, api.SignRequest{CSR: csrPEM(t, "x", nil), Token: tc.token}, nil)
		if !api.IsStatus(err, http.StatusUnauthorized) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want 401 %q", name, err, tc.want)
		}
	}

	// Bad requests: 4xx with a message, nothing stored, still serving.
	tok := ts.token(t, api.TokenRequest{Kind: "daemon", Name: "h.test", SANs: []string{"10.1.2.3"}})
	hc := ts.httpsClient(nil)
	for name, tc := range map[string]struct {
		body   []byte
		status int
		want   string
	}{
		"malformed":     {[]byte(`{"csr": "x", "token": `), 400, "malformed JSON"},
		"unknown-field": {[]byte(`{"csr": "x", "token": "y", "admin": true}`), 400, "unknown field"},
		"trailing":      {[]byte(`{"csr": "x", "token": "y"} {}`), 400, "trailing"},
		"empty":         {nil, 400, "empty request body"},
		"huge":          {append(append([]byte(`{"csr": "`), bytes.Repeat([]byte("A"), 100<<10)...), `"}`...), 413, "larger than"},
		"garbage-csr":   {mustJSON(api.SignRequest{CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", Token: tok}), 400, "invalid certificate request"},
		"csr-not-pem":   {mustJSON(api.SignRequest{CSR: "hello", Token: tok}), 400, "PEM"},
		"names-mismatch": {mustJSON(api.SignRequest{CSR: csrPEM(t, "h.test", []string{"evil.test"}), Token: tok}), 400,
			"does not cover"},
		"cn-mismatch": {mustJSON(api.SignRequest{CSR: csrPEM(t, "other.test", nil), Token: tok}), 400, "not \"h.test\""},
	} {
		resp, err := hc.Post(ts.URL()+api.PathSign, "application/json", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var e api.Error
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(e.Error, tc.want) {
			t.Errorf("%s: %d %q, want %d %q", name, resp.StatusCode, e.Error, tc.status, tc.want)
		}
	}
	if n := ts.certCount(t); n != before {
		t.Fatalf("refused requests stored %d certificates", n-before)
	}
	// The token survived the refusals and still works, once.
	d, err := c.Enroll(ctx, tok, pki.KeyRSA3072)
	if err != nil {
		t.Fatal(err)
	}
	if d.Resp.Kind != "daemon" || len(d.Leaf.IPAddresses) != 1 {
		t.Fatalf("daemon enrollment %+v", d.Resp)
	}

	// A foreign certificate cannot renew: 403, not a handshake failure.
	otok := other.token(t, api.TokenRequest{Kind: "client", Name: "mallory"})
	oc := other.client(t)
	ores, err := oc.Enroll(ctx, otok, "")
	if err != nil {
		t.Fatal(err)
	}
	odir := tempDir(t, "mallory")
	enroll.WriteDir(odir, oc, ores)
	if _, err := enroll.RenewDir(ctx, enroll.WatchOptions{Dir: odir, CAURLs: []string{ts.URL()}, Force: true, Logger: ts.Server.Logger()}); err == nil {
		t.Fatal("renewed against a CA the directory does not trust")
	}
	fc := tlsCert(t, odir)
	if err := api.Do(ctx, ts.httpsClient(&fc), http.MethodPost, ts.URL()+api.PathRenew, api.RenewRequest{}, nil); !api.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("foreign renew: %v", err)
	}
	if err := api.Do(ctx, hc, http.MethodPost, ts.URL()+api.PathRenew, api.RenewRequest{}, nil); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("renew without a certificate: %v", err)
	}
}

func TestRateLimitAndTLSFloor(t *testing.T) {
	ts := startServer(t, serve.Options{SignRate: 1, SignBurst: 2})
	hc := ts.httpsClient(nil)
	codes := map[int]int{}
	for range 5 {
		resp, err := hc.Post(ts.URL()+api.PathSign, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
	}
	if codes[http.StatusTooManyRequests] < 2 {
		t.Fatalf("rate limit not applied: %v", codes)
	}
	// TLS 1.1 is refused.
	pool := x509.NewCertPool()
	pool.AddCert(ts.Authority().Root())
	conn, err := tls.Dial("tcp", ts.Addr(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	// The service certificate names the address and chains to the root.
	conn, err = tls.Dial("tcp", ts.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func TestGracefulShutdownReleasesDatabase(t *testing.T) {
	ts := startServer(t, serve.Options{})
	// While serving, the database is locked for everyone else.
	if _, err := store.Open(store.Path(ts.home), &store.Options{LockTimeout: 100 * time.Millisecond}); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("open while serving: %v", err)
	}
	// Start a request, then shut down: it completes.
	hc := ts.httpsClient(nil)
	done := make(chan error, 1)
	go func() {
		resp, err := hc.Get(ts.URL() + api.PathCRL)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	st, err := store.Open(store.Path(ts.home), &store.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("database not released: %v", err)
	}
	st.Close()
	if _, err := os.Stat(filepath.Join(ts.home, api.SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("admin socket left behind: %v", err)
	}
	if _, err := serve.DialAdmin(ts.home); !errors.Is(err, serve.ErrNoService) {
		t.Fatalf("dial stopped service: %v", err)
	}
}

func csrPEM(t testing.TB, cn string, dns []string) string {
	t.Helper()
	key, err := pki.GenerateKey(pki.KeyECP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// A CSR whose signature does not verify is refused with a 400 by the
// signing call (the request decoder leaves that check to it), and the
// token it came with is not spent.
func TestSignRefusesBadCSRSignatureKeepsToken(t *testing.T) {
	ts := startServer(t, serve.Options{})
	ctx := context.Background()
	tok := ts.token(t, api.TokenRequest{Kind: "client", Name: "sigcheck"})
	blk, _ := pem.Decode([]byte(csrPEM(t, "sigcheck", nil)))
	der := append([]byte(nil), blk.Bytes...)
	der[len(der)-5] ^= 0xff // inside the signature
	bad := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	before := ts.certCount(t)
	err := api.Do(ctx, ts.httpsClient(nil), http.MethodPost, ts.URL()+api.PathSign, api.SignRequest{CSR: bad, Token: tok}, nil)
	if !api.IsStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("bad signature: %v, want 400 saying the signature does not verify", err)
	}
	if ts.certCount(t) != before {
		t.Fatal("a CSR with a bad signature was signed")
	}
	var resp api.CertResponse
	if err := api.Do(ctx, ts.httpsClient(nil), http.MethodPost, ts.URL()+api.PathSign, api.SignRequest{CSR: csrPEM(t, "sigcheck", nil), Token: tok}, &resp); err != nil {
		t.Fatalf("the token was spent by the refused request: %v", err)
	}
}

// --debug-pprof serves Go's profiles on loopback only.
func TestDebugPprofLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:6060", "192.0.2.1:6060", "localhost:6060", "6060"} {
		if err := serve.CheckDebugPprof(addr); err == nil {
			t.Errorf("debug pprof on %q accepted", addr)
		}
	}
	ts := startServer(t, serve.Options{DebugPprof: "127.0.0.1:0"})
	resp, err := http.Get("http://" + ts.PprofAddr() + "/debug/pprof/allocs?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("pprof: %d %.80q", resp.StatusCode, body)
	}
}

// The service keeps the CRL it hands out in memory, and a revocation is in
// the very next CRL it hands out all the same; revoking several at once
// through the admin socket makes one new CRL.
func TestCRLAfterRevocationsServedFresh(t *testing.T) {
	ts := startServer(t, serve.Options{})
	ctx := context.Background()
	hc := ts.httpsClient(nil)
	fetch := func() *x509.RevocationList {
		t.Helper()
		resp, err := hc.Get(ts.URL() + api.PathCRL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		der, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET crl: %d %v", resp.StatusCode, err)
		}
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		return rl
	}
	first := fetch()
	var serials []string
	for i := range 3 {
		iss, err := ts.Authority().Issue(ctx, ca.Request{Kind: pki.KindClient, Name: fmt.Sprintf("crl%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, iss.Record.Serial)
	}
	if _, err := ts.admin.Revoke(ctx, serials, pki.Reason{Name: "unspecified"}); err != nil {
		t.Fatal(err)
	}
	second := fetch()
	if n := second.Number.Int64() - first.Number.Int64(); n != 1 {
		t.Fatalf("revoking 3 at once made %d CRLs, want 1", n)
	}
	listed := map[string]bool{}
	for _, e := range second.RevokedCertificateEntries {
		listed[pki.FormatSerial(e.SerialNumber)] = true
	}
	for _, s := range serials {
		if !listed[s] {
			t.Errorf("revoked %s missing from the next CRL", s)
		}
	}
	// One more revocation, by the holder's own route (the authority).
	iss, err := ts.Authority().Issue(ctx, ca.Request{Kind: pki.KindClient, Name: "crl-last"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Authority().Revoke(ctx, iss.Leaf.SerialNumber, pki.Reason{Name: "superseded", Code: 4}); err != nil {
		t.Fatal(err)
	}
	third := fetch()
	found := false
	for _, e := range third.RevokedCertificateEntries {
		found = found || e.SerialNumber.Cmp(iss.Leaf.SerialNumber) == 0
	}
	if !found || third.Number.Cmp(second.Number) <= 0 {
		t.Fatalf("the CRL after the last revocation (number %v) does not list it", third.Number)
	}
}
