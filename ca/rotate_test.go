package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dockca/dockca/pki"
	"github.com/dockca/dockca/store"
)

// reopen opens the authority again after a rotation, as the next command
// or the service's next start does.
func reopen(t *testing.T, st *store.Store, a *Authority, password string) *Authority {
	t.Helper()
	a.Close()
	b, err := Open(context.Background(), st, OpenOptions{Password: []byte(password), Actor: "test", CRL: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A new intermediate under the same root: the old one's certificates keep
// verifying and can still be revoked; each issuer has its CRL, listing the
// revocation, verified by openssl against that issuer.
func TestRotateIntermediateRevocationAndCRLPerIssuer(t *testing.T) {
	requireOpenSSL(t)
	ctx := context.Background()
	st, a := newCA(t, pki.KeyECP256, "pw")
	oldInter := a.Intermediate()
	victim, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "d1.example"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := RotateIntermediate(ctx, st, RotateOptions{Password: []byte("pw"), KeyType: pki.KeyECP384, TTL: 400 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if res.Generation != 2 || res.Intermediate.Subject.CommonName != "test Intermediate CA 2" {
		t.Fatalf("rotation result: %d %s", res.Generation, res.Intermediate.Subject)
	}
	a = reopen(t, st, a, "pw")
	if !a.Intermediate().Equal(res.Intermediate) || !a.Root().Equal(res.Root) {
		t.Fatal("the reopened authority does not sign with the new intermediate under the same root")
	}
	fresh, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh.Chain) != 2 || !fresh.Chain[1].Equal(res.Intermediate) || len(fresh.Roots) != 1 {
		t.Fatalf("new leaf's chain %d, roots %d", len(fresh.Chain), len(fresh.Roots))
	}
	now := time.Now()
	for _, leaf := range []*x509.Certificate{victim.Leaf, fresh.Leaf} {
		if err := a.Trust().Verify(leaf, x509.ExtKeyUsageClientAuth, now); err != nil {
			t.Fatalf("%s does not verify after the rotation: %v", leaf.Subject, err)
		}
	}
	// Status: the old intermediate's valid certificates, not under an old root.
	stat, err := Status(ctx, st, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(stat.OldRoots) != 0 || len(stat.Dependents) != 2 || stat.Dependents[0].OldRoot || stat.Dependents[0].Generation != 1 {
		t.Fatalf("status after rotate intermediate: %+v", stat)
	}

	// Revoke the old intermediate's certificate.
	if _, err := a.Revoke(ctx, victim.Leaf.SerialNumber, pki.Reasons[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Holder(ctx, victim.Leaf, now); !errors.Is(err, ErrRevoked) {
		t.Fatalf("renewal of a revoked old-intermediate certificate: %v", err)
	}
	if _, err := a.Holder(ctx, kept.Leaf, now); err != nil {
		t.Fatalf("renewal of a valid old-intermediate certificate: %v", err)
	}
	oldDER, err := a.IssuerCRL(ctx, pki.Fingerprint(oldInter))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := CurrentCRL(ctx, st, now)
	if err != nil || cur == nil {
		t.Fatalf("current CRL: %v", err)
	}
	dir := t.TempDir()
	rootPath := writeFile(t, dir, "root.pem", pki.PEMCert(a.Root()))
	for _, c := range []struct {
		name   string
		der    []byte
		issuer *x509.Certificate
	}{{"old", oldDER, oldInter}, {"current", cur.DER, a.Intermediate()}} {
		crl, err := x509.ParseRevocationList(c.der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(c.issuer); err != nil {
			t.Fatalf("%s issuer's CRL: %v", c.name, err)
		}
		listed := false
		for _, e := range crl.RevokedCertificateEntries {
			listed = listed || e.SerialNumber.Cmp(victim.Leaf.SerialNumber) == 0
		}
		if !listed {
			t.Fatalf("%s issuer's CRL does not list the revoked certificate", c.name)
		}
		crlPath := writeFile(t, dir, c.name+".crl", pki.PEMCRL(c.der))
		caFile := writeFile(t, dir, c.name+"-ca.pem", append(pki.PEMCert(c.issuer), pki.PEMCert(a.Root())...))
		if out := openssl(t, "crl", "-in", crlPath, "-CAfile", caFile, "-noout"); !strings.Contains(out, "verify OK") {
			t.Fatalf("openssl crl -CAfile (%s issuer): %s", c.name, out)
		}
		// And the issuer itself chains to the root, as openssl sees it.
		issuerPath := writeFile(t, dir, c.name+"-issuer.pem", pki.PEMCert(c.issuer))
		openssl(t, "verify", "-CAfile", rootPath, issuerPath)
	}
	if !a.IsCurrentIssuer(strings.ToUpper(pki.Fingerprint(a.Intermediate()))) || a.IsCurrentIssuer(pki.Fingerprint(oldInter)) {
		t.Fatal("IsCurrentIssuer")
	}
	if _, err := a.IssuerCRL(ctx, strings.Repeat("ab", 32)); !errors.Is(err, ErrUnknownIssuer) {
		t.Fatalf("CRL of an unknown issuer: %v", err)
	}
	// The old intermediate's key stays encrypted under the CA password.
	rec, err := st.CA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range rec.Previous {
		for _, k := range [][]byte{g.RootKeyPEM, g.IntermediateKey} {
			if !strings.Contains(string(k), "ENCRYPTED PRIVATE KEY") {
				t.Fatalf("generation %d keeps a key unencrypted", g.Generation)
			}
		}
	}
	if !strings.Contains(string(rec.IntermediateKey), "ENCRYPTED PRIVATE KEY") {
		t.Fatal("the new intermediate key is not encrypted")
	}
	// dockca check: certificates of both intermediates chain to the CA,
	// and every generation's keys decrypt and match.
	rep, err := Check(ctx, st, CheckOptions{Password: []byte("pw")})
	if err != nil || !rep.OK() {
		t.Fatalf("check after rotate intermediate: %+v %v", rep, err)
	}
	if rep, err := Check(ctx, st, CheckOptions{Password: []byte("wrong")}); err != nil || len(rep.Problems) != 4 {
		t.Fatalf("check with a wrong password reports %d problems, want 4 (two keys per generation): %+v", len(rep.Problems), rep)
	}
}

// A new root: leaves carry the intermediate and its twin cross-signed by
// the old root, so a peer that trusts either root alone verifies them (Go
// and openssl); finish is refused while a certificate depends on the old
// root, and afterwards the old root's certificates no longer verify.
func TestRotateRootCrossSignedAndFinish(t *testing.T) {
	requireOpenSSL(t)
	ctx := context.Background()
	st, a := newCA(t, pki.KeyECP256, "pw")
	oldRoot := a.Root()
	old, err := a.Issue(ctx, Request{Kind: pki.KindClient, Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FinishRotation(ctx, st, false, time.Now()); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("finish without a rotation: %v", err)
	}
	if _, err := RotateRoot(ctx, st, RotateOptions{Password: []byte("wrong")}); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("rotate root with a wrong password: %v", err)
	}
	res, err := RotateRoot(ctx, st, RotateOptions{Password: []byte("pw"), KeyType: pki.KeyEd25519, Overlap: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RotateRoot(ctx, st, RotateOptions{Password: []byte("pw")}); !errors.Is(err, ErrRotationInProgress) {
		t.Fatalf("a second root rotation during the overlap: %v", err)
	}
	if _, err := RotateIntermediate(ctx, st, RotateOptions{Password: []byte("pw")}); !errors.Is(err, ErrRotationInProgress) {
		t.Fatalf("rotate intermediate during the overlap: %v", err)
	}
	a = reopen(t, st, a, "pw")
	tr := a.Trust()
	if len(tr.Roots) != 2 || !tr.Roots[0].Equal(res.Root) || !tr.Roots[1].Equal(oldRoot) {
		t.Fatalf("trusted roots during the overlap: %d", len(tr.Roots))
	}
	leaf, err := a.Issue(ctx, Request{Kind: pki.KindDaemon, Name: "d1.example", SANs: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.Chain) != 3 || !leaf.Chain[1].Equal(res.Intermediate) || !leaf.Chain[2].Equal(res.Cross) {
		t.Fatalf("a new leaf's chain has %d certificates", len(leaf.Chain))
	}
	if !strings.Contains(string(leaf.RootsPEM()), string(pki.PEMCert(oldRoot))) || strings.Count(string(leaf.RootsPEM()), "BEGIN") != 2 {
		t.Fatal("ca.pem during the overlap must carry both roots")
	}
	// Each root alone, with only what the peer presents.
	presented := x509.NewCertPool()
	for _, c := range leaf.Chain[1:] {
		presented.AddCert(c)
	}
	for _, root := range []*x509.Certificate{oldRoot, res.Root} {
		pool := x509.NewCertPool()
		pool.AddCert(root)
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: presented, DNSName: "d1.example"}); err != nil {
			t.Fatalf("Go, trusting only %s: %v", root.Subject.CommonName, err)
		}
	}
	dir := t.TempDir()
	leafPath := writeFile(t, dir, "leaf.pem", pki.PEMCert(leaf.Leaf))
	for _, c := range []struct{ root, via *x509.Certificate }{{oldRoot, res.Cross}, {res.Root, res.Intermediate}} {
		out := openssl(t, "verify", "-purpose", "sslserver", "-CAfile", writeFile(t, dir, "r.pem", pki.PEMCert(c.root)),
			"-untrusted", writeFile(t, dir, "i.pem", pki.PEMCert(c.via)), leafPath)
		if !strings.Contains(out, "OK") {
			t.Fatalf("openssl verify via %s: %s", c.via.Issuer.CommonName, out)
		}
	}
	// The old root's leaf still verifies for renewed peers (both roots).
	if err := tr.Verify(old.Leaf, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Fatal(err)
	}
	var inUse *StillInUseError
	if _, err := FinishRotation(ctx, st, false, time.Now()); !errors.As(err, &inUse) || len(inUse.Dependents) != 1 ||
		inUse.Dependents[0].Name != "alice" || !strings.Contains(err.Error(), `client "alice"`) {
		t.Fatalf("finish with a dependent: %v", err)
	}
	// Renew alice: the old certificate is superseded, and nothing is left.
	if _, err := a.Renew(ctx, old.Leaf, nil, ""); err != nil {
		t.Fatal(err)
	}
	if stat, err := Status(ctx, st, time.Now()); err != nil || len(stat.Dependents) != 0 || stat.OverlapUntil == nil {
		t.Fatalf("status after renewing everything: %+v %v", stat, err)
	}
	if _, err := FinishRotation(ctx, st, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	a = reopen(t, st, a, "pw")
	tr = a.Trust()
	if len(tr.Roots) != 1 || !tr.Roots[0].Equal(res.Root) || len(tr.Chain) != 1 {
		t.Fatalf("after finish: %d roots, chain %d", len(tr.Roots), len(tr.Chain))
	}
	if err := tr.Verify(old.Leaf, x509.ExtKeyUsageClientAuth, time.Now()); err == nil {
		t.Fatal("a certificate under the retired root still verifies")
	}
	if _, err := a.Holder(ctx, old.Leaf, time.Now()); !errors.Is(err, ErrNotRenewable) {
		t.Fatalf("renewal with an old-root certificate after finish: %v", err)
	}
	if err := tr.Verify(leaf.Leaf, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatalf("an overlap certificate after finish: %v", err)
	}
	if _, err := FinishRotation(ctx, st, false, time.Now()); !errors.Is(err, ErrNoRotation) {
		t.Fatalf("a second finish: %v", err)
	}
	if rep, err := Check(ctx, st, CheckOptions{Password: []byte("pw")}); err != nil || !rep.OK() {
		t.Fatalf("check after a finished root rotation (certificates of the retired root included): %+v %v", rep, err)
	}
	// A new rotation may start again.
	if _, err := RotateIntermediate(ctx, st, RotateOptions{Password: []byte("pw")}); err != nil {
		t.Fatal(err)
	}
}
