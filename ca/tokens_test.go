package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"testing"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// openWithTokens makes a CA with a token key and reopens the authority so
// the embedded smallstep authority knows the token provisioner.
func openWithTokens(t *testing.T) (*store.Store, *Authority, *TokenMinter) {
	t.Helper()
	st, a := newCA(t, pki.KeyECP256, "password1")
	m, err := UnlockTokenKey(context.Background(), st, []byte("password1"))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	a, err = Open(context.Background(), st, OpenOptions{Password: []byte("password1"), CRL: true, DNSNames: []string{"ca.test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return st, a, m
}

func testCSR(t testing.TB, cn string, dns []string, ips []net.IP) *x509.CertificateRequest {
	t.Helper()
	key, err := pki.GenerateKey(pki.KeyECP256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestTokenKeyWrongPasswordAndEncryptedAtRest(t *testing.T) {
	st, _ := newCA(t, pki.KeyECP256, "password1")
	ctx := context.Background()
	if _, err := UnlockTokenKey(ctx, st, []byte("wrong-password")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := st.TokenProvisioner(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a wrong password must not create the key: %v", err)
	}
	if _, err := UnlockTokenKey(ctx, st, []byte("password1")); err != nil {
		t.Fatal(err)
	}
	p, err := st.TokenProvisioner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Encrypted || len(p.PrivateJWK) == 0 || p.PrivateJWK[0] == '{' {
		t.Fatalf("token key not stored as a JWE: %q", p.PrivateJWK[:20])
	}
	if _, err := UnlockTokenKey(ctx, st, []byte("wrong-password")); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password on an existing key: %v", err)
	}
}

func TestIssueWithToken(t *testing.T) {
	st, a, m := openWithTokens(t)
	ctx := context.Background()
	mint := func(r TokenRequest) string {
		t.Helper()
		r.CAURL = "https://ca.test:8443"
		tok, _, err := CreateToken(ctx, st, m, r)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tok := mint(TokenRequest{Kind: "client", Name: "alice", Role: pki.RoleReadonly, CertTTL: 2 * time.Hour})
	iss, err := a.IssueWithToken(ctx, tok, testCSR(t, "alice", nil, nil), "")
	if err != nil {
		t.Fatal(err)
	}
	if pki.RoleOf(iss.Leaf) != pki.RoleReadonly || iss.Record.TokenID == "" || iss.Leaf.NotAfter.Sub(iss.Leaf.NotBefore) > 2*time.Hour+2*time.Minute {
		t.Fatalf("unexpected certificate: role %q, token %q, life %s", pki.RoleOf(iss.Leaf), iss.Record.TokenID, iss.Leaf.NotAfter.Sub(iss.Leaf.NotBefore))
	}
	if _, err := a.IssueWithToken(ctx, tok, testCSR(t, "alice", nil, nil), ""); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("replay: %v", err)
	}
	toks, err := st.Tokens(ctx)
	if err != nil || len(toks) != 1 || toks[0].UsedAt == nil || toks[0].Serial != iss.Record.Serial {
		t.Fatalf("token list: %v %+v", err, toks)
	}

	// The CSR's names must be the token's.
	tok = mint(TokenRequest{Kind: "client", Name: "bob"})
	if _, err := a.IssueWithToken(ctx, tok, testCSR(t, "mallory", nil, nil), ""); !errors.Is(err, pki.ErrPolicy) {
		t.Fatalf("wrong CN: %v", err)
	}
	tok = mint(TokenRequest{Kind: "daemon", Name: "host1.test", SANs: []string{"10.0.0.1"}})
	if _, err := a.IssueWithToken(ctx, tok, testCSR(t, "host1.test", []string{"evil.test"}, nil), ""); !errors.Is(err, pki.ErrPolicy) {
		t.Fatalf("extra SAN: %v", err)
	}
	// Refusals leave the token unspent.
	d, err := a.IssueWithToken(ctx, tok, testCSR(t, "", []string{"host1.test"}, []net.IP{net.ParseIP("10.0.0.1")}), "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Record.Kind != pki.KindDaemon || len(d.Leaf.IPAddresses) != 1 || d.Leaf.DNSNames[0] != "host1.test" {
		t.Fatalf("daemon record %+v", d.Record)
	}

	// A revoke token does not enroll; an enroll token does not revoke.
	rtok := mint(TokenRequest{Kind: pki.TokenKindRevoke, Name: d.Record.Serial})
	if _, err := a.IssueWithToken(ctx, rtok, testCSR(t, "alice", nil, nil), ""); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("revoke token used to enroll: %v", err)
	}
	etok := mint(TokenRequest{Kind: "client", Name: "carol"})
	if _, err := a.RevokeWithToken(ctx, etok, pki.Reasons[0]); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("enroll token used to revoke: %v", err)
	}
	if res, err := a.RevokeWithToken(ctx, rtok, pki.Reasons[0]); err != nil || res.Record.Revocation == nil {
		t.Fatalf("revoke with token: %v", err)
	}
	if _, err := a.RevokeWithToken(ctx, rtok, pki.Reasons[0]); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("revoke token replay: %v", err)
	}
	// A revoke token for a serial the CA never issued fails and stays
	// usable: it is spent only with a recorded revocation.
	unknown := mint(TokenRequest{Kind: pki.TokenKindRevoke, Name: "0a0b0c"})
	if _, err := a.RevokeWithToken(ctx, unknown, pki.Reasons[0]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke token for an unknown serial: %v", err)
	}
	if used, _ := st.TokenUsed(ctx, tokenID(t, unknown)); used != nil {
		t.Fatal("a failed revocation spent its token")
	}

	// Expired, foreign-signed and wrong-audience tokens.
	expired, _, err := m.Mint(TokenRequest{Kind: "client", Name: "dave", CAURL: "https://ca.test"}, time.Now().Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.IssueWithToken(ctx, expired, testCSR(t, "dave", nil, nil), ""); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("expired: %v", err)
	}
	other, _, _ := openWithTokens(t)
	om, err := UnlockTokenKey(ctx, other, []byte("password1"))
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := om.Mint(TokenRequest{Kind: "client", Name: "eve", CAURL: "https://ca.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.IssueWithToken(ctx, foreign, testCSR(t, "eve", nil, nil), ""); !errors.Is(err, pki.ErrTokenInvalid) {
		t.Fatalf("foreign: %v", err)
	}
	// A token names the CA by its token key as well as by the URL it was
	// minted for, so any replica of the CA accepts it, whatever its own
	// address (replicas on one etcd store have several).
	elsewhere, _, err := m.Mint(TokenRequest{Kind: "client", Name: "frank", CAURL: "https://other.test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.IssueWithToken(ctx, elsewhere, testCSR(t, "frank", nil, nil), ""); err != nil {
		t.Fatalf("a token of this CA minted for another replica's address: %v", err)
	}
	// A token of this key whose audiences name neither this service nor
	// the key (another service of the key, another operation) is refused.
	for _, aud := range [][]string{{"https://other.test/1.0/sign"}, {keyAudience(m.key.KeyID, "/1.0/revoke")}} {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(m.key.Algorithm), Key: m.key.Key},
			new(jose.SignerOptions).WithType("JWT").WithHeader("kid", m.key.KeyID))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		tok, err := jose.Signed(signer).Claims(pki.TokenClaims{Claims: jose.Claims{ID: "crafted-" + aud[0], Issuer: m.name, Subject: "gina",
			Audience: aud, NotBefore: jose.NewNumericDate(now), Expiry: jose.NewNumericDate(now.Add(time.Hour))},
			Dockca: pki.DockcaClaims{Kind: "client", Role: "admin"}}).CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.IssueWithToken(ctx, tok, testCSR(t, "gina", nil, nil), ""); !errors.Is(err, pki.ErrTokenInvalid) {
			t.Fatalf("audience %v: %v", aud, err)
		}
	}
}

func TestRenew(t *testing.T) {
	_, a := newCA(t, pki.KeyECP256, "pw")
	ctx := context.Background()
	iss, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "h.test", SANs: []string{"127.0.0.1"}, TTL: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	same, err := a.Renew(ctx, iss.Leaf, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !same.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(iss.Leaf.PublicKey) || same.Record.Kind != pki.KindDaemon ||
		len(same.Leaf.IPAddresses) != 1 || same.Leaf.SerialNumber.Cmp(iss.Leaf.SerialNumber) == 0 {
		t.Fatalf("renewal without CSR: %+v", same.Record)
	}
	if err := VerifyChain(a.Root(), a.Intermediate(), same.Leaf, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Renew(ctx, iss.Leaf, testCSR(t, "h.test", []string{"other.test"}, nil), ""); !errors.Is(err, pki.ErrPolicy) {
		t.Fatalf("renew widening names: %v", err)
	}
	if _, err := a.Revoke(ctx, iss.Leaf.SerialNumber, pki.Reasons[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Renew(ctx, iss.Leaf, nil, ""); !errors.Is(err, ErrRevoked) {
		t.Fatalf("renew revoked: %v", err)
	}
	_, other := newCA(t, pki.KeyECP256, "pw")
	foreign, err := other.Issue(ctx, Request{Kind: pki.KindClient, Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Renew(ctx, foreign.Leaf, nil, ""); !errors.Is(err, ErrNotRenewable) {
		t.Fatalf("renew foreign: %v", err)
	}
}

func tokenID(t *testing.T, tok string) string {
	t.Helper()
	c, err := pki.PeekToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}
